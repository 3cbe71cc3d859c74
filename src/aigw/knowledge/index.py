"""Where chunks are stored and searched; the only module that knows SQLite from PostgreSQL.

SQLite: full text in one FTS5 table per owner (BM25 over that owner's chunks alone), vectors as float32 BLOBs in
`kb_chunks`, searched exactly by an in-memory matrix that each worker keeps in step with the table (new rows are
read past the highest id seen; deletions bump `kb_index_state.generation`); past a size threshold, large scopes go
through an HNSW graph that follows the matrix and is kept in the data dir (`hnsw.py`). PostgreSQL: tsvectors with a
GIN index in their own narrow table, `kb_chunks_fts` (a full-text query then reads small rows, not chunks with
their vectors), and pgvector with an HNSW index for large scopes and an exact scan for small ones (pgvector 0.6
filters after the HNSW walk, so a small KB among many would otherwise come back short).

Every search takes a `Scope` and applies it inside the query: the KBs (which are always one owner's), and the
document tags to include or exclude. How much a query word counts (its weight, and whether it is too common to
search for) comes from the searching owner's own chunks, on both backends (`TermStatistics`): what other users
upload never changes a user's ranking.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from aigw.knowledge.chunk import Chunk
from aigw.knowledge.hnsw import HnswIndex, HnswOptions, Rows

Vector = NDArray[np.float32]

# Questions are full of words that match every chunk; dropping them keeps OR queries selective (and fast).
_STOPWORDS = frozenset(
    "a an and are as at be but by can could did do does doing for from had has have how i if in into is it its "
    "me my no not of on or our should so than that the their them then there these they this those to too "
    "us was we were what when where which who whom why will with would you your".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
# pgvector 0.6 has no iterative index scan: a scope this small is searched exactly instead of through HNSW.
PG_EXACT_SCAN_LIMIT = 20_000
# PostgreSQL full text re-ranks this many ts_rank candidates by idf-weighted term ranks.
PG_CANDIDATES = 200
FREQUENCY_TTL_SECONDS = 60.0
# Full text for an owner of many chunks skips words found in more than PRUNE_SHARE of them (keeping at least
# PRUNE_KEEP words): measured at 100k chunks on SQLite, p50 50 -> 5 ms for the quality questions.
PRUNE_MIN_CHUNKS = 50_000
PRUNE_SHARE = 0.02
PRUNE_KEEP = 2
# SQLite: each owner's FTS5 table (FTS5's BM25 takes its statistics from its whole table).
FTS5_TABLE = "kb_chunks_fts_{owner}"
FTS5_COLUMNS = "context, content, tokenize = 'porter unicode61 remove_diacritics 2'"
# Arbitrary constant naming aigw's index-creation lock among PostgreSQL advisory locks.
_PG_INDEX_LOCK = 0x6B62696E


@dataclass(frozen=True)
class Scope:
    kb_ids: Sequence[int]
    include_tags: Sequence[str] = ()
    exclude_tags: Sequence[str] = ()

    def sql(self, column: str = "c", document_column: str = "document_id") -> tuple[str, dict[str, Any]]:
        """The scope as a WHERE fragment over a `kb_chunks` alias (or a `kb_documents` one, whose document id
        column is `id`), and its parameters."""
        clauses = [f"{column}.kb_id IN :scope_kbs"]
        params: dict[str, Any] = {"scope_kbs": list(self.kb_ids)}
        if self.include_tags:
            clauses.append(
                f"{column}.{document_column} IN (SELECT document_id FROM kb_document_tags WHERE tag IN :scope_in)"
            )
            params["scope_in"] = list(self.include_tags)
        if self.exclude_tags:
            clauses.append(
                f"{column}.{document_column} NOT IN (SELECT document_id FROM kb_document_tags WHERE tag IN :scope_out)"
            )
            params["scope_out"] = list(self.exclude_tags)
        return " AND ".join(clauses), params


def _expanding(sql: str, params: dict[str, Any]) -> Any:
    statement = text(sql)
    for name in ("scope_kbs", "scope_in", "scope_out", "ids"):
        if name in params:
            statement = statement.bindparams(bindparam(name, expanding=True))
    return statement


def query_terms(query: str) -> list[str]:
    """The distinct, meaningful words of a query, in order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        if word not in _STOPWORDS and len(word) < 64:
            seen.setdefault(word, None)
    return list(seen)[:32]


def idf(chunks: int, frequency: int) -> float:
    """BM25's inverse document frequency (Lucene's form, always > 0) of a word in `frequency` of `chunks` chunks."""
    frequency = min(frequency, chunks)  # counts are remembered a while: the scope may have shrunk since
    return math.log(1 + (chunks - frequency + 0.5) / (frequency + 0.5))


def selective(terms: list[str], frequencies: dict[str, int], chunks: int) -> list[str]:
    """The words worth searching for: in a large scope, those in at most `PRUNE_SHARE` of its chunks, and at least
    the `PRUNE_KEEP` rarest. BM25 gives common words little weight anyway, but the index must score every chunk
    they match: at 100k chunks one such word cost ~90 ms a query."""
    if chunks < PRUNE_MIN_CHUNKS or len(terms) <= PRUNE_KEEP:
        return terms
    kept = [term for term in terms if frequencies[term] <= PRUNE_SHARE * chunks]
    if len(kept) < PRUNE_KEEP:
        kept = sorted(terms, key=frequencies.__getitem__)[:PRUNE_KEEP]
    return kept


class TermStatistics:
    """Where both indexes get a query word's statistics: from the chunks of the owner of the searched KBs (all of
    their ready documents), never from other users'. Per owner rather than per searched KB because SQLite's BM25
    can only take its statistics from a whole FTS5 table, and that table is the owner's: one rule, both backends.
    Word counts are remembered for a minute."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], tuple[int, float]] = {}

    async def owner(self, db: AsyncSession, kb_ids: Sequence[int]) -> int | None:
        """The one owner of the KBs (None when none exists)."""
        params = {"scope_kbs": list(kb_ids)}
        statement = _expanding("SELECT DISTINCT user_id FROM knowledge_bases WHERE id IN :scope_kbs", params)
        owners = list(await db.scalars(statement, params))
        if len(owners) > 1:
            raise ValueError("a search scope spans the KBs of several users")
        return int(owners[0]) if owners else None

    async def chunks(self, db: AsyncSession, owner: int) -> int:
        """The owner's searchable chunks."""
        total = await db.scalar(
            text(
                "SELECT coalesce(sum(chunk_count), 0) FROM kb_documents WHERE status = 'ready' AND kb_id IN "
                "(SELECT id FROM knowledge_bases WHERE user_id = :owner)"
            ),
            {"owner": owner},
        )
        return int(total or 0)

    async def frequencies(self, owner: int, terms: list[str], count: Callable[[str], Awaitable[int]]) -> dict[str, int]:
        """How many of the owner's chunks each word is in, by `count` (the backend's own matching)."""
        now = time.monotonic()
        found = {}
        for term in terms:
            cached = self._counts.get((owner, term))
            if cached is not None and now - cached[1] < FREQUENCY_TTL_SECONDS:
                found[term] = cached[0]
                continue
            found[term] = await count(term)
            if len(self._counts) > 50_000:
                self._counts.clear()
            self._counts[(owner, term)] = (found[term], now)
        return found


class KnowledgeIndex(Protocol):
    async def prepare(self, db: AsyncSession, dimensions: int) -> None: ...

    async def add(
        self, db: AsyncSession, owner: int, document_id: int, kb_id: int, chunks: Sequence[Chunk], vectors: Vector
    ) -> None:
        """Insert a document's chunks, their vectors and full text, in the caller's transaction."""
        ...

    async def deleting(self, db: AsyncSession, owner: int, document_ids: Sequence[int]) -> None:
        """In the caller's transaction, before the owner's documents (and so their chunks) are deleted: drop what
        the index keeps beside the chunks."""
        ...

    async def fulltext(self, db: AsyncSession, scope: Scope, query: str, limit: int) -> list[tuple[int, float]]:
        """(chunk id, relevance > 0), best first."""
        ...

    async def vector(self, db: AsyncSession, scope: Scope, query: Vector, limit: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity), best first."""
        ...

    async def similarities(self, db: AsyncSession, ids: Sequence[int], query: Vector) -> dict[int, float]: ...

    async def close(self) -> None:
        """Stop background work and persist what should outlive the process."""
        ...


def insert_params(
    document_id: int, kb_id: int, chunks: Sequence[Chunk], embeddings: Sequence[Any]
) -> list[dict[str, Any]]:
    """Insert parameters for `kb_chunks`, with each chunk's embedding already in the dialect's form."""
    return [
        {
            "document_id": document_id,
            "kb_id": kb_id,
            "position": chunk.position,
            "page": chunk.page,
            "row": chunk.row,
            "context": chunk.context,
            "content": chunk.content,
            "embedding": embedding,
        }
        for chunk, embedding in zip(chunks, embeddings, strict=True)
    ]


def build_index(dialect: str, hnsw: HnswOptions | None = None, model: str | None = None) -> KnowledgeIndex:
    """The index for a database dialect; on SQLite, `hnsw` adds the HNSW graph for large scopes. With `model`
    (the embedding model's `model_id`), vector search compares a query only with the chunks of documents embedded
    by that model (`kb_documents.embedding_model`); full text finds every chunk."""
    if dialect == "sqlite":
        return SqliteIndex(HnswIndex(hnsw) if hnsw is not None else None, model)
    return PostgresIndex(model)


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
        rows = insert_params(document_id, kb_id, chunks, [v.astype(np.float32).tobytes() for v in vectors])
        table = FTS5_TABLE.format(owner=int(owner))
        await db.execute(text(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5({FTS5_COLUMNS})"))
        await db.execute(
            text(
                "INSERT INTO kb_chunks (document_id, kb_id, position, page, row, context, content, embedding) "
                "VALUES (:document_id, :kb_id, :position, :page, :row, :context, :content, :embedding)"
            ),
            rows,
        )
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
            await db.execute(_expanding(statement, params), params)
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
            if chunks >= PRUNE_MIN_CHUNKS:

                async def count(term: str) -> int:
                    statement = text(f"SELECT count(*) FROM {table} WHERE {table} MATCH :match")
                    return int(await db.scalar(statement, {"match": _fts_match([term])}) or 0)

                terms = selective(terms, await self.statistics.frequencies(owner, terms, count), chunks)
        where, params = scope.sql()
        result = await db.execute(
            _expanding(
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
            result = await db.execute(_expanding(f"SELECT d.id FROM kb_documents d WHERE {where}", params), params)
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


def _pg_vector(vector: Vector) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


def _count_cap(chunks: int) -> int:
    """How far a word's chunks are counted in a scope of `chunks`: all of them in a scope too small to prune,
    else up to four times the pruning share. A word past that is in over 8% of a large scope: counting it exactly
    read ~20k rows (20 ms) at 100k chunks, to learn only that its weight is small; it is weighted as if at the cap."""
    return chunks if chunks < PRUNE_MIN_CHUNKS else math.ceil(4 * PRUNE_SHARE * chunks)


class PostgresIndex:
    def __init__(self, model: str | None = None) -> None:
        self.model = model
        self.dimensions = 0
        self.statistics = TermStatistics()

    async def prepare(self, db: AsyncSession, dimensions: int) -> None:
        await self._ensure_hnsw(db, dimensions)
        await db.commit()

    async def _ensure_hnsw(self, db: AsyncSession, dimensions: int) -> None:
        """Create the HNSW index for this embedding size once. It is an expression index because the column is
        untyped, so that another embedding model (another size) can be configured later."""
        if dimensions == self.dimensions:
            return
        # Workers start together; the lock keeps two CREATE INDEX IF NOT EXISTS from racing on the catalog.
        await db.execute(text(f"SELECT pg_advisory_xact_lock({_PG_INDEX_LOCK})"))
        await db.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS ix_kb_chunks_hnsw_{dimensions} ON kb_chunks "
                f"USING hnsw ((embedding::vector({dimensions})) vector_cosine_ops) "
                f"WHERE vector_dims(embedding) = {dimensions}"
            )
        )
        self.dimensions = dimensions

    async def add(
        self,
        db: AsyncSession,
        owner: int,  # noqa: ARG002 - kb_chunks_fts is one table: PostgreSQL's word statistics are per query
        document_id: int,
        kb_id: int,
        chunks: Sequence[Chunk],
        vectors: Vector,
    ) -> None:
        rows = insert_params(document_id, kb_id, chunks, [_pg_vector(v) for v in vectors])
        await self._ensure_hnsw(db, vectors.shape[1])
        await db.execute(
            text(
                "INSERT INTO kb_chunks (document_id, kb_id, position, page, row, context, content, embedding) "
                "VALUES (:document_id, :kb_id, :position, :page, :row, :context, :content, CAST(:embedding AS vector))"
            ),
            rows,
        )
        await db.execute(
            text(
                "INSERT INTO kb_chunks_fts (id, kb_id, document_id, tsv) SELECT id, kb_id, document_id, "
                "to_tsvector('english', context || ' ' || content) FROM kb_chunks WHERE document_id = :document_id"
            ),
            {"document_id": document_id},
        )

    async def deleting(self, db: AsyncSession, owner: int, document_ids: Sequence[int]) -> None:
        pass  # kb_chunks_fts and the database indexes follow deletions themselves

    async def close(self) -> None:
        pass

    async def fulltext(self, db: AsyncSession, scope: Scope, query: str, limit: int) -> list[tuple[int, float]]:
        """BM25-like ranking in two steps. PostgreSQL's ts_rank knows no inverse document frequency: without it a
        word in every chunk ("day") outranks the one word that matters ("interns"). So the best `PG_CANDIDATES`
        matches by ts_rank over the query's selective words are re-ranked by the sum of each word's ts_rank
        weighted by its BM25 idf among the owner's chunks. Words in most of a large owner's chunks are left out of
        the first step, which would otherwise rank every chunk they match."""
        terms = query_terms(query)
        owner = await self.statistics.owner(db, scope.kb_ids)
        if not terms or owner is None:
            return []
        total = max(await self.statistics.chunks(db, owner), 1)
        cap = _count_cap(total)

        async def count(term: str) -> int:
            found = await db.scalar(
                text(
                    "SELECT count(*) FROM (SELECT 1 FROM kb_chunks_fts c WHERE c.tsv @@ to_tsquery('english', :t) "
                    "AND c.kb_id IN (SELECT id FROM knowledge_bases WHERE user_id = :owner) LIMIT :cap) AS found"
                ),
                {"t": term, "owner": owner, "cap": cap},
            )
            return int(found or 0)

        frequencies = await self.statistics.frequencies(owner, terms, count)
        weights = {t: idf(total, frequencies[t]) for t in terms}
        where, params = scope.sql()
        term_queries = ", ".join(f"to_tsquery('english', :t{i}) AS q{i}" for i in range(len(terms)))
        rank = " + ".join(f"{weights[t]:.6f} * ts_rank(m.tsv, q.q{i}, 1)" for i, t in enumerate(terms))
        sql = (
            f"WITH q AS (SELECT {term_queries}, to_tsquery('english', :selective) AS qa), "
            f"m AS MATERIALIZED (SELECT c.id, c.tsv FROM kb_chunks_fts c, q WHERE c.tsv @@ q.qa AND {where} "
            f"ORDER BY ts_rank(c.tsv, q.qa, 1) DESC LIMIT {PG_CANDIDATES}) "
            f"SELECT m.id, {rank} AS rank FROM m, q ORDER BY rank DESC LIMIT :limit"
        )
        values = {
            **params,
            **{f"t{i}": term for i, term in enumerate(terms)},
            "selective": " | ".join(selective(terms, frequencies, total)),
            "limit": limit,
        }
        result = await db.execute(_expanding(sql, params), values)
        return [(int(chunk_id), float(rank)) for chunk_id, rank in result.all() if rank > 0]

    async def _sizes(self, db: AsyncSession, kb_ids: Sequence[int]) -> tuple[int, float]:
        """Chunks in the scope, and the planner's estimate of all chunks (kept by ANALYZE and autovacuum;
        unknown is infinite), in one round trip."""
        statement = _expanding(
            "SELECT (SELECT coalesce(sum(chunk_count), 0) FROM kb_documents "
            "WHERE kb_id IN :scope_kbs AND status = 'ready'), "
            "(SELECT reltuples FROM pg_class WHERE relname = 'kb_chunks')",
            {"scope_kbs": kb_ids},
        )
        in_scope, rows = (await db.execute(statement, {"scope_kbs": list(kb_ids)})).one()
        return int(in_scope), float(rows) if rows is not None and rows > 0 else math.inf

    async def vector(self, db: AsyncSession, scope: Scope, query: Vector, limit: int) -> list[tuple[int, float]]:
        dims = query.shape[0]
        where, params = scope.sql()
        in_scope, table_rows = await self._sizes(db, params["scope_kbs"])
        if scope.include_tags or scope.exclude_tags:
            in_scope = await self._tagged_size(db, scope)  # the filter, not the KBs, is what HNSW must find
        distance = f"(c.embedding::vector({dims})) <=> CAST(:query AS vector({dims}))"
        values = {**params, "query": _pg_vector(query), "limit": limit, "model": self.model}
        where += self._same_model("c")
        # MATERIALIZED keeps the planner from walking HNSW first and filtering after.
        exact = (
            f"WITH c AS MATERIALIZED (SELECT c.id, c.embedding FROM kb_chunks c WHERE {where} "
            f"AND vector_dims(c.embedding) = {dims}) "
            f"SELECT c.id, 1 - ({distance}) AS sim FROM c ORDER BY {distance} LIMIT :limit"
        )
        # A scope that is most of the table loses little to HNSW's filter-after; a small share of a big table
        # would come back short, so it is scanned exactly (an unknown table size counts as big).
        if in_scope <= PG_EXACT_SCAN_LIMIT and in_scope * 2 < table_rows:
            result = await db.execute(_expanding(exact, params), values)
            return [(int(chunk_id), float(sim)) for chunk_id, sim in result.all()]
        await db.execute(text(f"SET LOCAL hnsw.ef_search = {max(100, min(1000, limit * 2))}"))
        walked = (
            f"SELECT c.id, 1 - ({distance}) AS sim FROM kb_chunks c WHERE {where} "
            f"AND vector_dims(c.embedding) = {dims} ORDER BY {distance} LIMIT :limit"
        )
        found = [(int(i), float(sim)) for i, sim in (await db.execute(_expanding(walked, params), values)).all()]
        if len(found) < min(limit, in_scope):
            # pgvector 0.6 filters after its walk: a filter that the walk's neighbourhood mostly fails comes back
            # short. The exact scan is slower but complete.
            result = await db.execute(_expanding(exact, params), values)
            found = [(int(chunk_id), float(sim)) for chunk_id, sim in result.all()]
        return found

    def _same_model(self, alias: str) -> str:
        """A condition that keeps the chunks of documents embedded by this index's model (all without one)."""
        if self.model is None:
            return ""
        return f" AND {alias}.document_id IN (SELECT id FROM kb_documents WHERE embedding_model = :model)"

    async def _tagged_size(self, db: AsyncSession, scope: Scope) -> int:
        """Chunks of the scope's ready documents that pass its tag filters."""
        where, params = scope.sql("d", document_column="id")
        count = await db.scalar(
            _expanding(f"SELECT coalesce(sum(d.chunk_count), 0) FROM kb_documents d WHERE {where} "
                       "AND d.status = 'ready'", params),
            params,
        )  # fmt: skip
        return int(count or 0)

    async def similarities(self, db: AsyncSession, ids: Sequence[int], query: Vector) -> dict[int, float]:
        if not ids:
            return {}
        dims = query.shape[0]
        result = await db.execute(
            _expanding(
                f"SELECT c.id, 1 - ((c.embedding::vector({dims})) <=> CAST(:query AS vector({dims}))) FROM kb_chunks c "
                f"WHERE c.id IN :ids AND vector_dims(c.embedding) = {dims}{self._same_model('c')}",
                {"ids": ids},
            ),
            {"ids": list(ids), "query": _pg_vector(query), "model": self.model},
        )
        return {int(chunk_id): float(sim) for chunk_id, sim in result.all()}
