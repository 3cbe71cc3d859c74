"""PostgreSQL: full text moves out of `kb_chunks` into its own narrow table, `kb_chunks_fts`.

A chunk row carries its text and its 384-float vector (kept in the row), so a full-text query that matched
7,000 chunks read ~4,400 wide heap pages and each tsvector through TOAST: 68 ms for one query at 100k chunks.
The same tsvectors in a table of (id, kb_id, document_id, tsv) took 21 ms (bench/README.md, "PostgreSQL full
text"). The table is named as SQLite's FTS5 table is; a chunk's row goes with it (ON DELETE CASCADE). SQLite
is unchanged.

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
        return
    op.execute(
        "ALTER TABLE kb_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS "
        "(to_tsvector('english', context || ' ' || content)) STORED"
    )
    op.execute("CREATE INDEX ix_kb_chunks_tsv ON kb_chunks USING gin (tsv)")
    op.execute("DROP TABLE kb_chunks_fts")
