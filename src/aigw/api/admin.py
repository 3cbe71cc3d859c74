from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from aigw.api.auth import UserOut
from aigw.api.keys import KeyCreated, KeyOut, created
from aigw.auth import api_keys, users
from aigw.auth.usage import usage_summary
from aigw.deps import DbSession, RowId, RuntimeDep, require_admin

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(require_admin)])

Role = Literal["customer", "admin"]
RateLimit = Field(default=None, ge=1, le=1_000_000, description="Requests per minute, across all keys and sessions")


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    name: str = Field(default="", max_length=200)
    role: Role = "customer"
    rate_limit: int | None = RateLimit


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    role: Role | None = None
    active: bool | None = None
    rate_limit: int | None = RateLimit
    password: str | None = Field(default=None, max_length=1024)


class AdminKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(ge=1, le=2_147_483_647)
    name: str = Field(min_length=1, max_length=200)


class AdminKeyOut(KeyOut):
    user_id: int
    email: str


class UsageRow(BaseModel):
    user_id: int
    email: str
    endpoint: str
    count: int
    prompt_tokens: int
    completion_tokens: int
    audio_seconds: float
    avg_latency_ms: float


@router.get("/users", summary="All users")
async def list_users(
    db: DbSession, limit: int = Query(default=100, ge=1, le=1000), offset: int = Query(default=0, ge=0)
) -> list[UserOut]:
    return [UserOut.of(user) for user in await users.list_users(db, limit=limit, offset=offset)]


@router.post("/users", status_code=201, summary="Create a user")
async def create_user(body: UserCreate, db: DbSession, runtime: RuntimeDep) -> UserOut:
    user = await users.register_user(
        db,
        email=body.email,
        password=body.password,
        name=body.name,
        role=body.role,
        rate_limit=body.rate_limit or runtime.settings.default_rate_limit,
    )
    await db.commit()
    return UserOut.of(user)


@router.put("/users/{user_id}", summary="Update a user's name, role, active flag, rate limit or password")
async def update_user(user_id: RowId, body: UserUpdate, db: DbSession, runtime: RuntimeDep) -> UserOut:
    changes: dict[str, Any] = body.model_dump(exclude_none=True)
    return UserOut.of(await users.update_user(db, runtime.epoch, user_id, changes))


@router.delete("/users/{user_id}", summary="Deactivate a user: their sessions and keys stop working at once")
async def deactivate_user(user_id: RowId, db: DbSession, runtime: RuntimeDep) -> UserOut:
    return UserOut.of(await users.deactivate_user(db, runtime.epoch, user_id))


@router.get("/usage", summary="Calls per user and endpoint over a period")
async def usage(db: DbSession, runtime: RuntimeDep, period: Literal["24h", "7d", "30d"] = "24h") -> list[UsageRow]:
    await runtime.usage.flush()
    return [UsageRow(**row) for row in await usage_summary(db, period)]


@router.get("/keys", summary="Every API key of every user (never the secret)")
async def list_all_keys(db: DbSession) -> list[AdminKeyOut]:
    return [
        AdminKeyOut(**KeyOut.of(key).model_dump(), user_id=key.user_id, email=email)
        for key, email in await api_keys.list_keys(db, owner_id=None)
    ]


@router.post("/keys", status_code=201, summary="Create a key for any user; the secret is shown once")
async def create_key_for(body: AdminKeyCreate, db: DbSession, runtime: RuntimeDep) -> KeyCreated:
    key, secret = await api_keys.create_key(db, secret=runtime.secret, user_id=body.user_id, name=body.name)
    return created(key, secret)


@router.delete("/keys/{key_id}", summary="Delete any API key")
async def delete_any_key(key_id: RowId, db: DbSession, runtime: RuntimeDep) -> dict[str, bool]:
    await api_keys.revoke_key(db, runtime.epoch, key_id=key_id, owner_id=None)
    return {"success": True}


class AdminKbOut(BaseModel):
    id: int
    name: str
    description: str
    doc_count: int
    user_id: int
    owner_email: str
    created_at: datetime


@router.get("/kb", summary="All knowledge bases of all users, with their owners")
async def list_all_kbs(db: DbSession, runtime: RuntimeDep) -> list[AdminKbOut]:
    return [
        AdminKbOut(
            id=kb.id,
            name=kb.name,
            description=kb.description,
            doc_count=n,
            user_id=kb.user_id,
            owner_email=email,
            created_at=kb.created_at,
        )
        for kb, n, email in await runtime.knowledge.list_kbs(db, None)
    ]
