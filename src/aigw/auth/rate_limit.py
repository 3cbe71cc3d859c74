"""Per-user sliding-window rate limits: at most `limit` requests in any 60 seconds.

The in-process limiter keeps a log of timestamps per user. The Redis limiter keeps the same log in a
sorted set, updated by one atomic script on Redis's own clock, so every worker shares one exact
limit; the script also returns the revocation epoch, so a request costs one round trip for both.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from aigw.auth.revocation import REDIS_EPOCH_KEY, FileEpoch

WINDOW_SECONDS = 60.0


@dataclass(slots=True, frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the oldest request in the window leaves it
    epoch: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(self.reset_after)).encode()),
        ]

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_after))


class RateLimiter(Protocol):
    async def hit(self, bucket: str, limit: int) -> RateDecision: ...


class MemoryRateLimiter:
    def __init__(self, epoch: FileEpoch | None = None, window: float = WINDOW_SECONDS) -> None:
        self._log: dict[str, deque[float]] = {}
        self._epoch = epoch
        self._window = window

    async def hit(self, bucket: str, limit: int) -> RateDecision:
        return self.hit_now(bucket, limit, time.monotonic())

    def hit_now(self, bucket: str, limit: int, now: float) -> RateDecision:
        log = self._log.get(bucket)
        if log is None:
            log = self._log[bucket] = deque()
        horizon = now - self._window
        while log and log[0] <= horizon:
            log.popleft()
        allowed = len(log) < limit
        if allowed:
            log.append(now)
        reset_after = (log[0] + self._window - now) if log else self._window
        epoch = self._epoch.read() if self._epoch is not None else 0
        return RateDecision(allowed, limit, max(0, limit - len(log)), reset_after, epoch)


_SLIDING_WINDOW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], window)
local reset = window
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then reset = tonumber(oldest[2]) + window - now_ms end
local epoch = redis.call('GET', KEYS[2]) or '0'
return {allowed, limit - count, reset, epoch}
"""


class RedisRateLimiter:
    def __init__(self, redis: Redis, window: float = WINDOW_SECONDS) -> None:
        self._redis = redis
        self._script = redis.register_script(_SLIDING_WINDOW)
        self._window_ms = int(window * 1000)
        # Members of the sorted set must be unique across every worker of every host.
        self._member = (f"{os.getpid()}-{os.urandom(4).hex()}-{n}" for n in itertools.count())

    async def hit(self, bucket: str, limit: int) -> RateDecision:
        allowed, remaining, reset_ms, epoch = await self._script(
            keys=[f"aigw:rl:{bucket}", REDIS_EPOCH_KEY], args=[self._window_ms, limit, next(self._member)]
        )
        return RateDecision(bool(allowed), limit, max(0, int(remaining)), int(reset_ms) / 1000, int(epoch))
