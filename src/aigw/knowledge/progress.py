"""How far a document's ingestion has got: a stage, and units done of a total, for the document API and the CLI.

| stage        | progress counts | when                                                         |
|--------------|-----------------|--------------------------------------------------------------|
| `queued`     | nothing         | uploaded, waiting for a worker                               |
| `extracting` | pages (PDF)     | reading the document; text formats have no pages to count    |
| `ocr`        | pages           | OCR of a scanned page or image frame: done = pages finished  |
| `embedding`  | chunks          | chunks embedded of the document's chunks                     |
| `indexing`   | chunks          | writing chunks, vectors and `ready` in one transaction       |

A `ready` document has no stage and its chunks done of its chunks; a `failed` one has neither.

The worker reports as it goes (every page, every embedding batch), from the event loop or from the extraction
thread. One task per document writes the latest report in a short transaction of its own, at most every
`WRITE_INTERVAL` seconds: a fast machine does not write per batch, and no transaction spans the slow work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.store.models import KbDocument

log = logging.getLogger("aigw.knowledge.progress")

Stage = Literal["queued", "extracting", "ocr", "embedding", "indexing"]
Unit = Literal["pages", "chunks"]

WRITE_INTERVAL = 0.5


def unit_of(stage: str | None) -> Unit:
    """What a document's progress counts in this stage (chunks once it is ready, when there is no stage)."""
    return "pages" if stage in ("extracting", "ocr") else "chunks"


@dataclass(frozen=True)
class Report:
    stage: Stage
    done: int | None = None
    total: int | None = None


class ProgressWriter:
    """Writes one document's progress while its worker holds the lease; the last report wins.

    Args:
        sessions: Where to write.
        doc_id: The document.
        owner: The lease owner: a worker that has lost the lease, or a document already ready, failed or
            deleted, is left alone.
        interval: The least time between two writes.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        doc_id: int,
        owner: str,
        *,
        interval: float = WRITE_INTERVAL,
    ) -> None:
        self.sessions = sessions
        self.doc_id = doc_id
        self.owner = owner
        self.interval = interval
        self._loop = asyncio.get_running_loop()
        self._latest: Report | None = None
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"kb-progress-{doc_id}")

    def report(self, stage: Stage, done: int | None = None, total: int | None = None) -> None:
        """Record where the work is now; call it on the event loop (see `report_from_thread`)."""
        self._latest = Report(stage, done, total)
        self._changed.set()

    def report_from_thread(self, stage: Stage, done: int | None = None, total: int | None = None) -> None:
        """`report` for code running in a worker thread (extraction, OCR)."""
        # The loop is gone only when the server is stopping; the abandoned extraction has nobody to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.report, stage, done, total)

    async def close(self) -> None:
        """Write the last report now (not after the interval), then stop."""
        self._closing.set()
        self._changed.set()
        await self._task

    async def abort(self) -> None:
        """Stop without writing what is pending (the document is finished or failed by other means)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        written: Report | None = None
        while True:
            await self._changed.wait()
            self._changed.clear()
            latest = self._latest
            if latest is not None and latest != written:
                await self._write(latest)
                written = latest
            if self._closing.is_set():
                if not self._changed.is_set():
                    return
                continue
            # Reports made meanwhile are not lost: the last one is written when the interval is over.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.interval)

    async def _write(self, report: Report) -> None:
        try:
            async with self.sessions() as db:
                await db.execute(
                    update(KbDocument)
                    .where(
                        KbDocument.id == self.doc_id,
                        KbDocument.lease_owner == self.owner,
                        KbDocument.status == "processing",
                    )
                    .values(stage=report.stage, progress_done=report.done, progress_total=report.total)
                    .execution_options(synchronize_session=False)
                )
                await db.commit()
        except Exception:  # progress is for people watching; a missed write must not fail the ingestion
            log.warning("could not record ingestion progress", extra={"document_id": self.doc_id}, exc_info=True)
