from __future__ import annotations

from alembic import context

from aigw.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("aigw runs its migrations itself: use `aigw migrate` (or start the server)")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
