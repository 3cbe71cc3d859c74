"""Knowledge bases: KBs, documents, tags, chunks with their full-text index and vectors.

SQLite keeps vectors as float32 BLOBs (searched by an in-memory index that follows the table) and full text
in an FTS5 table; PostgreSQL keeps vectors in a pgvector column (HNSW index, created per dimension at start)
and full text in a generated tsvector column with a GIN index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "knowledge_bases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_knowledge_bases_user_id", "knowledge_bases", ["user_id"])
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kb_id", sa.Integer(), sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("filename", sa.String(500)),
        sa.Column("url", sa.String(2048)),
        sa.Column("title", sa.String(500)),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("language", sa.String(50)),
        sa.Column("stored_name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("ready_at", TS),
    )
    op.create_index("ix_kb_documents_kb_id", "kb_documents", ["kb_id"])
    op.create_index("ix_kb_documents_user_id", "kb_documents", ["user_id"])
    op.create_index("ix_kb_documents_status_lease", "kb_documents", ["status", "lease_until"])
    op.create_table(
        "kb_document_tags",
        sa.Column("document_id", sa.Integer(), sa.ForeignKey("kb_documents.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(100), primary_key=True),
    )
    op.create_index("ix_kb_document_tags_tag", "kb_document_tags", ["tag", "document_id"])
    # AUTOINCREMENT on SQLite: ids are never reused, so the in-memory vector index can follow the table by
    # reading rows past the highest id it has seen.
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("document_id", sa.Integer(), sa.ForeignKey("kb_documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kb_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer()),
        sa.Column("row", sa.Integer()),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary() if sqlite else sa.Text()),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_kb_chunks_document_id", "kb_chunks", ["document_id"])
    op.create_index("ix_kb_chunks_kb_id", "kb_chunks", ["kb_id"])
    if sqlite:
        op.execute(
            "CREATE VIRTUAL TABLE kb_chunks_fts USING fts5("
            "context, content, tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        # Every way a chunk row goes (document delete, KB delete, FK cascades) takes its full-text row along.
        op.execute(
            "CREATE TRIGGER kb_chunks_fts_delete AFTER DELETE ON kb_chunks BEGIN "
            "DELETE FROM kb_chunks_fts WHERE rowid = old.id; END"
        )
        # Bumped when chunks are deleted, so every worker's in-memory vector index knows to drop rows.
        op.create_table(
            "kb_index_state",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("generation", sa.BigInteger(), nullable=False),
        )
        op.execute("INSERT INTO kb_index_state (id, generation) VALUES (1, 0)")
    else:
        op.execute("ALTER TABLE kb_chunks ALTER COLUMN embedding TYPE vector USING embedding::vector")
        # Keep vectors in the row (not TOASTed): exact scans over a small KB read them without detours.
        op.execute("ALTER TABLE kb_chunks ALTER COLUMN embedding SET STORAGE PLAIN")
        op.execute(
            "ALTER TABLE kb_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS "
            "(to_tsvector('english', context || ' ' || content)) STORED"
        )
        op.execute("CREATE INDEX ix_kb_chunks_tsv ON kb_chunks USING gin (tsv)")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.drop_table("kb_index_state")
        op.execute("DROP TRIGGER IF EXISTS kb_chunks_fts_delete")
        op.execute("DROP TABLE IF EXISTS kb_chunks_fts")
    op.drop_table("kb_chunks")
    op.drop_table("kb_document_tags")
    op.drop_table("kb_documents")
    op.drop_table("knowledge_bases")
