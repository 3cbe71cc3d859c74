"""PostgreSQL: tsvectors with a GIN index in their own narrow table, `kb_chunks_fts` (a full-text query then reads
small rows, not chunks with their vectors), and pgvector with an HNSW index for large scopes and an exact scan for
small ones (pgvector 0.6 filters after the HNSW walk, so a small KB among many would otherwise come back short)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aigw.knowledge.chunk import Chunk
from aigw.knowledge.index import (
    Scope,
    TermStatistics,
    Vector,
    expanding,
    idf,
    insert_chunks,
    query_terms,
    selective,
)

# pgvector 0.6 has no iterative index scan: a scope this small is searched exactly instead of through HNSW.
PG_EXACT_SCAN_LIMIT = 20_000
# PostgreSQL full text re-ranks this many ts_rank candidates by idf-weighted term ranks.
PG_CANDIDATES = 200
# Arbitrary constant naming aigw's index-creation lock among PostgreSQL advisory locks.
_PG_INDEX_LOCK = 0x6B62696E


def _pg_vector(vector: Vector) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


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
        owner: int,  # noqa: ARG002 - one kb_chunks_fts for all: word counts are kept per KB (kb_term_stats)
        document_id: int,
        kb_id: int,
        chunks: Sequence[Chunk],
        vectors: Vector,
    ) -> None:
        await self._ensure_hnsw(db, vectors.shape[1])
        embeddings = [_pg_vector(v) for v in vectors]
        await insert_chunks(db, document_id, kb_id, chunks, embeddings, "CAST(:embedding AS vector)")
        await db.execute(
            text(
                "INSERT INTO kb_chunks_fts (id, kb_id, document_id, tsv) SELECT id, kb_id, document_id, "
                "to_tsvector('english', context || ' ' || content) FROM kb_chunks WHERE document_id = :document_id"
            ),
            {"document_id": document_id},
        )
        # The KB's word counts, in word order (see deleting()).
        await db.execute(
            text(
                "INSERT INTO kb_term_stats (kb_id, lexeme, chunks) SELECT :kb_id, word, ndoc FROM "
                f"ts_stat('SELECT tsv FROM kb_chunks_fts WHERE document_id = {int(document_id)}') ORDER BY word "
                "ON CONFLICT (kb_id, lexeme) DO UPDATE SET chunks = kb_term_stats.chunks + excluded.chunks"
            ),
            {"kb_id": kb_id},
        )

    async def deleting(self, db: AsyncSession, owner: int, document_ids: Sequence[int]) -> None:  # noqa: ARG002
        """Take the documents' words out of their KB's word counts (kb_chunks_fts and the database indexes follow
        the deletion of the chunks themselves)."""
        if not document_ids:
            return
        params = {"ids": list(document_ids)}
        by_kb = await db.execute(
            expanding("SELECT kb_id, array_agg(id) FROM kb_documents WHERE id IN :ids GROUP BY kb_id", params), params
        )
        for kb_id, ids in by_kb.all():
            listed = ",".join(str(int(i)) for i in ids)
            words = f"ts_stat('SELECT tsv FROM kb_chunks_fts WHERE document_id IN ({listed})')"
            # Rows are locked in word order, as ingestion's upsert takes them, so the two never deadlock.
            await db.execute(
                text(
                    f"WITH gone AS (SELECT word, ndoc FROM {words}), "
                    "locked AS (SELECT s.lexeme FROM kb_term_stats s JOIN gone ON s.lexeme = gone.word "
                    "WHERE s.kb_id = :kb ORDER BY s.lexeme FOR UPDATE OF s) "
                    "UPDATE kb_term_stats s SET chunks = s.chunks - gone.ndoc FROM gone, locked "
                    "WHERE s.kb_id = :kb AND s.lexeme = gone.word AND locked.lexeme = gone.word"
                ),
                {"kb": kb_id},
            )
            await db.execute(text("DELETE FROM kb_term_stats WHERE kb_id = :kb AND chunks <= 0"), {"kb": kb_id})

    async def _frequencies(self, db: AsyncSession, owner: int, terms: list[str]) -> dict[str, int]:
        """How many of the owner's chunks hold each word, from the per-KB word counts kept at ingestion (a word of
        several lexemes counts as its rarest). One indexed lookup for all words."""
        result = await db.execute(
            text(
                "SELECT t.term, min(coalesce(n.chunks, 0)) FROM unnest(CAST(:terms AS text[])) AS t(term) "
                "CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', t.term))) AS l(lexeme) "
                "LEFT JOIN LATERAL (SELECT sum(s.chunks) AS chunks FROM kb_term_stats s WHERE s.lexeme = l.lexeme "
                "AND s.kb_id IN (SELECT id FROM knowledge_bases WHERE user_id = :owner)) AS n ON true "
                "GROUP BY t.term"
            ),
            {"terms": terms, "owner": owner},
        )
        found = {str(term): int(chunks) for term, chunks in result.all()}
        return {term: found.get(term, 0) for term in terms}  # a word without lexemes (a stopword) is in none

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
        frequencies = await self._frequencies(db, owner, terms)
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
        result = await db.execute(expanding(sql, params), values)
        return [(int(chunk_id), float(rank)) for chunk_id, rank in result.all() if rank > 0]

    async def _sizes(self, db: AsyncSession, kb_ids: Sequence[int]) -> tuple[int, float]:
        """Chunks in the scope, and the planner's estimate of all chunks (kept by ANALYZE and autovacuum;
        unknown is infinite), in one round trip."""
        statement = expanding(
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
            result = await db.execute(expanding(exact, params), values)
            return [(int(chunk_id), float(sim)) for chunk_id, sim in result.all()]
        await db.execute(text(f"SET LOCAL hnsw.ef_search = {max(100, min(1000, limit * 2))}"))
        walked = (
            f"SELECT c.id, 1 - ({distance}) AS sim FROM kb_chunks c WHERE {where} "
            f"AND vector_dims(c.embedding) = {dims} ORDER BY {distance} LIMIT :limit"
        )
        found = [(int(i), float(sim)) for i, sim in (await db.execute(expanding(walked, params), values)).all()]
        if len(found) < min(limit, in_scope):
            # pgvector 0.6 filters after its walk: a filter that the walk's neighbourhood mostly fails comes back
            # short. The exact scan is slower but complete.
            result = await db.execute(expanding(exact, params), values)
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
            expanding(f"SELECT coalesce(sum(d.chunk_count), 0) FROM kb_documents d WHERE {where} "
                       "AND d.status = 'ready'", params),
            params,
        )  # fmt: skip
        return int(count or 0)

    async def similarities(self, db: AsyncSession, ids: Sequence[int], query: Vector) -> dict[int, float]:
        if not ids:
            return {}
        dims = query.shape[0]
        result = await db.execute(
            expanding(
                f"SELECT c.id, 1 - ((c.embedding::vector({dims})) <=> CAST(:query AS vector({dims}))) FROM kb_chunks c "
                f"WHERE c.id IN :ids AND vector_dims(c.embedding) = {dims}{self._same_model('c')}",
                {"ids": ids},
            ),
            {"ids": list(ids), "query": _pg_vector(query), "model": self.model},
        )
        return {int(chunk_id): float(sim) for chunk_id, sim in result.all()}
