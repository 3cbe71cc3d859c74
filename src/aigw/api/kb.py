"""Knowledge bases: /api/kb (API.md rows 18-24); the admin listing (row 43) lives in api/admin.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from aigw.deps import CurrentPrincipal, DbSession, RowId, RuntimeDep
from aigw.errors import InvalidField
from aigw.knowledge.progress import Stage, Unit, unit_of
from aigw.knowledge.service import DocumentInfo, parse_tags
from aigw.store.models import KnowledgeBase

router = APIRouter(prefix="/api/kb", tags=["knowledge bases"])


class KbCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)


class KbOut(BaseModel):
    id: int
    name: str
    description: str
    doc_count: int
    created_at: datetime

    @classmethod
    def of(cls, kb: KnowledgeBase, doc_count: int) -> KbOut:
        return cls(id=kb.id, name=kb.name, description=kb.description, doc_count=doc_count, created_at=kb.created_at)


class ProgressOut(BaseModel):
    """Units of the current stage done of the total: pages while extracting or OCRing, chunks after."""

    done: int
    total: int
    unit: Unit


class DocumentOut(BaseModel):
    id: int
    kb_id: int
    filename: str | None
    url: str | None
    title: str | None
    type: str
    media_type: str
    status: Literal["processing", "ready", "failed"]
    stage: Stage | None = Field(description="While processing: queued, extracting, ocr, embedding or indexing")
    progress: ProgressOut | None = Field(description="How far the stage has got; for a ready document, its chunks")
    chunks: int
    embedding_model: str | None = Field(
        description="The embedding model of its vectors (null: not yet ready, or unrecorded). Vector search uses "
        "only documents of the server's model; `aigw kb reindex` re-embeds the others."
    )
    size: int
    tags: list[str]
    language: str | None
    error: str | None
    created_at: datetime
    ready_at: datetime | None

    @classmethod
    def of(cls, info: DocumentInfo) -> DocumentOut:
        d = info.document
        return cls(
            id=d.id,
            kb_id=d.kb_id,
            filename=d.filename,
            url=d.url,
            title=d.title,
            type=d.kind,
            media_type=d.media_type,
            status=d.status,
            stage=d.stage,
            progress=(
                ProgressOut(done=d.progress_done or 0, total=d.progress_total, unit=unit_of(d.stage))
                if d.progress_total is not None
                else None
            ),
            chunks=d.chunk_count,
            embedding_model=d.embedding_model,
            size=d.size,
            tags=info.tags,
            language=d.language,
            error=d.error,
            created_at=d.created_at,
            ready_at=d.ready_at,
        )


class QueryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=5, ge=1, le=50)
    mode: Literal["hybrid", "fulltext", "vector"] = "hybrid"
    include_tags: list[str] = Field(default_factory=list, max_length=50)
    exclude_tags: list[str] = Field(default_factory=list, max_length=50)


class QueryResult(BaseModel):
    content: str
    source: str
    score: float
    similarity: float | None
    document_id: int
    chunk_id: int
    page: int | None
    row: int | None
    context: str


class QueryOut(BaseModel):
    results: list[QueryResult]


@router.get("", summary="Your knowledge bases")
async def list_kbs(principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep) -> list[KbOut]:
    return [KbOut.of(kb, n) for kb, n, _ in await runtime.knowledge.list_kbs(db, principal.user_id)]


@router.post("", status_code=201, summary="Create a knowledge base")
async def create_kb(body: KbCreate, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep) -> KbOut:
    kb = await runtime.knowledge.create_kb(db, principal.user_id, body.name, body.description)
    return KbOut.of(kb, 0)


@router.delete("/{kb_id}", summary="Delete a knowledge base with its documents, chunks and embeddings")
async def delete_kb(kb_id: RowId, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep) -> dict[str, bool]:
    await runtime.knowledge.delete_kb(db, principal.user_id, kb_id)
    return {"success": True}


@router.get("/{kb_id}/documents", summary="Documents of a knowledge base, with their ingestion status")
async def list_documents(
    kb_id: RowId,
    principal: CurrentPrincipal,
    db: DbSession,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DocumentOut]:
    infos = await runtime.knowledge.list_documents(db, principal.user_id, kb_id, limit, offset)
    return [DocumentOut.of(info) for info in infos]


@router.post(
    "/{kb_id}/documents",
    status_code=202,
    summary="Add a file (txt md csv pdf png jpg tiff) or a URL; ingestion continues in the background",
)
async def add_document(
    kb_id: RowId,
    principal: CurrentPrincipal,
    db: DbSession,
    runtime: RuntimeDep,
    file: UploadFile | None = None,
    url: Annotated[str | None, Form(max_length=2048)] = None,
    language: Annotated[str | None, Form(max_length=50)] = None,
    tags: Annotated[str | None, Form(max_length=10_000)] = None,
) -> DocumentOut:
    if (file is None) == (not url):
        raise InvalidField("Send either a `file` or a `url`", code="file_or_url")
    tag_list = parse_tags(tags)
    language = language or None
    knowledge = runtime.knowledge
    if file is not None:
        info = await knowledge.add_upload(
            db, principal.user_id, kb_id, file.file, file.filename, file.content_type, language, tag_list
        )
    else:
        assert url is not None
        info = await knowledge.add_url(db, principal.user_id, kb_id, url.strip(), language, tag_list)
    return DocumentOut.of(info)


@router.get("/{kb_id}/documents/{doc_id}", summary="One document and its ingestion status")
async def get_document(
    kb_id: RowId, doc_id: RowId, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep
) -> DocumentOut:
    return DocumentOut.of(await runtime.knowledge.get_document(db, principal.user_id, kb_id, doc_id))


@router.delete("/{kb_id}/documents/{doc_id}", summary="Delete a document and its chunks and embeddings")
async def delete_document(
    kb_id: RowId, doc_id: RowId, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep
) -> dict[str, bool]:
    await runtime.knowledge.delete_document(db, principal.user_id, kb_id, doc_id)
    return {"success": True}


@router.post("/{kb_id}/query", summary="Search a knowledge base (hybrid full-text and vector retrieval)")
async def query_kb(
    kb_id: RowId, body: QueryBody, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep
) -> QueryOut:
    hits = await runtime.knowledge.query(
        db, principal.user_id, [kb_id], body.query, body.top_k, body.mode, body.include_tags, body.exclude_tags
    )
    return QueryOut(
        results=[
            QueryResult(
                content=h.content,
                source=h.source,
                score=h.score,
                similarity=h.similarity,
                document_id=h.document_id,
                chunk_id=h.chunk_id,
                page=h.page,
                row=h.row,
                context=h.context,
            )
            for h in hits
        ]
    )
