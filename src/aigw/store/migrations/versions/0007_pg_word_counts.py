"""PostgreSQL: word counts per knowledge base, kept at ingestion, for full-text weights.

Full text weighs each query word by how many of the owner's chunks hold it. Counting that with a GIN index scan
per word the first time it was seen cost 14 ms at p50 and 44 ms at p95 of a query at 100k chunks.
`kb_term_stats (kb_id, lexeme, chunks)` holds the counts instead: a document's words are added when its chunks are
written (`ts_stat` over its tsvectors) and taken out when it is deleted, and a query reads all its words' counts
in one indexed lookup. Backfilled here from the chunks already stored. SQLite counts with its per-owner FTS5
table and needs no change.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute(
        "CREATE TABLE kb_term_stats ("
        "kb_id integer NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE, "
        "lexeme text NOT NULL, chunks integer NOT NULL, PRIMARY KEY (kb_id, lexeme))"
    )
    op.execute(
        "INSERT INTO kb_term_stats (kb_id, lexeme, chunks) SELECT kb.id, w.word, w.ndoc FROM knowledge_bases kb, "
        "LATERAL ts_stat(format('SELECT tsv FROM kb_chunks_fts WHERE kb_id = %s', kb.id)) AS w"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("DROP TABLE kb_term_stats")
