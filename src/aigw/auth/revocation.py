"""The revocation epoch: a counter every worker can read for free and any writer bumps after a commit.

Workers cache who a key or session belongs to. Whatever could make a cached entry wrong
(deactivation, a role or limit change, a key deleted, a logout) commits to the database and then
bumps the epoch; a worker that sees a new epoch drops its cache before it trusts an entry again.
Without Redis the epoch is a memory-mapped file in the data dir, shared by every worker on the
machine; with Redis it is a Redis key, read in the same round trip as the rate limit.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path
from typing import Protocol

from redis.asyncio import Redis

REDIS_EPOCH_KEY = "aigw:auth_epoch"
_FORMAT = "<Q"


class RevocationEpoch(Protocol):
    async def bump(self) -> None: ...


class FileEpoch:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < mmap.PAGESIZE:
                os.ftruncate(fd, mmap.PAGESIZE)
            self._map = mmap.mmap(fd, mmap.PAGESIZE)
        finally:
            os.close(fd)
        self._path = path

    def read(self) -> int:
        value: int = struct.unpack_from(_FORMAT, self._map, 0)[0]
        return value

    async def bump(self) -> None:
        with open(self._path, "rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                struct.pack_into(_FORMAT, self._map, 0, (self.read() + 1) % 2**64)
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()


class RedisEpoch:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def bump(self) -> None:
        await self._redis.incr(REDIS_EPOCH_KEY)
