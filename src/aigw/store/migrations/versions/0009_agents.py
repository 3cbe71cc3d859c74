"""Agents: a system prompt with a name, an icon and a colour, owned by a user or (owner NULL) by the gateway; the
public ones are offered to everyone. Four useful public agents are created here, once, not on every start.

`capabilities` is kept as the seed's JSON-array string; `kb_ids`, when set, is a JSON array of the owner's knowledge
bases the agent draws on (NULL: all of the caller's).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUILT_IN = [
    {
        "name": "Customer Service",
        "description": "Answers customers' questions from your knowledge bases, politely and briefly.",
        "system_prompt": (
            "You are a friendly customer service agent. Answer the customer's question from the company's knowledge "
            "base excerpts when they are given, briefly and politely. If the excerpts do not cover the question, say "
            "that you do not know and offer to pass it on to a colleague. Never invent prices, dates or policies."
        ),
        "icon": "chat",
        "capabilities": '["KB", "Voice"]',
    },
    {
        "name": "Writer",
        "description": "Drafts, rewrites and proofreads emails, articles and documentation.",
        "system_prompt": (
            "You are a careful writer and editor. Write clear, plain prose in the reader's language; keep the "
            "author's meaning and facts; prefer short sentences and active verbs. When asked to proofread, return "
            "the corrected text, then a short list of what you changed."
        ),
        "icon": "pen",
        "capabilities": '["Writing"]',
    },
    {
        "name": "Coder",
        "description": "Writes, explains and reviews code.",
        "system_prompt": (
            "You are a senior software engineer. Answer with working, idiomatic code and a short explanation. State "
            "assumptions, point out bugs and security problems you notice, and keep examples minimal."
        ),
        "icon": "code",
        "capabilities": '["Code"]',
    },
    {
        "name": "Analyst",
        "description": "Reads figures and documents and explains what they show.",
        "system_prompt": (
            "You are a data analyst. Work from the figures and documents you are given; show the calculation "
            "behind every number you state, say what the data cannot tell, and end with the two or three points "
            "that matter most."
        ),
        "icon": "chart",
        "capabilities": '["KB", "Analysis"]',
    },
]


def upgrade() -> None:
    agents = op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("system_prompt", sa.Text(), nullable=False),
        sa.Column("icon", sa.String(20), nullable=False, server_default="bot"),
        sa.Column("color", sa.String(7), nullable=False, server_default="#6366f1"),
        sa.Column("capabilities", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("is_public", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("model", sa.String(100), nullable=True),
        sa.Column("kb_ids", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # the app's UTCDateTime stores naive UTC in SQLite
    op.bulk_insert(
        agents,
        [
            {**agent, "user_id": None, "color": "#6366f1", "is_public": True, "created_at": now, "updated_at": now}
            for agent in BUILT_IN
        ],
    )


def downgrade() -> None:
    op.drop_table("agents")
