"""Knowledge-base rows written straight to the database, for tests of the index and migrations in process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from aigw.store.models import KbDocument, KnowledgeBase, User


async def user_and_kb(db: AsyncSession, email: str, kb_name: str) -> tuple[User, KnowledgeBase]:
    user = User(email=email, password_hash="x")
    db.add(user)
    await db.flush()
    kb = KnowledgeBase(user_id=user.id, name=kb_name)
    db.add(kb)
    await db.flush()
    return user, kb


@dataclass(frozen=True)
class DocumentRow:
    id: int


async def ready_document(
    db: AsyncSession, kb: KnowledgeBase, filename: str, chunks: int, kind: str = "text"
) -> DocumentRow:
    """A `ready` document row of `chunks` chunks (the chunks themselves are the caller's to write). Written with
    only the columns every revision has, so that migration tests can write it at an older one."""
    media_type = {"text": "text/plain", "markdown": "text/markdown"}[kind]
    document_id = await db.scalar(
        insert(KbDocument.__table__).values(
            kb_id=kb.id, user_id=kb.user_id, filename=filename, kind=kind, media_type=media_type, size=1,
            stored_name=filename, status="ready", chunk_count=chunks, attempts=1, created_at=datetime.now(UTC),
        ).returning(KbDocument.__table__.c.id)
    )  # fmt: skip
    assert document_id is not None
    return DocumentRow(int(document_id))
