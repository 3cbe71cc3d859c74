"""Where chunks are stored and searched: what both backends share (the protocol, the scope, the chunk rows and
the word statistics); `sqlite.py` and `postgres.py`, the only modules that know one database from the other,
hold what differs.

Every search takes a `Scope` and applies it inside the query: the KBs (which are always one owner's), and the
document tags to include or exclude. How much a query word counts (its weight, and whether it is too common to
search for) comes from the searching owner's own chunks, on both backends (`TermStatistics`): what other users
upload never changes a user's ranking.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from aigw.knowledge.chunk import Chunk
from aigw.knowledge.hnsw import HnswIndex, HnswOptions

Vector = NDArray[np.float32]

# Questions are full of words that match every chunk; dropping them keeps OR queries selective (and fast).
_STOPWORDS = frozenset(
    "a an and are as at be but by can could did do does doing for from had has have how i if in into is it its "
    "me my no not of on or our should so than that the their them then there these they this those to too "
    "us was we were what when where which who whom why will with would you your".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
FREQUENCY_TTL_SECONDS = 60.0
# Full text for an owner of many chunks skips words found in more than PRUNE_SHARE of them (keeping at least
# PRUNE_KEEP words): measured at 100k chunks on SQLite, p50 50 -> 5 ms for the quality questions.
PRUNE_MIN_CHUNKS = 50_000
PRUNE_SHARE = 0.02
PRUNE_KEEP = 2


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


def expanding(sql: str, params: dict[str, Any]) -> Any:
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
    if not prunable(chunks) or len(terms) <= PRUNE_KEEP:
        return terms
    kept = [term for term in terms if frequencies[term] <= PRUNE_SHARE * chunks]
    if len(kept) < PRUNE_KEEP:
        kept = sorted(terms, key=frequencies.__getitem__)[:PRUNE_KEEP]
    return kept


def prunable(chunks: int) -> bool:
    """Whether an owner has enough chunks that very common words are left out of full-text searches."""
    return chunks >= PRUNE_MIN_CHUNKS


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
        statement = expanding("SELECT DISTINCT user_id FROM knowledge_bases WHERE id IN :scope_kbs", params)
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


async def insert_chunks(
    db: AsyncSession,
    document_id: int,
    kb_id: int,
    chunks: Sequence[Chunk],
    embeddings: Sequence[Any],
    embedding_sql: str = ":embedding",
) -> None:
    """Insert a document's chunks into `kb_chunks`, each embedding already in the dialect's form and bound by
    `embedding_sql` (a cast on PostgreSQL)."""
    rows = [
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
    statement = (
        "INSERT INTO kb_chunks (document_id, kb_id, position, page, row, context, content, embedding) "
        f"VALUES (:document_id, :kb_id, :position, :page, :row, :context, :content, {embedding_sql})"
    )
    await db.execute(text(statement), rows)


def build_index(dialect: str, hnsw: HnswOptions | None = None, model: str | None = None) -> KnowledgeIndex:
    """The index for a database dialect; on SQLite, `hnsw` adds the HNSW graph for large scopes. With `model`
    (the embedding model's `model_id`), vector search compares a query only with the chunks of documents embedded
    by that model (`kb_documents.embedding_model`); full text finds every chunk."""
    if dialect == "sqlite":
        from aigw.knowledge.index.sqlite import SqliteIndex

        return SqliteIndex(HnswIndex(hnsw) if hnsw is not None else None, model)
    from aigw.knowledge.index.postgres import PostgresIndex

    return PostgresIndex(model)
