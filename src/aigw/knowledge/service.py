"""Knowledge bases and their documents, scoped to their owner in every query.

A document arrives as an upload or a URL; its bytes are stored under a generated name in the data dir, the
row is committed with status `processing`, and the ingestion worker (`jobs.py`) takes it from there. Asking
for another user's KB or document is a 404, the same as asking for one that does not exist.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from aigw.engines.ocr.tesseract import tesseract_language
from aigw.errors import InvalidField, NotFound, PayloadTooLarge
from aigw.knowledge.extract import sniff, utf8_body
from aigw.knowledge.fetch import fetch_url
from aigw.knowledge.index import KnowledgeIndex, Scope
from aigw.knowledge.retrieve import Hit, Mode, Retriever
from aigw.settings import Settings
from aigw.store.models import KbDocument, KbDocumentTag, KnowledgeBase, User

log = logging.getLogger("aigw.knowledge")

SNIFF_BYTES = 64 * 1024
_MARKUP_TYPES = frozenset({"application/xhtml+xml", "application/xml", "application/json"})
MAX_TAGS = 50
MAX_TAG_LENGTH = 100


@dataclass
class DocumentInfo:
    document: KbDocument
    tags: list[str]


def parse_tags(raw: str | None) -> list[str]:
    """Tags from a form field: a JSON array or a comma-separated list."""
    if raw is None or not raw.strip():
        return []
    raw = raw.strip()
    if raw.startswith("["):
        try:
            values = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidField("tags must be a JSON array of strings or a comma-separated list") from exc
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidField("tags must be a JSON array of strings or a comma-separated list")
    else:
        values = raw.split(",")
    tags = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_LENGTH for t in tags):
        raise InvalidField(f"At most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters")
    return tags


class KnowledgeService:
    def __init__(self, settings: Settings, index: KnowledgeIndex, retriever: Retriever) -> None:
        self.settings = settings
        self.index = index
        self.retriever = retriever
        self.files = settings.data_dir / "kb" / "files"
        self.incoming = settings.data_dir / "kb" / "incoming"
        self.fetch_allow = [ipaddress.ip_network(n, strict=False) for n in settings.kb_fetch_allow]
        self.wakeup = asyncio.Event()  # set when a document is queued, so this process's worker starts at once

    # Knowledge bases

    async def list_kbs(self, db: AsyncSession, user_id: int | None) -> list[tuple[KnowledgeBase, int, str]]:
        """KBs with their document count and owner email; all users' KBs when `user_id` is None (admins)."""
        counts = select(KbDocument.kb_id, func.count().label("n")).group_by(KbDocument.kb_id).subquery()
        query = (
            select(KnowledgeBase, func.coalesce(counts.c.n, 0), User.email)
            .join(User, User.id == KnowledgeBase.user_id)
            .outerjoin(counts, counts.c.kb_id == KnowledgeBase.id)
            .order_by(KnowledgeBase.id)
        )
        if user_id is not None:
            query = query.where(KnowledgeBase.user_id == user_id)
        return [(kb, int(n), email) for kb, n, email in (await db.execute(query)).all()]

    async def create_kb(self, db: AsyncSession, user_id: int, name: str, description: str) -> KnowledgeBase:
        kb = KnowledgeBase(user_id=user_id, name=name, description=description)
        db.add(kb)
        await db.commit()
        return kb

    async def get_kb(self, db: AsyncSession, user_id: int, kb_id: int) -> KnowledgeBase:
        kb = await db.scalar(select(KnowledgeBase).where(KnowledgeBase.id == kb_id, KnowledgeBase.user_id == user_id))
        if kb is None:
            raise NotFound("Knowledge base not found", code="kb_not_found")
        return kb

    async def delete_kb(self, db: AsyncSession, user_id: int, kb_id: int) -> None:
        """Delete a KB, its documents, chunks and vectors in one transaction; then its files."""
        kb = await self.get_kb(db, user_id, kb_id)
        documents = (
            await db.execute(select(KbDocument.id, KbDocument.stored_name).where(KbDocument.kb_id == kb.id))
        ).all()
        await self.index.deleting(db, kb.user_id, [doc_id for doc_id, _ in documents])
        await db.execute(delete(KbDocument).where(KbDocument.kb_id == kb.id))
        await db.delete(kb)
        await db.commit()
        self._remove_files([stored for _, stored in documents])

    # Documents

    async def list_documents(
        self, db: AsyncSession, user_id: int, kb_id: int, limit: int = 100, offset: int = 0
    ) -> list[DocumentInfo]:
        await self.get_kb(db, user_id, kb_id)
        documents = list(
            await db.scalars(
                select(KbDocument).where(KbDocument.kb_id == kb_id).order_by(KbDocument.id).limit(limit).offset(offset)
            )
        )
        tags = await self._tags(db, [d.id for d in documents])
        return [DocumentInfo(d, tags.get(d.id, [])) for d in documents]

    async def get_document(self, db: AsyncSession, user_id: int, kb_id: int, doc_id: int) -> DocumentInfo:
        document = await db.scalar(
            select(KbDocument).where(KbDocument.id == doc_id, KbDocument.kb_id == kb_id, KbDocument.user_id == user_id)
        )
        if document is None:
            raise NotFound("Document not found", code="document_not_found")
        return DocumentInfo(document, (await self._tags(db, [doc_id])).get(doc_id, []))

    async def add_upload(
        self,
        db: AsyncSession,
        user_id: int,
        kb_id: int,
        upload: BinaryIO,
        filename: str | None,
        declared_type: str | None,
        language: str | None,
        tags: Sequence[str],
    ) -> DocumentInfo:
        """Store an uploaded file and queue it; answers before ingestion starts."""
        await self.get_kb(db, user_id, kb_id)
        tesseract_language(language)  # an unknown language is refused now, not after the upload is queued
        stored_name, size, head = await asyncio.to_thread(self._store_stream, upload)
        try:
            kind, media_type = sniff(head, filename, declared_type)
            return await self._queue(
                db, user_id, kb_id, stored_name, size, kind, media_type, _safe_name(filename), None, language, tags
            )
        except BaseException:
            self._remove_files([stored_name])
            raise

    async def add_url(
        self, db: AsyncSession, user_id: int, kb_id: int, url: str, language: str | None, tags: Sequence[str]
    ) -> DocumentInfo:
        """Fetch a URL now (SSRF-safe: its failures are the caller's 4xx) and queue what came back."""
        await self.get_kb(db, user_id, kb_id)
        tesseract_language(language)
        await db.rollback()  # nothing written yet: the connection goes back to the pool while the page is fetched
        fetched = await fetch_url(
            url,
            allow=self.fetch_allow,
            max_bytes=min(self.settings.kb_fetch_max_bytes, self.settings.max_body_bytes),
            timeout=self.settings.kb_fetch_timeout,
        )
        name = unquote(urlsplit(fetched.url).path.rsplit("/", 1)[-1]) or None
        body = fetched.body
        if fetched.content_type.startswith("text/") or fetched.content_type in _MARKUP_TYPES:
            # Stored as UTF-8, decoded by the charset the server declared (or the page's own, or detection).
            header = f"{fetched.content_type}; charset={fetched.charset}" if fetched.charset else fetched.content_type
            body = await asyncio.to_thread(utf8_body, body, header)
        kind, media_type = sniff(body[:SNIFF_BYTES], name, fetched.content_type)
        stored_name = await asyncio.to_thread(self._store_bytes, body)
        try:
            await self.get_kb(db, user_id, kb_id)  # it may have been deleted during the fetch
            return await self._queue(
                db, user_id, kb_id, stored_name, len(body), kind, media_type, None, fetched.url, language, tags
            )
        except BaseException:
            self._remove_files([stored_name])
            raise

    async def delete_document(self, db: AsyncSession, user_id: int, kb_id: int, doc_id: int) -> None:
        info = await self.get_document(db, user_id, kb_id, doc_id)
        await self.index.deleting(db, info.document.user_id, [info.document.id])
        await db.delete(info.document)
        await db.commit()
        self._remove_files([info.document.stored_name])

    # Search

    async def query(
        self,
        db: AsyncSession,
        user_id: int,
        kb_ids: Sequence[int] | None,
        query: str,
        top_k: int,
        mode: Mode = "hybrid",
        include_tags: Sequence[str] = (),
        exclude_tags: Sequence[str] = (),
    ) -> list[Hit]:
        """Search some of a user's KBs (all of them when `kb_ids` is None); naming a KB that is not theirs is a
        404, as if it did not exist."""
        owned = select(KnowledgeBase.id).where(KnowledgeBase.user_id == user_id)
        if kb_ids is not None:
            owned = owned.where(KnowledgeBase.id.in_(kb_ids))
        scope = Scope(list(await db.scalars(owned)), include_tags, exclude_tags)
        if kb_ids is not None and len(scope.kb_ids) != len(set(kb_ids)):
            raise NotFound("Knowledge base not found", code="kb_not_found")
        return await self.retriever.search(db, scope, query, top_k, mode)

    def path_of(self, document: KbDocument) -> Path:
        return self.files / document.stored_name

    # Internals

    async def _queue(
        self,
        db: AsyncSession,
        user_id: int,
        kb_id: int,
        stored_name: str,
        size: int,
        kind: str,
        media_type: str,
        filename: str | None,
        url: str | None,
        language: str | None,
        tags: Sequence[str],
    ) -> DocumentInfo:
        if size == 0:
            raise InvalidField("The document is empty", code="empty_document")
        document = KbDocument(
            kb_id=kb_id,
            user_id=user_id,
            filename=filename,
            url=url,
            kind=kind,
            media_type=media_type,
            size=size,
            language=language,
            stored_name=stored_name,
            status="processing",
            stage="queued",
            chunk_count=0,
            attempts=0,
        )
        db.add(document)
        await db.flush()
        db.add_all(KbDocumentTag(document_id=document.id, tag=tag) for tag in tags)
        await db.commit()
        self.wakeup.set()
        log.info("document queued", extra={"document_id": document.id, "kb_id": kb_id, "kind": kind, "size": size})
        return DocumentInfo(document, list(tags))

    def _store_stream(self, upload: BinaryIO) -> tuple[str, int, bytes]:
        """Copy an upload under a generated name, bounded by the body limit; returns (name, size, first bytes)."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.files.mkdir(parents=True, exist_ok=True)
        limit = self.settings.max_body_bytes
        stored_name = uuid.uuid4().hex
        partial = self.incoming / (stored_name + ".part")
        size, head = 0, b""
        try:
            with open(partial, "wb") as out:
                while block := upload.read(1024 * 1024):
                    if len(head) < SNIFF_BYTES:
                        head += block[: SNIFF_BYTES - len(head)]
                    size += len(block)
                    if size > limit:
                        raise PayloadTooLarge(f"Document larger than {limit} bytes", code="document_too_large")
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            partial.rename(self.files / stored_name)
        finally:
            partial.unlink(missing_ok=True)
        return stored_name, size, head

    def _store_bytes(self, body: bytes) -> str:
        return self._store_stream(io.BytesIO(body))[0]

    def _remove_files(self, stored_names: Sequence[str]) -> None:
        for name in stored_names:
            (self.files / name).unlink(missing_ok=True)

    async def _tags(self, db: AsyncSession, doc_ids: Sequence[int]) -> dict[int, list[str]]:
        if not doc_ids:
            return {}
        rows = await db.execute(
            select(KbDocumentTag.document_id, KbDocumentTag.tag)
            .where(KbDocumentTag.document_id.in_(doc_ids))
            .order_by(KbDocumentTag.document_id, KbDocumentTag.tag)
        )
        tags: dict[int, list[str]] = {}
        for doc_id, tag in rows.all():
            tags.setdefault(doc_id, []).append(tag)
        return tags


def _safe_name(filename: str | None) -> str | None:
    """The name to show: the last path component, without control characters; never used on disk."""
    if not filename:
        return None
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:500] or None
