"""Re-embedding: bring documents embedded by another model into the configured model's vector space.

Vectors are comparable only within one model (`EmbeddingEngine.model_id`), which each document records. After
the embedding model is changed, searches compare a query only with the documents of the new model; the others
are still found by full text, and `aigw kb reindex` re-embeds them here. A document is re-embedded from its
stored chunks (no re-extraction, no OCR) and swapped in one transaction: its old chunks go and the new ones, with
their full text, arrive together, so a search sees the document whole before or after, never half. A document
deleted meanwhile is skipped; one that fails to embed keeps its old chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.engines.embed.base import EmbeddingEngine
from aigw.knowledge.chunk import Chunk
from aigw.knowledge.index import KnowledgeIndex
from aigw.knowledge.jobs import embed_chunks
from aigw.store.models import KbChunk, KbDocument


@dataclass(frozen=True)
class Stale:
    """A ready document whose vectors are not of the configured model."""

    id: int
    kb_id: int
    owner: int
    chunks: int
    model: str | None  # None: unknown (written before aigw recorded models)


async def stale_documents(
    db: AsyncSession, model: str, kb_id: int | None = None, *, everything: bool = False
) -> list[Stale]:
    """The ready documents (of one KB, or all) not embedded by `model`; with `everything`, all of them."""
    query = select(
        KbDocument.id, KbDocument.kb_id, KbDocument.user_id, KbDocument.chunk_count, KbDocument.embedding_model
    ).where(KbDocument.status == "ready")
    if not everything:
        query = query.where(or_(KbDocument.embedding_model.is_(None), KbDocument.embedding_model != model))
    if kb_id is not None:
        query = query.where(KbDocument.kb_id == kb_id)
    return [Stale(*row) for row in (await db.execute(query.order_by(KbDocument.id))).all()]


async def stale_counts(db: AsyncSession, model: str) -> list[tuple[str | None, int, int]]:
    """(model, documents, knowledge bases) for each other model that ready documents were embedded with."""
    query = (
        select(KbDocument.embedding_model, func.count(), func.count(func.distinct(KbDocument.kb_id)))
        .where(KbDocument.status == "ready")
        .where(or_(KbDocument.embedding_model.is_(None), KbDocument.embedding_model != model))
        .group_by(KbDocument.embedding_model)
    )
    return [(name, int(documents), int(kbs)) for name, documents, kbs in (await db.execute(query)).all()]


class Reindexer:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], index: KnowledgeIndex, embedder: EmbeddingEngine
    ) -> None:
        self.sessions = sessions
        self.index = index
        self.embedder = embedder

    async def document(self, stale: Stale, done: Callable[[int], None] = lambda _: None) -> bool:
        """Re-embed one document; whether it was (False: it was deleted or changed meanwhile)."""
        async with self.sessions() as db:
            rows = (
                await db.execute(
                    select(KbChunk.position, KbChunk.page, KbChunk.row, KbChunk.context, KbChunk.content)
                    .where(KbChunk.document_id == stale.id)
                    .order_by(KbChunk.position)
                )
            ).all()
        # The connection goes back to the pool while the model works.
        chunks = [Chunk(content=c, context=x, position=p, page=pg, row=r) for p, pg, r, x, c in rows]
        vectors = await embed_chunks(self.embedder, chunks, done) if chunks else None
        async with self.sessions() as db:
            # Claim the swap: the document must still be ready and as it was read.
            claimed = await db.execute(
                update(KbDocument)
                .where(KbDocument.id == stale.id, KbDocument.status == "ready")
                .where(KbDocument.chunk_count == len(chunks))
                .values(embedding_model=self.embedder.model_id)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                await db.rollback()
                return False
            await self.index.deleting(db, stale.owner, [stale.id])
            await db.execute(delete(KbChunk).where(KbChunk.document_id == stale.id))
            if vectors is not None:
                await self.index.add(db, stale.owner, stale.id, stale.kb_id, chunks, vectors)
            await db.commit()
        return True

    async def all(
        self, documents: Sequence[Stale], done: Callable[[Stale, int], None] = lambda *_: None
    ) -> tuple[int, int]:
        """Re-embed the documents in turn: (re-embedded, skipped because deleted or changed meanwhile)."""
        finished = skipped = 0
        for stale in documents:

            def progress(n: int, stale: Stale = stale) -> None:
                done(stale, n)

            if await self.document(stale, progress):
                finished += 1
            else:
                skipped += 1
        return finished, skipped
