"""A tag filter that few chunks pass still finds them, on both backends.

pgvector 0.6 filters after its HNSW walk, so a filter the query's neighbourhood fails came back short (or empty)
on PostgreSQL while SQLite, which filters inside its search, found the right chunks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from aigw.knowledge.chunk import Chunk
from aigw.knowledge.index import Scope, build_index
from aigw.settings import normalize_database_url
from aigw.store.db import create_engine, migrate, session_factory
from aigw.store.models import KbDocument, KbDocumentTag, KnowledgeBase, User

DIMS = 16
DOCUMENTS = 400  # of 10 chunks: enough that PostgreSQL walks its HNSW index rather than sorting the table


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_rare_tag_in_a_large_kb_finds_all_its_chunks(backend: str, tmp_path: Path, request: Any) -> None:
    if backend == "postgres":
        url = await asyncio.to_thread(request.getfixturevalue("postgres").new_database)
    else:
        url = f"sqlite:///{tmp_path / 'aigw.db'}"
    engine = create_engine(normalize_database_url(url))
    index = build_index(engine.dialect.name)
    rng = np.random.default_rng(3)
    near, far = np.eye(DIMS, dtype=np.float32)[0], np.eye(DIMS, dtype=np.float32)[1]
    try:
        await migrate(engine, tmp_path / ".migrate.lock")
        async with session_factory(engine)() as db:
            await index.prepare(db, DIMS)
            user = User(email="tags@example.com", password_hash="x")
            db.add(user)
            await db.flush()
            kb = KnowledgeBase(user_id=user.id, name="big")
            db.add(kb)
            await db.flush()
            rare_document = 0
            for i in range(DOCUMENTS + 1):
                rare = i == DOCUMENTS
                document = KbDocument(
                    kb_id=kb.id, user_id=user.id, filename=f"d{i}.txt", kind="text", media_type="text/plain",
                    size=1, stored_name=f"d{i}", status="ready", chunk_count=10, attempts=1,
                )  # fmt: skip
                db.add(document)
                await db.flush()
                db.add(KbDocumentTag(document_id=document.id, tag="rare" if rare else "common"))
                centre = far if rare else near
                vectors = unit(centre + rng.normal(0, 0.15, (10, DIMS)))
                chunks = [Chunk(content=f"chunk {j} of {i}", context="", position=j) for j in range(10)]
                await index.add(db, document.id, kb.id, chunks, vectors)
                await db.flush()
                if rare:
                    rare_document = document.id
            await db.commit()
            if backend == "postgres":  # table statistics, as autovacuum keeps them: the KB is the whole table
                await db.execute(text("ANALYZE kb_chunks"))
            rare_chunks = list(
                await db.scalars(text("SELECT id FROM kb_chunks WHERE document_id = :d"), {"d": rare_document})
            )
            found = await index.vector(db, Scope([kb.id], include_tags=["rare"]), near, 5)
            assert len(found) == 5 and {chunk for chunk, _ in found} <= set(rare_chunks)
            everything = await index.vector(db, Scope([kb.id], include_tags=["rare"]), near, 50)
            assert sorted(chunk for chunk, _ in everything) == sorted(rare_chunks)
            untagged = await index.vector(db, Scope([kb.id], exclude_tags=["common"]), near, 20)
            assert sorted(chunk for chunk, _ in untagged) == sorted(rare_chunks)
    finally:
        await index.close()
        await engine.dispose()
