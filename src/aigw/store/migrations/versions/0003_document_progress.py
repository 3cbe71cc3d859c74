"""Document ingestion progress: the stage a document is in, and units done of a total.

Plain nullable columns, the same on SQLite and PostgreSQL. Documents already ready count all their chunks
done; documents still waiting are `queued`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("kb_documents", sa.Column("stage", sa.String(20)))
    op.add_column("kb_documents", sa.Column("progress_done", sa.Integer()))
    op.add_column("kb_documents", sa.Column("progress_total", sa.Integer()))
    op.execute(
        "UPDATE kb_documents SET progress_done = chunk_count, progress_total = chunk_count WHERE status = 'ready'"
    )
    op.execute("UPDATE kb_documents SET stage = 'queued' WHERE status = 'processing'")


def downgrade() -> None:
    op.drop_column("kb_documents", "progress_total")
    op.drop_column("kb_documents", "progress_done")
    op.drop_column("kb_documents", "stage")
