"""Hybrid retrieval: full text and vector similarity, fused by a convex combination of their scores.

Each side ranks its own top `CANDIDATES` inside the scope; each list's scores are min-max normalised for this
query (best 1, last 0, absent 0) and combined as (1 - ALPHA) * text + ALPHA * vector. On the retrieval-quality
benchmark (bench/kb_quality) this beat reciprocal-rank fusion clearly (see bench/README.md), because it keeps
how much better the best match is, not only that it is first. `score` is therefore in [0, 1], 1 meaning best
by both measures. Every hit also carries its cosine `similarity` to the query, the absolute measure chat
injection uses to decide whether anything is relevant at all.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.engines.embed.base import EmbeddingEngine
from aigw.knowledge.index import KnowledgeIndex, Scope

Mode = Literal["hybrid", "fulltext", "vector"]
CANDIDATES = 100
QUERY_CACHE = 2048
Vector = npt.NDArray[np.float32]
ALPHA = 0.5  # weight of the vector side


@dataclass
class Hit:
    chunk_id: int
    document_id: int
    kb_id: int
    content: str
    context: str
    source: str
    page: int | None
    row: int | None
    score: float
    similarity: float | None


class Retriever:
    def __init__(
        self,
        index: KnowledgeIndex,
        embedder: EmbeddingEngine,
        cache_size: int = QUERY_CACHE,
        sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        # With a session factory, a hybrid search runs its vector side on a second connection, beside full text.
        self._sessions = sessions
        # Query vectors by searched scope and text: a repeated question (a site's FAQ) skips the model. Keyed by
        # the scope, so a fast answer never tells one user what another has just asked.
        self._vectors: OrderedDict[tuple[tuple[int, ...], str], Vector] = OrderedDict()
        self._cache_size = cache_size

    async def query_vector(self, scope: Scope, query: str) -> Vector:
        """The query's embedding, from the cache when the same scope searched the same text recently."""
        key = (tuple(sorted(scope.kb_ids)), query)
        cached = self._vectors.get(key)
        if cached is not None:
            self._vectors.move_to_end(key)
            return cached
        vector: Vector = (await self.embedder.embed([query], purpose="query"))[0]
        self._vectors[key] = vector
        if len(self._vectors) > self._cache_size:
            self._vectors.popitem(last=False)
        return vector

    async def search(self, db: AsyncSession, scope: Scope, query: str, top_k: int, mode: Mode = "hybrid") -> list[Hit]:
        """The `top_k` best chunks in `scope` for `query`, best first. Ends the caller's transaction while the
        query is embedded (it must hold no pending writes)."""
        if not scope.kb_ids:
            return []
        candidates = max(CANDIDATES, top_k * 4)
        # The query is embedded (on the model's thread) while the full-text side runs; with a second connection,
        # the vector search runs beside full text too.
        embedding = asyncio.ensure_future(self.query_vector(scope, query)) if mode != "fulltext" else None
        beside = (
            asyncio.ensure_future(self._vector_beside(embedding, scope, candidates))
            if mode == "hybrid" and embedding is not None and self._sessions is not None
            else None
        )
        try:
            by_text = []
            if mode != "vector":
                by_text = await self.index.fulltext(db, scope, query, candidates if mode == "hybrid" else top_k)
            if embedding is not None and not embedding.done():
                # Only reads so far: the connection goes back to the pool while the model works, so requests
                # waiting on a busy embedder cannot starve every other route of connections.
                await db.commit()
            vector = await embedding if embedding is not None else None
            by_vector = await beside if beside is not None else None
        finally:
            for task in (embedding, beside):
                if task is not None and not task.done():
                    task.cancel()
        scores: dict[int, float]
        similarities: dict[int, float] = {}
        if vector is None:
            best = by_text[0][1] if by_text else 1.0
            scores = {chunk_id: rank / best for chunk_id, rank in by_text}
        elif mode == "vector":
            ranked = await self.index.vector(db, scope, vector, top_k)
            scores = {chunk_id: max(0.0, min(1.0, sim)) for chunk_id, sim in ranked}
            similarities = dict(ranked)
        else:
            if by_vector is None:
                by_vector = await self.index.vector(db, scope, vector, candidates)
            scores = fuse(by_text, by_vector)
            similarities = dict(by_vector)
        chosen = sorted(scores, key=lambda c: -scores[c])[:top_k]
        missing = [chunk_id for chunk_id in chosen if chunk_id not in similarities]
        if vector is not None and missing:  # found by full text only: its similarity is read for these alone
            similarities.update(await self.index.similarities(db, missing, vector))
        rows = await chunk_rows(db, chosen)
        hits = []
        for chunk_id in chosen:
            row = rows.get(chunk_id)
            if row is None:
                continue  # deleted between ranking and reading
            hits.append(
                Hit(
                    chunk_id=chunk_id,
                    document_id=row[0],
                    kb_id=row[1],
                    content=row[2],
                    context=row[3],
                    source=row[6] or row[7] or "",
                    page=row[4],
                    row=row[5],
                    score=round(scores[chunk_id], 4),
                    similarity=round(similarities[chunk_id], 4) if chunk_id in similarities else None,
                )
            )
        return hits

    async def _vector_beside(
        self, embedding: asyncio.Future[Vector], scope: Scope, limit: int
    ) -> list[tuple[int, float]]:
        assert self._sessions is not None
        vector = await embedding
        async with self._sessions() as db:
            return await self.index.vector(db, scope, vector, limit)


def fuse(by_text: Sequence[tuple[int, float]], by_vector: Sequence[tuple[int, float]]) -> dict[int, float]:
    """Convex combination of the two lists' min-max-normalised scores (see the module docstring)."""
    fused: dict[int, float] = {}
    for weight, ranked in ((1 - ALPHA, by_text), (ALPHA, by_vector)):
        if not ranked:
            continue
        values = [score for _, score in ranked]
        low, high = min(values), max(values)
        span = high - low
        for chunk_id, score in ranked:
            normalised = (score - low) / span if span > 1e-12 else 1.0
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight * normalised
    return fused


async def chunk_rows(
    db: AsyncSession, ids: Sequence[int]
) -> dict[int, tuple[int, int, str, str, int | None, int | None, str | None, str | None]]:
    if not ids:
        return {}
    result = await db.execute(
        text(
            "SELECT c.id, c.document_id, c.kb_id, c.content, c.context, c.page, c.row, d.filename, d.url "
            "FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id WHERE c.id IN :ids"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": list(ids)},
    )
    return {row[0]: tuple(row[1:]) for row in result.all()}
