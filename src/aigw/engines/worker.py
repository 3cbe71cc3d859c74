"""One thread that runs an embedded model's blocking calls, with a bounded queue in front of it.

Speech and vision models use every core for one request, so each runs its requests one at a time on its own
thread. At most `max_queue` requests may be waiting or running; the next one gets 503 with a `Retry-After`
that grows with the queue. Calls never run on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aigw.errors import EngineBusy, EngineUnavailable

T = TypeVar("T")


class InferenceWorker:
    def __init__(self, name: str, what: str, max_queue: int, seconds_per_job: float) -> None:
        self.what = what  # "The speech-to-text model", for messages
        self.max_queue = max_queue
        self.seconds_per_job = seconds_per_job
        self.waiting = 0  # requests queued or running
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise EngineUnavailable(f"{self.what} is shut down")
        if self.waiting >= self.max_queue:
            raise EngineBusy(
                f"{self.what} has {self.waiting} requests in hand; try again shortly",
                headers={"Retry-After": str(max(1, round(self.waiting * self.seconds_per_job)))},
            )
        self.waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.waiting -= 1

    async def load(self, fn: Callable[[], object]) -> None:
        """Run a model load on the worker thread, outside the queue's bound (warming at start)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, True)
