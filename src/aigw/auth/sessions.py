"""Server-side login sessions: the cookie holds a random token, the database only its keyed hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from aigw.auth.revocation import RevocationEpoch
from aigw.auth.tokens import keyed_hash, new_session_token
from aigw.store.models import Session

COOKIE_NAME = "aigw_session"


async def start_session(db: AsyncSession, *, user_id: int, secret: bytes, ttl: timedelta) -> str:
    token = new_session_token()
    now = datetime.now(UTC)
    db.add(Session(token_hash=keyed_hash(secret, token), user_id=user_id, created_at=now, expires_at=now + ttl))
    # Expired sessions are dead weight; sweep them whenever someone logs in.
    await db.execute(delete(Session).where(Session.expires_at < now))
    await db.commit()
    return token


async def end_session(db: AsyncSession, epoch: RevocationEpoch, session_hash: str) -> None:
    await db.execute(delete(Session).where(Session.token_hash == session_hash))
    await db.commit()
    await epoch.bump()
