"""The process-wide singletons, built once from settings by the app's lifespan or by the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from aigw.auth.principal import Authenticator
from aigw.auth.rate_limit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from aigw.auth.revocation import FileEpoch, RedisEpoch, RevocationEpoch
from aigw.auth.usage import UsageRecorder
from aigw.auth.users import ensure_admin
from aigw.engines.base import EngineRegistry
from aigw.settings import Settings
from aigw.store.db import create_engine, migrate, session_factory

log = logging.getLogger("aigw.runtime")


@dataclass
class Runtime:
    settings: Settings
    secret: bytes
    db: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis | None
    epoch: RevocationEpoch
    limiter: RateLimiter
    authenticator: Authenticator
    usage: UsageRecorder
    engines: EngineRegistry

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        secret = settings.secret()
        db = create_engine(settings.resolved_database_url)

        async def bootstrap(conn: AsyncConnection) -> None:
            if settings.admin_email and settings.admin_password:
                async with AsyncSession(bind=conn) as session:
                    created = await ensure_admin(
                        session, settings.admin_email, settings.admin_password.get_secret_value()
                    )
                    await session.flush()
                    if created is not None:
                        log.info("bootstrap admin ready", extra={"email": created.email})

        await migrate(db, settings.data_dir / ".migrate.lock", after=bootstrap)
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        epoch: RevocationEpoch
        limiter: RateLimiter
        if redis is not None:
            epoch, limiter = RedisEpoch(redis), RedisRateLimiter(redis)
        else:
            file_epoch = FileEpoch(settings.data_dir / "auth.epoch")
            epoch, limiter = file_epoch, MemoryRateLimiter(file_epoch)
        sessions = session_factory(db)
        usage = UsageRecorder(sessions, interval=settings.usage_flush_seconds)
        return cls(
            settings=settings,
            secret=secret,
            db=db,
            sessions=sessions,
            redis=redis,
            epoch=epoch,
            limiter=limiter,
            authenticator=Authenticator(secret, sessions, limiter),
            usage=usage,
            engines=EngineRegistry(),
        )

    @property
    def session_ttl(self) -> timedelta:
        return timedelta(hours=self.settings.session_ttl_hours)

    async def health(self) -> dict[str, bool]:
        services = {"database": await self._database_up()}
        if self.redis is not None:
            try:
                services["redis"] = bool(await self.redis.ping())
            except Exception:  # a down Redis is a health fact, not an error of /health
                services["redis"] = False
        services.update(await self.engines.health())
        return services

    async def _database_up(self) -> bool:
        try:
            async with self.db.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # a down database is a health fact, not an error of /health
            return False

    async def close(self) -> None:
        await self.usage.stop()
        await self.engines.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.dispose()
