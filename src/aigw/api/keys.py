from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from aigw.auth import api_keys
from aigw.deps import CurrentPrincipal, DbSession, RowId, RuntimeDep
from aigw.store.models import ApiKey

router = APIRouter(tags=["keys"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id, name=key.name, prefix=key.prefix, created_at=key.created_at, last_used_at=key.last_used_at
        )


class KeyCreated(BaseModel):
    id: int
    key: str = Field(description="The secret. Shown this once; only its hash is stored.")
    name: str
    prefix: str
    created_at: datetime


def created(key: ApiKey, secret: str) -> KeyCreated:
    return KeyCreated(id=key.id, key=secret, name=key.name, prefix=key.prefix, created_at=key.created_at)


@router.get("/api/keys", summary="Your API keys (never the secret)")
async def list_keys(principal: CurrentPrincipal, db: DbSession) -> list[KeyOut]:
    return [KeyOut.of(key) for key, _ in await api_keys.list_keys(db, owner_id=principal.user_id)]


@router.post("/api/keys", status_code=201, summary="Create an API key; the secret is shown once")
async def create_key(body: KeyCreate, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep) -> KeyCreated:
    key, secret = await api_keys.create_key(db, secret=runtime.secret, user_id=principal.user_id, name=body.name)
    return created(key, secret)


@router.delete("/api/keys/{key_id}", summary="Delete one of your API keys")
async def delete_key(key_id: RowId, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep) -> dict[str, bool]:
    await api_keys.revoke_key(db, runtime.epoch, key_id=key_id, owner_id=principal.user_id)
    return {"success": True}
