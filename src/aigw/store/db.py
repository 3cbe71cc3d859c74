"""Database engine, sessions and migrations (applied once, under a lock, however many workers start)."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger("aigw.store")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary constant naming aigw's migration lock among PostgreSQL advisory locks.
_PG_MIGRATION_LOCK = 0x61696777


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20) -> AsyncEngine:
    """An engine with `pool_size` connections kept and up to `max_overflow` more (no request holds one while it
    waits on the network or a model, so these bound the database work in flight, not the requests)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=pool_size, max_overflow=max_overflow)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a+")
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()


async def migrate(engine: AsyncEngine, lock_path: Path, after: Callable[[AsyncConnection], Any] | None = None) -> None:
    """Bring the schema to head, then run `after` (bootstrap) inside the same lock.

    SQLite workers share a file lock next to the database; PostgreSQL takes a transaction-scoped
    advisory lock, so workers on several machines serialize too.
    """
    file_lock = _FileLock(lock_path)
    await anyio.to_thread.run_sync(file_lock.acquire)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            await conn.run_sync(_upgrade)
            if after is not None:
                await after(conn)
    finally:
        file_lock.release()
