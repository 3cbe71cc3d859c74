"""Full text reads narrow rows, not chunks with their vectors.

A chunk row carries its text and its 384-float vector, so a full-text query that touched every matching chunk
row to apply the scope read wide pages:
- PostgreSQL: the tsvectors move out of `kb_chunks` into their own table, `kb_chunks_fts` (id, kb_id,
  document_id, tsv), named as SQLite's FTS5 table is; a chunk's row goes with it (ON DELETE CASCADE). One query
  matching 7,000 chunks at 100k: 68 ms before, 21 ms after.
- SQLite: a covering index on kb_chunks (id, kb_id, document_id), which the FTS5 query joins through for the
  scope instead of the table: full text at 100k chunks, p50 13 -> 7 ms, p95 27 -> 14 ms.
(bench/README.md, "Full text on narrow rows".)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE INDEX ix_kb_chunks_scope ON kb_chunks (id, kb_id, document_id)")
        return
    op.execute(
        "CREATE TABLE kb_chunks_fts ("
        "id bigint PRIMARY KEY REFERENCES kb_chunks (id) ON DELETE CASCADE, "
        "kb_id integer NOT NULL, document_id integer NOT NULL, tsv tsvector NOT NULL)"
    )
    op.execute(
        "INSERT INTO kb_chunks_fts (id, kb_id, document_id, tsv) "
        "SELECT id, kb_id, document_id, to_tsvector('english', context || ' ' || content) FROM kb_chunks"
    )
    op.execute("CREATE INDEX ix_kb_chunks_fts_tsv ON kb_chunks_fts USING gin (tsv)")
    op.execute("DROP INDEX IF EXISTS ix_kb_chunks_tsv")
    op.execute("ALTER TABLE kb_chunks DROP COLUMN tsv")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP INDEX ix_kb_chunks_scope")
        return
    op.execute(
        "ALTER TABLE kb_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS "
        "(to_tsvector('english', context || ' ' || content)) STORED"
    )
    op.execute("CREATE INDEX ix_kb_chunks_tsv ON kb_chunks USING gin (tsv)")
    op.execute("DROP TABLE kb_chunks_fts")
