"""Argon2id password hashes, computed in worker threads so the event loop never waits on them."""

from __future__ import annotations

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified when the email is unknown, so a login takes as long whether or not the account exists.
_DUMMY_HASH = _hasher.hash("aigw-timing-equalizer")
_limiter = anyio.CapacityLimiter(4)

MIN_PASSWORD_LENGTH = 8


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password, limiter=_limiter)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    return await anyio.to_thread.run_sync(_verify, password_hash, password, limiter=_limiter)
