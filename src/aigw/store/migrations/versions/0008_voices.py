"""Cloned voices: one row per clone, owned by a user; the normalised recording lies in the data dir.

`speaker` holds what the embedded engines speak the clone with (the nearest Kokoro styles and their weights,
the pitch and pace measured from the recording), as JSON; `sample` is the recording's file name, which a
cloning engine (Chatterbox) takes as its reference.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("voice_id", sa.String(80), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("speaker", sa.Text(), nullable=False),
        sa.Column("sample", sa.String(100), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", "voice_id", name="uq_voices_user_voice"),
    )


def downgrade() -> None:
    op.drop_table("voices")
