"""API keys: shown once at creation, stored as a keyed hash plus a display prefix, scoped by owner."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from aigw.auth.revocation import RevocationEpoch
from aigw.auth.tokens import DISPLAY_PREFIX_LEN, keyed_hash, new_api_key
from aigw.errors import InvalidField, NotFound
from aigw.store.models import ApiKey, User


async def create_key(db: AsyncSession, *, secret: bytes, user_id: int, name: str) -> tuple[ApiKey, str]:
    """Create a key for `user_id`; returns the row and the secret, which is never readable again."""
    user = await db.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found")
    if not user.active:
        raise InvalidField(f"User {user_id} is deactivated", code="user_inactive")
    token = new_api_key()
    key = ApiKey(user_id=user_id, name=name, prefix=token[:DISPLAY_PREFIX_LEN], key_hash=keyed_hash(secret, token))
    db.add(key)
    await db.commit()
    return key, token


def _keys(owner_id: int | None) -> Select[ApiKey, str]:
    stmt = select(ApiKey, User.email).join(User, User.id == ApiKey.user_id).order_by(ApiKey.id)
    return stmt if owner_id is None else stmt.where(ApiKey.user_id == owner_id)


async def list_keys(db: AsyncSession, *, owner_id: int | None) -> Sequence[tuple[ApiKey, str]]:
    """Keys of `owner_id`, or of every user when None (admin)."""
    return (await db.execute(_keys(owner_id))).tuples().all()


async def revoke_key(db: AsyncSession, epoch: RevocationEpoch, *, key_id: int, owner_id: int | None) -> None:
    stmt = delete(ApiKey).where(ApiKey.id == key_id)
    if owner_id is not None:
        stmt = stmt.where(ApiKey.user_id == owner_id)
    result = await db.execute(stmt)
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"API key {key_id} not found")
    await db.commit()
    await epoch.bump()
