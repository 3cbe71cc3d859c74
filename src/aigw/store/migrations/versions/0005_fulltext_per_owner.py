"""SQLite: one FTS5 table per owner, so that nobody's ranking depends on what other users store.

FTS5's BM25 takes its statistics (how many chunks hold a word, the average chunk length) from its whole table.
With one table for everyone, a user's scores and order changed whenever another user uploaded. Each owner's
chunks now go in `kb_chunks_fts_<user id>`, written with the chunks and cleared by the code that deletes them
(`SqliteIndex.deleting`); the shared table and its delete trigger go. PostgreSQL computes its word statistics
per query over the owner's chunks and needs no change.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = "context, content, tokenize = 'porter unicode61 remove_diacritics 2'"


def _owners() -> list[int]:
    query = (
        "SELECT DISTINCT kb.user_id FROM knowledge_bases kb "
        "WHERE EXISTS (SELECT 1 FROM kb_chunks c WHERE c.kb_id = kb.id)"
    )
    return [int(row[0]) for row in op.get_bind().execute(sa.text(query))]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for owner in _owners():
        op.execute(f"CREATE VIRTUAL TABLE kb_chunks_fts_{owner} USING fts5({_COLUMNS})")
        op.execute(
            f"INSERT INTO kb_chunks_fts_{owner} (rowid, context, content) SELECT c.id, c.context, c.content "
            f"FROM kb_chunks c JOIN knowledge_bases kb ON kb.id = c.kb_id WHERE kb.user_id = {owner}"
        )
    op.execute("DROP TRIGGER IF EXISTS kb_chunks_fts_delete")
    op.execute("DROP TABLE kb_chunks_fts")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(f"CREATE VIRTUAL TABLE kb_chunks_fts USING fts5({_COLUMNS})")
    op.execute("INSERT INTO kb_chunks_fts (rowid, context, content) SELECT id, context, content FROM kb_chunks")
    op.execute(
        "CREATE TRIGGER kb_chunks_fts_delete AFTER DELETE ON kb_chunks BEGIN "
        "DELETE FROM kb_chunks_fts WHERE rowid = old.id; END"
    )
    tables = op.get_bind().execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'table'"))
    for (name,) in tables.all():
        if re.fullmatch(r"kb_chunks_fts_\d+", name):  # not their shadow tables, which go with them
            op.execute(f"DROP TABLE {name}")
