"""The ingestion worker: documents in `processing` become `ready` (searchable) or `failed` (with a reason).

Every server process runs `AIGW_KB_INGEST_WORKERS` workers (2), and users take turns, one document each at a
time, so one user's large uploads do not hold up another's. A worker claims a document by taking its lease
(an UPDATE that only succeeds if nobody holds a live lease), renews the lease while it works, and writes the
chunks, vectors and the `ready` status in one transaction guarded by that lease. So:
- a document queued before a crash or restart is picked up again (its lease runs out);
- two workers never both finish the same document;
- a crash mid-way leaves nothing of the document searchable.
A document that has taken down its worker `MAX_ATTEMPTS` times is failed instead of retried forever.
Only the document's own faults fail it. A busy or unreachable embedding engine puts it back in the queue for a
later try (it does not count as an attempt); a database error ends the round, and the worker backs off, hands
back its leases and goes on: nothing ends the worker but `stop()`.
While it works, the worker reports the document's stage and progress (`progress.py`), outside the final transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.engines.embed.base import EmbeddingEngine
from aigw.engines.ocr.tesseract import tesseract_language
from aigw.errors import AigwError, EngineUnavailable
from aigw.knowledge.chunk import Chunk, chunk_document
from aigw.knowledge.extract import DocumentKind, Limits, extract
from aigw.knowledge.index import KnowledgeIndex
from aigw.knowledge.progress import ProgressWriter
from aigw.knowledge.service import KnowledgeService
from aigw.store.models import KbDocument

log = logging.getLogger("aigw.knowledge.jobs")

MAX_ATTEMPTS = 3
EMBED_BATCH = 16  # a search waits for at most one batch of a document being ingested
POLL_SECONDS = 2.0
BACKOFF_SECONDS = 1.0  # after a failed round or a busy engine; doubles each time, up to MAX_BACKOFF_SECONDS
MAX_BACKOFF_SECONDS = 60.0
MAX_POSTPONEMENTS = 30  # a document waits this many times (~25 minutes) for its embedding engine, then fails


class IngestionFailed(AigwError):
    code = "ingestion_failed"


class IngestionWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        service: KnowledgeService,
        index: KnowledgeIndex,
        embedder: EmbeddingEngine,
        lease_seconds: float,
    ) -> None:
        self.sessions = sessions
        self.service = service
        self.index = index
        self.embedder = embedder
        self.lease = timedelta(seconds=lease_seconds)
        self.owner = uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None
        self._postponed: dict[int, int] = {}  # document id -> times its engine was busy or away in a row

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kb-ingestion")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        wakeup = self.service.wakeup
        failures = 0
        while True:
            wakeup.clear()  # before claiming: an upload that lands meanwhile sets it again and is not missed
            try:
                doc_id = await self.claim()
                if doc_id is not None:
                    await self.process(doc_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away mid-round, or a bug: never the end of the worker
                failures += 1
                delay = backoff(failures)
                log.exception("ingestion round failed; retrying", extra={"retry_in_seconds": delay})
                await asyncio.sleep(delay)
                await self._hand_back()
                continue
            failures = 0
            if doc_id is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), POLL_SECONDS)

    async def _hand_back(self) -> None:
        """Give up the leases this worker still holds after a failed round, so the documents are claimed again
        at once rather than when their leases run out. Best effort: the database may still be away."""
        try:
            async with self.sessions() as db:
                await db.execute(
                    update(KbDocument)
                    .where(KbDocument.lease_owner == self.owner, KbDocument.status == "processing")
                    .values(lease_owner=None, lease_until=None, stage="queued", progress_done=None, progress_total=None)
                    .execution_options(synchronize_session=False)
                )
                await db.commit()
        except Exception:
            log.warning("could not hand back ingestion leases; they run out on their own", exc_info=True)

    async def claim(self) -> int | None:
        """Take the lease of the next document that needs work and nobody is working on: users take turns (each
        user's documents in upload order, one at a time), so one user's many or large uploads do not keep
        another's from starting."""
        now = datetime.now(UTC)
        turn = func.row_number().over(partition_by=KbDocument.user_id, order_by=KbDocument.id).label("turn")
        pending = (
            select(KbDocument.id, KbDocument.user_id, KbDocument.lease_until, turn)
            .where(KbDocument.status == "processing")
            .subquery()
        )
        # One document per user at a time: the embedding model is shared, so a second document of the same user
        # would gain little, and a worker left free takes the next user's upload at once.
        busy = select(KbDocument.user_id).where(
            KbDocument.status == "processing", KbDocument.lease_owner.is_not(None), KbDocument.lease_until >= now
        )
        async with self.sessions() as db:
            candidates = await db.scalars(
                select(pending.c.id)
                .where(
                    or_(pending.c.lease_until.is_(None), pending.c.lease_until < now),
                    pending.c.user_id.not_in(busy),
                )
                .order_by(pending.c.turn, pending.c.id)
                .limit(5)
            )
            for doc_id in candidates.all():
                taken = await db.execute(
                    update(KbDocument)
                    .where(
                        KbDocument.id == doc_id,
                        KbDocument.status == "processing",
                        or_(KbDocument.lease_until.is_(None), KbDocument.lease_until < now),
                    )
                    .values(
                        lease_owner=self.owner,
                        lease_until=now + self.lease,
                        attempts=KbDocument.attempts + 1,
                        stage="extracting",
                        progress_done=None,
                        progress_total=None,
                    )
                    .execution_options(synchronize_session=False)
                )
                await db.commit()
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    return int(doc_id)
        return None

    async def process(self, doc_id: int) -> None:
        started = time.perf_counter()
        heartbeat = asyncio.create_task(self._renew(doc_id))
        progress = ProgressWriter(self.sessions, doc_id, self.owner)
        try:
            async with self.sessions() as db:
                document = await db.get(KbDocument, doc_id)
            if document is None or document.lease_owner != self.owner:
                return
            log.info(
                "document claimed",
                extra={
                    "document_id": doc_id,
                    "kind": document.kind,
                    "size": document.size,
                    "attempt": document.attempts,
                },
            )
            if document.attempts > MAX_ATTEMPTS:
                raise IngestionFailed(f"Ingestion was interrupted {MAX_ATTEMPTS} times; giving up")
            chunks = await asyncio.to_thread(self._read, document, progress)
            if not chunks:
                raise IngestionFailed("No text found in the document", code="no_text")
            try:
                vectors = await self._embed(chunks, progress)
            except EngineUnavailable as exc:  # busy or away: the document is not at fault; it waits its turn again
                if self._postponed.get(doc_id, 0) >= MAX_POSTPONEMENTS:
                    self._postponed.pop(doc_id, None)
                    raise IngestionFailed(f"The embedding engine stayed unavailable: {exc.message}") from exc
                await progress.abort()
                await self._postpone(doc_id, exc)
                return
            self._postponed.pop(doc_id, None)
            progress.report("indexing", len(chunks), len(chunks))
            await progress.close()  # written before the final transaction, which no progress write may race
            if not await self._commit(doc_id, chunks, vectors):
                log.warning("document lost to another worker; its work is dropped", extra={"document_id": doc_id})
                return
            log.info(
                "document ready",
                extra={
                    "document_id": doc_id,
                    "chunks": len(chunks),
                    "seconds": round(time.perf_counter() - started, 2),
                },
            )
        except (asyncio.CancelledError, SQLAlchemyError):
            raise  # a database error is the round's, not the document's: the worker backs off and retries
        except AigwError as exc:
            await self._fail(doc_id, exc.message)
        except Exception:  # any other failure is a bug; the user gets a reason, the log the traceback
            log.exception("ingestion failed", extra={"document_id": doc_id})
            await self._fail(doc_id, "Internal error while reading the document")
        finally:
            await progress.abort()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    def _read(self, document: KbDocument, progress: ProgressWriter) -> list[Chunk]:
        kind: DocumentKind = document.kind  # type: ignore[assignment]
        extracted = extract(
            self.service.path_of(document),
            kind,
            language=tesseract_language(document.language),
            source_url=document.url,
            progress=progress.report_from_thread,
            limits=Limits(pages=self.service.settings.kb_max_pages, ocr_seconds=self.service.settings.kb_ocr_seconds),
        )
        source = document.filename or extracted.title or document.url or f"document {document.id}"
        return chunk_document(
            extracted,
            source=source,
            max_chars=self.service.settings.kb_chunk_chars,
            overlap=self.service.settings.kb_chunk_overlap,
        )

    async def _embed(self, chunks: list[Chunk], progress: ProgressWriter) -> np.ndarray:
        progress.report("embedding", 0, len(chunks))
        return await embed_chunks(self.embedder, chunks, lambda done: progress.report("embedding", done, len(chunks)))

    async def _commit(self, doc_id: int, chunks: list[Chunk], vectors: np.ndarray) -> bool:
        """Write the chunks and `ready`, if this worker still holds the lease; whether it did."""
        async with self.sessions() as db:
            # Writing `ready` under our lease first makes this transaction the only one that can finish it.
            finished = await db.execute(
                update(KbDocument)
                .where(KbDocument.id == doc_id, KbDocument.lease_owner == self.owner, KbDocument.status == "processing")
                .values(
                    status="ready",
                    chunk_count=len(chunks),
                    ready_at=datetime.now(UTC),
                    lease_owner=None,
                    lease_until=None,
                    error=None,
                    stage=None,
                    progress_done=len(chunks),
                    progress_total=len(chunks),
                    embedding_model=self.embedder.model_id,
                )
                .execution_options(synchronize_session=False)
            )
            if finished.rowcount != 1:  # type: ignore[attr-defined]
                await db.rollback()  # deleted meanwhile, or the lease was lost to another worker
                return False
            document = await db.get(KbDocument, doc_id)
            assert document is not None
            await self.index.add(db, document.user_id, doc_id, document.kb_id, chunks, vectors)
            await db.commit()
            return True

    async def _postpone(self, doc_id: int, exc: EngineUnavailable) -> None:
        """Put the document back in the queue, to be claimed again after a backoff; this try does not count."""
        times = self._postponed[doc_id] = self._postponed.get(doc_id, 0) + 1
        delay = backoff(times)
        log.warning(
            "embedding engine unavailable; the document waits",
            extra={"document_id": doc_id, "reason": exc.message, "retry_in_seconds": delay},
        )
        async with self.sessions() as db:
            await db.execute(
                update(KbDocument)
                .where(KbDocument.id == doc_id, KbDocument.lease_owner == self.owner)
                .values(
                    lease_owner=None,
                    lease_until=datetime.now(UTC) + timedelta(seconds=delay),
                    attempts=KbDocument.attempts - 1,
                    stage="queued",
                    progress_done=None,
                    progress_total=None,
                )
                .execution_options(synchronize_session=False)
            )
            await db.commit()

    async def _fail(self, doc_id: int, reason: str) -> None:
        log.warning("document failed", extra={"document_id": doc_id, "reason": reason})
        async with self.sessions() as db:
            await db.execute(
                update(KbDocument)
                .where(KbDocument.id == doc_id, KbDocument.lease_owner == self.owner)
                .values(
                    status="failed",
                    error=reason,
                    lease_owner=None,
                    lease_until=None,
                    stage=None,
                    progress_done=None,
                    progress_total=None,
                )
                .execution_options(synchronize_session=False)
            )
            await db.commit()

    async def _renew(self, doc_id: int) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                async with self.sessions() as db:
                    await db.execute(
                        update(KbDocument)
                        .where(KbDocument.id == doc_id, KbDocument.lease_owner == self.owner)
                        .values(lease_until=datetime.now(UTC) + self.lease)
                        .execution_options(synchronize_session=False)
                    )
                    await db.commit()
            except Exception:  # a missed renewal only risks a second worker redoing the work
                log.warning("could not renew an ingestion lease", extra={"document_id": doc_id}, exc_info=True)


def backoff(times: int) -> float:
    """Seconds to wait after the `times`-th failure in a row."""
    return float(min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (times - 1)))


async def embed_chunks(embedder: EmbeddingEngine, chunks: Sequence[Chunk], done: Callable[[int], None]) -> np.ndarray:
    """The chunks' vectors (each chunk's context line, then its text), in batches; `done` hears how many are."""
    texts = [f"{c.context}\n{c.content}" if c.context else c.content for c in chunks]
    parts: list[np.ndarray] = []
    for start in range(0, len(texts), EMBED_BATCH):
        parts.append(await embedder.embed(texts[start : start + EMBED_BATCH], purpose="document"))
        done(min(start + EMBED_BATCH, len(texts)))
    return np.concatenate(parts)
