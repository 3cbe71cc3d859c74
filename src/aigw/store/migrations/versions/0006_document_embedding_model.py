"""Each document records the embedding model its vectors came from.

Vectors are comparable only within one model's space. Without a record, configuring another model of the same
size silently compared new queries with old vectors, and one of another size silently dropped old documents
from vector search. Searches now compare a query only with vectors of the configured model, and `aigw kb
reindex` re-embeds the rest.

Documents written before this revision were embedded by aigw's only default, all-MiniLM-L6-v2 (384 dimensions):
those whose vectors all have 384 dimensions are recorded as that model; any other stays unknown (NULL), which
searches treat as another model until it is re-embedded.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("kb_documents", sa.Column("embedding_model", sa.String(200), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        other_size = "c.embedding IS NULL OR length(c.embedding) != 384 * 4"
    else:
        other_size = "c.embedding IS NULL OR vector_dims(c.embedding) != 384"
    op.execute(
        "UPDATE kb_documents SET embedding_model = 'all-MiniLM-L6-v2' WHERE status = 'ready' AND NOT EXISTS "
        f"(SELECT 1 FROM kb_chunks c WHERE c.document_id = kb_documents.id AND ({other_size}))"
    )


def downgrade() -> None:
    op.drop_column("kb_documents", "embedding_model")
