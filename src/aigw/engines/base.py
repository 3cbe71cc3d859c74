"""Engine protocols and the registry that finds them by modality and name.

Each modality (chat, embeddings, stt, tts, ocr, vision) gets a small Protocol with one required
operation; every engine also says whether it is ready, for /health. Callers never import an engine:
they ask the registry for "the chat engine for model X" and get whichever is configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from aigw.errors import EngineUnavailable

log = logging.getLogger("aigw.engines")


@runtime_checkable
class Engine(Protocol):
    name: str
    modality: str

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


@dataclass
class EngineRegistry:
    _engines: dict[str, dict[str, Engine]] = field(default_factory=dict)
    _defaults: dict[str, str] = field(default_factory=dict)
    _warming: set[asyncio.Task[None]] = field(default_factory=set)

    def register(self, engine: Engine, *, default: bool = False) -> None:
        by_name = self._engines.setdefault(engine.modality, {})
        if engine.name in by_name:
            raise ValueError(f"{engine.modality} engine {engine.name!r} registered twice")
        by_name[engine.name] = engine
        if default or engine.modality not in self._defaults:
            self._defaults[engine.modality] = engine.name

    def get(self, modality: str, name: str | None = None) -> Engine:
        by_name = self._engines.get(modality, {})
        engine = by_name.get(name or self._defaults.get(modality, ""))
        if engine is None:
            wanted = f"{modality} engine {name!r}" if name else f"{modality} engine"
            raise EngineUnavailable(f"No {wanted} is configured", code="engine_not_configured")
        return engine

    def all(self) -> Iterable[Engine]:
        for by_name in self._engines.values():
            yield from by_name.values()

    async def health(self) -> dict[str, bool]:
        status = {}
        for engine in self.all():
            try:
                status[engine.name] = await engine.ready()
            except Exception:  # /health reports a broken engine as down; it must not fail itself
                status[engine.name] = False
        return status

    def warm_in_background(self) -> None:
        """Start loading every engine that loads something (embedded models), without waiting."""
        for engine in self.all():
            warm = getattr(engine, "warm", None)
            if warm is not None:
                task = asyncio.create_task(warm(), name=f"warm-{engine.name}")
                self._warming.add(task)
                task.add_done_callback(self._warmed)

    async def warmed(self) -> None:
        """Wait until every load started by `warm_in_background` has finished, loaded or failed."""
        await asyncio.gather(*self._warming, return_exceptions=True)

    def _warmed(self, task: asyncio.Task[None]) -> None:
        self._warming.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine failed to load", exc_info=task.exception(), extra={"task": task.get_name()})

    async def close(self) -> None:
        for task in self._warming:
            task.cancel()
        for engine in self.all():
            await engine.close()
