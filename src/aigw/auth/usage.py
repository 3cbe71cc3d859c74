"""Usage records and key `last_used_at`, kept in memory on the request path and written in batches."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.store.models import ApiKey, UsageRecord, User

log = logging.getLogger("aigw.usage")

PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
_FLUSH_AT = 1000
_KEEP_ON_FAILURE = 100_000


@dataclass(slots=True)
class UsageMeter:
    """What an engine reports for one request; routes fill it, the middleware records it."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    audio_seconds: float | None = None


@dataclass
class UsageRecorder:
    sessions: async_sessionmaker[AsyncSession]
    interval: float = 1.0
    _rows: list[dict[str, Any]] = field(default_factory=list)
    _last_used: dict[int, datetime] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def record(
        self,
        *,
        user_id: int,
        key_id: int | None,
        endpoint: str,
        method: str,
        status: int,
        latency_ms: float,
        meter: UsageMeter | None,
    ) -> None:
        now = datetime.now(UTC)
        self._rows.append(
            {
                "user_id": user_id,
                "key_id": key_id,
                "endpoint": endpoint,
                "method": method,
                "status": status,
                "latency_ms": latency_ms,
                "created_at": now,
                "prompt_tokens": meter.prompt_tokens if meter else None,
                "completion_tokens": meter.completion_tokens if meter else None,
                "audio_seconds": meter.audio_seconds if meter else None,
            }
        )
        if key_id is not None:
            self._last_used[key_id] = now
        if len(self._rows) >= _FLUSH_AT:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a failed flush keeps its rows for the next try; the loop must live
                log.exception("usage flush failed")

    async def flush(self) -> None:
        async with self._lock:
            rows, self._rows = self._rows, []
            last_used, self._last_used = self._last_used, {}
            if not rows and not last_used:
                return
            try:
                async with self.sessions.begin() as db:
                    if rows:
                        await db.execute(
                            insert(UsageRecord.metadata.tables[UsageRecord.__tablename__]), rows
                        )  # Core executemany: no ORM per row
                    for key_id, when in last_used.items():
                        await db.execute(
                            update(ApiKey)
                            .where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < when))
                            .values(last_used_at=when)
                        )
            except Exception:
                # Keep the batch for the next try, but never grow without bound while the database is away.
                self._rows[:0] = rows[-_KEEP_ON_FAILURE:]
                for key_id, when in last_used.items():
                    self._last_used.setdefault(key_id, when)
                raise


async def usage_summary(db: AsyncSession, period: str) -> list[dict[str, Any]]:
    since = datetime.now(UTC) - PERIODS[period]
    count = func.count(UsageRecord.id)
    stmt = (
        select(
            UsageRecord.user_id,
            User.email,
            UsageRecord.endpoint,
            count,
            func.sum(UsageRecord.prompt_tokens),
            func.sum(UsageRecord.completion_tokens),
            func.sum(UsageRecord.audio_seconds),
            func.avg(UsageRecord.latency_ms),
        )
        .join(User, User.id == UsageRecord.user_id)
        .where(UsageRecord.created_at >= since)
        .group_by(UsageRecord.user_id, User.email, UsageRecord.endpoint)
        .order_by(count.desc(), UsageRecord.user_id, UsageRecord.endpoint)
    )
    return [
        {
            "user_id": user_id,
            "email": email,
            "endpoint": endpoint,
            "count": n,
            "prompt_tokens": int(pt or 0),
            "completion_tokens": int(ct or 0),
            "audio_seconds": float(secs or 0.0),
            "avg_latency_ms": round(float(lat or 0.0), 3),
        }
        for user_id, email, endpoint, n, pt, ct, secs, lat in (await db.execute(stmt)).all()
    ]
