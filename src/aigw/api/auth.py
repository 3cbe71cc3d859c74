from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from aigw.auth import sessions, users
from aigw.auth.principal import Principal
from aigw.deps import CurrentPrincipal, DbSession, RuntimeDep
from aigw.errors import RateLimited
from aigw.store.models import User

router = APIRouter(tags=["auth"])
LOGIN_ATTEMPTS_PER_MINUTE = 10


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    role: str
    rate_limit: int
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User | Principal) -> UserOut:
        if isinstance(user, Principal):
            return cls(
                id=user.user_id,
                email=user.email,
                name=user.name,
                role=user.role,
                rate_limit=user.rate_limit,
                active=True,
                created_at=user.created_at,
            )
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            rate_limit=user.rate_limit,
            active=user.active,
            created_at=user.created_at,
        )


@router.post("/auth/login", summary="Log in with email and password; sets the session cookie")
async def login(
    body: LoginRequest, request: Request, response: Response, db: DbSession, runtime: RuntimeDep
) -> dict[str, Any]:
    client = request.client.host if request.client else "-"
    decision = await runtime.limiter.hit(f"login:{client}:{body.email.lower()}", LOGIN_ATTEMPTS_PER_MINUTE)
    if not decision.allowed:
        raise RateLimited("Too many login attempts; wait a minute", headers={"Retry-After": str(decision.retry_after)})
    user = await users.check_login(db, body.email, body.password)
    token = await sessions.start_session(db, user_id=user.id, secret=runtime.secret, ttl=runtime.session_ttl)
    response.set_cookie(
        sessions.COOKIE_NAME,
        token,
        max_age=int(runtime.session_ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=runtime.settings.cookie_secure,
        path="/",
    )
    return {"user": UserOut.of(user).model_dump(mode="json")}


@router.post("/auth/logout", summary="End the session and clear its cookie")
async def logout(
    principal: CurrentPrincipal, response: Response, db: DbSession, runtime: RuntimeDep
) -> dict[str, bool]:
    if principal.session_hash is not None:
        await sessions.end_session(db, runtime.epoch, principal.session_hash)
    response.delete_cookie(
        sessions.COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=runtime.settings.cookie_secure
    )
    return {"success": True}


@router.get("/auth/me", summary="The authenticated user's profile")
async def me(principal: CurrentPrincipal) -> UserOut:
    return UserOut.of(principal)
