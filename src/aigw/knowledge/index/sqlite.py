"""SQLite: full text in one FTS5 table per owner (BM25 over that owner's chunks alone); vectors as float32 BLOBs in
`kb_chunks`, searched exactly by an in-memory matrix that each worker keeps in step with the table (new rows are
read past the highest id seen; deletions bump `kb_index_state.generation`); past a size threshold, large scopes
go through an HNSW graph that follows the matrix and is kept in the data dir (`hnsw.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aigw.knowledge.chunk import Chunk
from aigw.knowledge.hnsw import HnswIndex, Rows
from aigw.knowledge.index import (
    PRUNE_KEEP,
    Scope,
    TermStatistics,
    Vector,
    expanding,
    insert_chunks,
    prunable,
    query_terms,
    selective,
)

# SQLite: each owner's FTS5 table (FTS5's BM25 takes its statistics from its whole table).
FTS5_TABLE = "kb_chunks_fts_{owner}"
FTS5_COLUMNS = "context, content, tokenize = 'porter unicode61 remove_diacritics 2'"


def _fts_match(terms: list[str]) -> str:
    return " OR ".join('"' + term.replace('"', "") + '"' for term in terms)


@dataclass
class _Matrix:
    """The chunk vectors of one database, row-aligned with their ids (ascending), kb ids and document ids."""

    dimensions: int = 0
    ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    kbs: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    docs: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    alive: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    vectors: Vector = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    size: int = 0
    generation: int = -1
    read_to: int = 0  # the highest chunk id read, including rows left out (of another embedding model)

    def append(self, ids: list[int], kbs: list[int], docs: list[int], vectors: Vector) -> None:
        n = len(ids)
        if self.dimensions == 0:
            self.dimensions = vectors.shape[1]
            self.vectors = np.zeros((0, self.dimensions), np.float32)
        needed = self.size + n
        if needed > len(self.ids):
            capacity = max(needed, 2 * len(self.ids), 1024)
            self.ids = np.resize(self.ids, capacity)
            self.kbs = np.resize(self.kbs, capacity)
            self.docs = np.resize(self.docs, capacity)
            self.alive = np.resize(self.alive, capacity)
            grown = np.zeros((capacity, self.dimensions), np.float32)
            grown[: self.size] = self.vectors[: self.size]
            self.vectors = grown
        end = self.size + n
        self.ids[self.size : end] = ids
        self.kbs[self.size : end] = kbs
        self.docs[self.size : end] = docs
        self.alive[self.size : end] = True
        self.vectors[self.size : end] = vectors
        self.size = end

    def keep_only(self, live_ids: NDArray[np.int64]) -> None:
        self.alive[: self.size] &= np.isin(self.ids[: self.size], live_ids, assume_unique=True)

    def rows(self, allocated: int) -> Rows:
        n = self.size
        return Rows(self.ids[:n], self.alive[:n], self.vectors[:n], allocated)

    def scope_rows(self, kb_ids: Sequence[int], doc_filter: NDArray[np.int64] | None) -> NDArray[np.intp]:
        """The live rows of some KBs (and documents), ascending."""
        n = self.size
        mask = self.alive[:n] & np.isin(self.kbs[:n], np.asarray(kb_ids, np.int64))
        if doc_filter is not None:
            mask &= np.isin(self.docs[:n], doc_filter)
        return np.flatnonzero(mask)

    def rank(self, rows: NDArray[np.intp], query: Vector, limit: int) -> list[tuple[int, float]]:
        """The best `limit` of `rows` by an exact scan."""
        n = self.size
        if rows.size == 0:
            return []
        # A full matrix-vector product is cheaper than gathering most rows; gather only a small scope.
        if rows.size * 4 < n:
            scores = self.vectors[rows] @ query
        else:
            scores = (self.vectors[:n] @ query)[rows]
        k = min(limit, rows.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(self.ids[rows[i]]), float(scores[i])) for i in top]

    def similarities(self, ids: Sequence[int], query: Vector) -> dict[int, float]:
        n = self.size
        if n == 0 or query.shape[0] != self.dimensions:
            return {}
        wanted = np.asarray(ids, np.int64)
        where = np.searchsorted(self.ids[:n], wanted)
        found = (where < n) & (self.ids[np.minimum(where, n - 1)] == wanted)
        rows = where[found]
        scores = self.vectors[rows] @ query
        return {int(i): float(s) for i, s in zip(wanted[found], scores, strict=True)}


class SqliteIndex:
    def __init__(self, hnsw: HnswIndex | None = None, model: str | None = None) -> None:
        self.model = model
        self._matrix = _Matrix()
        self.hnsw = hnsw
        self._allocated = 0  # the highest chunk id SQLite ever gave out
        self._lock = asyncio.Lock()
        self.statistics = TermStatistics()
        self._tables: set[str] = set()  # owners' FTS5 tables known to exist

    async def prepare(self, db: AsyncSession, dimensions: int) -> None:  # noqa: ARG002 - nothing per dimension
        await self._sync(db)

    async def add(
        self, db: AsyncSession, owner: int, document_id: int, kb_id: int, chunks: Sequence[Chunk], vectors: Vector
    ) -> None:
        blobs = [v.astype(np.float32).tobytes() for v in vectors]
        await insert_chunks(db, document_id, kb_id, chunks, blobs)
        table = FTS5_TABLE.format(owner=int(owner))
        await db.execute(text(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5({FTS5_COLUMNS})"))
        await db.execute(
            text(
                f"INSERT INTO {table} (rowid, context, content) "
                "SELECT id, context, content FROM kb_chunks WHERE document_id = :document_id"
            ),
            {"document_id": document_id},
        )

    async def deleting(self, db: AsyncSession, owner: int, document_ids: Sequence[int]) -> None:
        if document_ids and await self._has_table(db, owner):
            params = {"ids": list(document_ids)}
            statement = (
                f"DELETE FROM {FTS5_TABLE.format(owner=int(owner))} "
                "WHERE rowid IN (SELECT id FROM kb_chunks WHERE document_id IN :ids)"
            )
            await db.execute(expanding(statement, params), params)
        await db.execute(text("UPDATE kb_index_state SET generation = generation + 1 WHERE id = 1"))

    async def _has_table(self, db: AsyncSession, owner: int) -> bool:
        table = FTS5_TABLE.format(owner=int(owner))
        if table not in self._tables:
            found = await db.scalar(
                text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
            )
            if found:
                self._tables.add(table)  # never dropped but by a downgrade
        return table in self._tables

    async def fulltext(self, db: AsyncSession, scope: Scope, query: str, limit: int) -> list[tuple[int, float]]:
        terms = query_terms(query)
        owner = await self.statistics.owner(db, scope.kb_ids)
        if not terms or owner is None or not await self._has_table(db, owner):
            return []
        table = FTS5_TABLE.format(owner=owner)
        if len(terms) > PRUNE_KEEP:
            chunks = await self.statistics.chunks(db, owner)
            if prunable(chunks):

                async def count(term: str) -> int:
                    statement = text(f"SELECT count(*) FROM {table} WHERE {table} MATCH :match")
                    return int(await db.scalar(statement, {"match": _fts_match([term])}) or 0)

                terms = selective(terms, await self.statistics.frequencies(owner, terms, count), chunks)
        where, params = scope.sql()
        result = await db.execute(
            expanding(
                f"SELECT f.rowid, bm25({table}) AS rank FROM {table} f "
                # The covering index gives the scope's columns without reading the wide chunk rows (migration
                # 0004); SQLite's planner would otherwise look rows up by rowid.
                "JOIN kb_chunks c INDEXED BY ix_kb_chunks_scope ON c.id = f.rowid "
                f"WHERE {table} MATCH :match AND {where} "
                "ORDER BY rank LIMIT :limit",
                params,
            ),
            {**params, "match": _fts_match(terms), "limit": limit},
        )
        # FTS5's bm25() is negative, better is lower.
        return [(int(chunk_id), -float(rank)) for chunk_id, rank in result.all()]

    async def vector(self, db: AsyncSession, scope: Scope, query: Vector, limit: int) -> list[tuple[int, float]]:
        await self._sync(db)
        doc_filter: NDArray[np.int64] | None = None
        if scope.include_tags or scope.exclude_tags:
            # Tag filters name documents; the matrix then keeps only their rows before ranking.
            where, params = scope.sql("d", document_column="id")
            result = await db.execute(expanding(f"SELECT d.id FROM kb_documents d WHERE {where}", params), params)
            doc_filter = np.asarray([row[0] for row in result.all()], np.int64)
        return await asyncio.to_thread(self._search, self._matrix, scope.kb_ids, doc_filter, query, limit)

    def _search(
        self,
        matrix: _Matrix,
        kb_ids: Sequence[int],
        doc_filter: NDArray[np.int64] | None,
        query: Vector,
        limit: int,
    ) -> list[tuple[int, float]]:
        if matrix.size == 0 or query.shape[0] != matrix.dimensions:
            return []
        rows = matrix.scope_rows(kb_ids, doc_filter)
        if self.hnsw is not None:
            n = matrix.size
            found = self.hnsw.search(matrix.ids[:n], matrix.vectors[:n], rows, query, limit)
            if found is not None:
                return found
        return matrix.rank(rows, query, limit)

    async def similarities(self, db: AsyncSession, ids: Sequence[int], query: Vector) -> dict[int, float]:  # noqa: ARG002
        # No sync: the ids were ranked moments ago from a matrix that vector() brought up to date.
        return self._matrix.similarities(ids, query)

    async def close(self) -> None:
        if self.hnsw is not None:
            await asyncio.to_thread(self.hnsw.close)

    async def _sync(self, db: AsyncSession) -> None:
        """Bring the matrix up to the committed table: read new rows, and drop deleted ones."""
        state = (
            await db.execute(
                text(
                    "SELECT (SELECT max(id) FROM kb_chunks), (SELECT generation FROM kb_index_state WHERE id = 1), "
                    "(SELECT seq FROM sqlite_sequence WHERE name = 'kb_chunks')"
                )
            )
        ).one()
        last_id, generation = int(state[0] or 0), int(state[1] or 0)
        matrix = self._matrix
        if last_id <= matrix.read_to and generation <= matrix.generation:
            return
        self._allocated = max(self._allocated, int(state[2] or 0), last_id)
        async with self._lock:
            matrix = self._matrix  # another search may have moved it on while this one waited
            if generation > matrix.generation:
                rows = (await db.execute(text("SELECT id FROM kb_chunks ORDER BY id"))).all()
                # Off the event loop: at 100k chunks the membership test and a compaction's copy of the vectors
                # (~150 MB) take long enough to stall every other request.
                self._matrix = matrix = await asyncio.to_thread(_without_deleted, matrix, rows, generation)
            if last_id > matrix.read_to:
                await self._load_after(db, matrix)
                matrix.read_to = last_id  # read in the same snapshot as the rows
            if self.hnsw is not None:
                self.hnsw.refresh(self._matrix.rows(self._allocated))

    async def _load_after(self, db: AsyncSession, matrix: _Matrix) -> None:
        # A document's model is written in the transaction that writes its chunks, and re-embedding writes new ones:
        # a row's model never changes once the matrix holds it.
        same_model = "" if self.model is None else (
            "AND c.document_id IN (SELECT id FROM kb_documents WHERE embedding_model = :model) "
        )  # fmt: skip
        result = await db.stream(
            text(f"SELECT c.id, c.kb_id, c.document_id, c.embedding FROM kb_chunks c WHERE c.id > :last {same_model}"
                 "ORDER BY c.id"),
            {"last": matrix.read_to, "model": self.model},
        )  # fmt: skip
        async for batch in result.partitions(4096):
            ids, kbs, docs, blobs = [], [], [], []
            for chunk_id, kb_id, doc_id, blob in batch:
                if blob is None or (matrix.dimensions and len(blob) != matrix.dimensions * 4):
                    continue  # a vector from another embedding model: not comparable, not searchable
                ids.append(chunk_id)
                kbs.append(kb_id)
                docs.append(doc_id)
                blobs.append(blob)
            if ids:
                await asyncio.to_thread(_append_blobs, matrix, ids, kbs, docs, blobs)


def _without_deleted(matrix: _Matrix, live_rows: Sequence[Any], generation: int) -> _Matrix:
    """The matrix without the rows whose chunks are gone: marked dead, and compacted once a quarter is."""
    matrix.keep_only(np.fromiter((row[0] for row in live_rows), np.int64, count=len(live_rows)))
    matrix.generation = generation
    if matrix.size and int(matrix.alive[: matrix.size].sum()) * 4 < matrix.size * 3:
        return _compacted(matrix)
    return matrix


def _append_blobs(matrix: _Matrix, ids: list[int], kbs: list[int], docs: list[int], blobs: list[bytes]) -> None:
    matrix.append(ids, kbs, docs, np.frombuffer(b"".join(blobs), np.float32).reshape(len(ids), -1))


def _compacted(matrix: _Matrix) -> _Matrix:
    keep = np.flatnonzero(matrix.alive[: matrix.size])
    fresh = _Matrix(generation=matrix.generation)
    if keep.size:
        fresh.append(
            matrix.ids[keep].tolist(), matrix.kbs[keep].tolist(), matrix.docs[keep].tolist(), matrix.vectors[keep]
        )
    fresh.dimensions = matrix.dimensions
    fresh.read_to = matrix.read_to
    return fresh
