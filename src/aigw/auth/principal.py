"""Who is calling: resolve an API key or session token to a Principal, from a per-worker cache.

A cache hit costs one HMAC and a dict lookup. Entries are trusted only under the revocation epoch
they were loaded in; `admit` checks the epoch the rate limiter reports and reloads from the
database when it moved, so a revoked key or deactivated user fails on the very next request.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.auth.rate_limit import RateDecision, RateLimiter
from aigw.auth.tokens import keyed_hash
from aigw.store.models import ApiKey, Session, User

CredentialKind = Literal["key", "session"]
_MAX_ENTRIES = 100_000
_MAX_MISSES = 10_000


@dataclass(slots=True, frozen=True)
class Principal:
    user_id: int
    email: str
    name: str
    role: str
    rate_limit: int
    created_at: datetime
    key_id: int | None = None
    session_hash: str | None = None
    expires_at: datetime | None = None
    epoch: int = -1  # the revocation epoch this was loaded under

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def via_session(self) -> bool:
        return self.session_hash is not None


def principal_for(user: User, epoch: int, *, key_id: int | None = None, session: Session | None = None) -> Principal:
    return Principal(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        rate_limit=user.rate_limit,
        created_at=user.created_at,
        key_id=key_id,
        session_hash=session.token_hash if session else None,
        expires_at=session.expires_at if session else None,
        epoch=epoch,
    )


class Authenticator:
    def __init__(self, secret: bytes, sessions: async_sessionmaker[AsyncSession], limiter: RateLimiter) -> None:
        self._secret = secret
        self._sessions = sessions
        self._limiter = limiter
        self._hits: dict[str, Principal] = {}
        self._misses: OrderedDict[str, None] = OrderedDict()
        self._epoch = -1  # the newest revocation epoch this worker has seen; epochs only grow

    async def authenticate(self, kind: CredentialKind, token: str) -> tuple[Principal | None, RateDecision | None]:
        """Find who `token` belongs to and count the request against their limit.

        The limiter reports the current revocation epoch. An entry loaded under an older epoch is
        reloaded before it is trusted, so a revoked key fails on the very next request even when
        other requests of this worker are in flight.
        """
        digest = keyed_hash(self._secret, token)
        principal = await self._lookup(kind, digest)
        if principal is None:
            return None, None
        bucket = f"user:{principal.user_id}"
        decision = await self._limiter.hit(bucket, principal.rate_limit)
        if decision.epoch > self._epoch:
            self._hits.clear()
            self._misses.clear()
            self._epoch = decision.epoch
        if principal.epoch >= decision.epoch:
            return principal, decision
        fresh = await self._lookup(kind, digest)
        if fresh is not None and not decision.allowed and fresh.rate_limit != principal.rate_limit:
            # The limit changed since this entry was cached: judge the request by the new one.
            decision = await self._limiter.hit(bucket, fresh.rate_limit)
        return fresh, decision

    async def _lookup(self, kind: CredentialKind, digest: str) -> Principal | None:
        principal = self._hits.get(digest)
        if principal is None:
            if digest in self._misses:
                return None
            principal = await self._load(kind, digest)
        if principal is not None and principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
            self._hits.pop(digest, None)
            return None
        return principal

    async def _load(self, kind: CredentialKind, digest: str) -> Principal | None:
        epoch = self._epoch  # read before the database, so the entry can only be older than its tag says
        async with self._sessions() as db:
            if kind == "key":
                row = (
                    await db.execute(
                        select(ApiKey.id, User)
                        .join(User, User.id == ApiKey.user_id)
                        .where(ApiKey.key_hash == digest, User.active.is_(True))
                    )
                ).first()
                principal = principal_for(row[1], epoch, key_id=row[0]) if row else None
            else:
                srow = (
                    await db.execute(
                        select(Session, User)
                        .join(User, User.id == Session.user_id)
                        .where(Session.token_hash == digest, User.active.is_(True))
                    )
                ).first()
                principal = principal_for(srow[1], epoch, session=srow[0]) if srow else None
        if principal is None:
            self._misses[digest] = None
            if len(self._misses) > _MAX_MISSES:
                self._misses.popitem(last=False)
            return None
        if len(self._hits) >= _MAX_ENTRIES:
            self._hits.clear()
        self._hits[digest] = principal
        return principal
