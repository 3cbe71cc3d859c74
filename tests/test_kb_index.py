"""The index code on both backends, in process: a tag filter that few chunks pass still finds them (pgvector 0.6
filters after its HNSW walk, so PostgreSQL came back short where SQLite was right), and SQLite keeps its vector
matrix up to date off the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from aigw.knowledge.chunk import Chunk
from aigw.knowledge.index import Scope, build_index
from aigw.settings import normalize_database_url
from aigw.store.db import create_engine, migrate, session_factory
from aigw.store.models import KbDocumentTag, KnowledgeBase
from kb_rows import ready_document, user_and_kb

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
            _, kb = await user_and_kb(db, "tags@example.com", "big")
            rare_document = 0
            for i in range(DOCUMENTS + 1):
                rare = i == DOCUMENTS
                document = await ready_document(db, kb, f"d{i}.txt", 10)
                db.add(KbDocumentTag(document_id=document.id, tag="rare" if rare else "common"))
                centre = far if rare else near
                vectors = unit(centre + rng.normal(0, 0.15, (10, DIMS)))
                chunks = [Chunk(content=f"chunk {j} of {i}", context="", position=j) for j in range(10)]
                await index.add(db, kb.user_id, document.id, kb.id, chunks, vectors)
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


async def test_sqlite_keeps_its_vector_matrix_up_to_date_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading new vectors, dropping deleted ones and compacting copy the whole matrix at scale (~150 MB at 100k
    chunks): that work runs in a worker thread, never on the event loop that serves every request."""
    from aigw.knowledge.index import sqlite as index_module

    seen: list[str] = []
    loop_thread = threading.current_thread().name
    for name in ("append", "keep_only"):
        original = getattr(index_module._Matrix, name)

        def spy(self: Any, *args: Any, _original: Any = original, _name: str = name) -> Any:
            seen.append(f"{_name}@{threading.current_thread().name}")
            return _original(self, *args)

        monkeypatch.setattr(index_module._Matrix, name, spy)
    engine = create_engine(normalize_database_url(f"sqlite:///{tmp_path / 'aigw.db'}"))
    index = build_index("sqlite")
    try:
        await migrate(engine, tmp_path / ".migrate.lock")
        async with session_factory(engine)() as db:
            _, kb = await user_and_kb(db, "loop@example.com", "k")
            documents = []
            for i in range(2):
                document = await ready_document(db, kb, f"d{i}.txt", 3)
                chunks = [Chunk(content=f"chunk {j}", context="", position=j) for j in range(3)]
                await index.add(
                    db, kb.user_id, document.id, kb.id, chunks, unit(np.random.default_rng(i).normal(size=(3, DIMS)))
                )
                documents.append(document)
            await db.commit()
            assert len(await index.vector(db, Scope([kb.id]), unit(np.ones((1, DIMS)))[0], 10)) == 6
            await index.deleting(db, kb.user_id, [documents[0].id])
            await db.execute(text("DELETE FROM kb_documents WHERE id = :d"), {"d": documents[0].id})
            await db.commit()
            assert len(await index.vector(db, Scope([kb.id]), unit(np.ones((1, DIMS)))[0], 10)) == 3
    finally:
        await index.close()
        await engine.dispose()
    assert {entry.split("@")[0] for entry in seen} >= {"append", "keep_only"}
    assert not [entry for entry in seen if entry.endswith(f"@{loop_thread}")], seen


HANDBOOK = [
    "Interns get twelve days of paid leave a year.",
    "Leave requests go to your manager two weeks ahead.",
    "The canteen serves lunch from noon; interns eat free on Fridays.",
    "Sick days do not count against paid leave.",
]
# Another user's uploads, heavy in two of the question's words: under table-wide statistics they made "leave" and
# "days" common, which changed the handbook's weights and (in a large index) which words were searched.
FLOOD = [f"Leave days, note {i}: leave, days, leave again, and days of leave." for i in range(60)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_users_ranking_does_not_change_with_what_other_users_upload(
    backend: str, tmp_path: Path, request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Word weights and pruning come from the searching user's own chunks: another user's upload leaves every
    score and the order of the first user's full-text results exactly as they were. Pruning is switched on at this
    size (it starts at 50k chunks), so it is covered too. Each search runs on a fresh index, as on another worker,
    so no remembered count hides a change."""
    from aigw.knowledge import index as index_module

    monkeypatch.setattr(index_module, "PRUNE_MIN_CHUNKS", 1)
    if backend == "postgres":
        url = await asyncio.to_thread(request.getfixturevalue("postgres").new_database)
    else:
        url = f"sqlite:///{tmp_path / 'aigw.db'}"
    engine = create_engine(normalize_database_url(url))
    rng = np.random.default_rng(5)

    async def write(db: Any, kb: Any, texts: list[str]) -> None:
        index = build_index(engine.dialect.name)
        document = await ready_document(db, kb, f"{kb.name}.txt", len(texts))
        chunks = [Chunk(content=content, context="", position=i) for i, content in enumerate(texts)]
        await index.add(db, kb.user_id, document.id, kb.id, chunks, unit(rng.normal(size=(len(texts), DIMS))))
        await db.commit()
        await index.close()

    async def search(kb_id: int, question: str = "leave days for interns in the canteen") -> list[tuple[int, float]]:
        index = build_index(engine.dialect.name)
        async with session_factory(engine)() as db:
            found = await index.fulltext(db, Scope([kb_id]), question, 10)
        await index.close()
        return found

    try:
        await migrate(engine, tmp_path / ".migrate.lock")
        async with session_factory(engine)() as db:
            _, handbook = await user_and_kb(db, "mine@example.com", "handbook")
            await write(db, handbook, HANDBOOK)
            handbook_id = handbook.id
        before = await search(handbook_id)
        assert len(before) >= 3
        async with session_factory(engine)() as db:
            _, theirs = await user_and_kb(db, "theirs@example.com", "flood")
            await write(db, theirs, FLOOD)
            theirs_id = theirs.id
        after = await search(handbook_id)
        assert [chunk for chunk, _ in after] == [chunk for chunk, _ in before]
        assert [score for _, score in after] == pytest.approx([score for _, score in before], rel=1e-9)
        flood = await search(theirs_id, "leave days")
        async with session_factory(engine)() as db:
            mine = set(await db.scalars(text("SELECT id FROM kb_chunks WHERE kb_id = :k"), {"k": handbook_id}))
        assert flood and not {chunk for chunk, _ in flood} & mine
    finally:
        await engine.dispose()


async def test_postgres_word_counts_follow_ingestion_and_deletion(request: Any, tmp_path: Path) -> None:
    """PostgreSQL weighs query words by per-KB counts kept at ingestion (kb_term_stats): after documents come and
    go, in two KBs, the counts are exactly what a recount of the chunks that remain gives."""
    url = await asyncio.to_thread(request.getfixturevalue("postgres").new_database)
    engine = create_engine(normalize_database_url(url))
    index = build_index("postgresql")
    rng = np.random.default_rng(11)
    try:
        await migrate(engine, tmp_path / ".migrate.lock")
        async with session_factory(engine)() as db:
            _, first = await user_and_kb(db, "counts@example.com", "first")
            second = KnowledgeBase(user_id=first.user_id, name="second")
            db.add(second)
            await db.flush()
            documents = []
            for kb, texts in [(first, HANDBOOK), (first, FLOOD[:5]), (second, HANDBOOK[:2]), (second, FLOOD[:3])]:
                document = await ready_document(db, kb, f"{kb.name}-{len(documents)}.txt", len(texts))
                chunks = [Chunk(content=content, context="", position=i) for i, content in enumerate(texts)]
                await index.add(db, kb.user_id, document.id, kb.id, chunks, unit(rng.normal(size=(len(texts), DIMS))))
                documents.append(document.id)
            await db.commit()
            await index.deleting(db, first.user_id, [documents[1], documents[2]])
            await db.execute(
                text("DELETE FROM kb_documents WHERE id IN (:a, :b)"), {"a": documents[1], "b": documents[2]}
            )
            await db.commit()
            kept = {
                (kb_id, word): chunks
                for kb_id, word, chunks in await db.execute(text("SELECT kb_id, lexeme, chunks FROM kb_term_stats"))
            }
            recount = {
                (kb_id, word): ndoc
                for kb_id in (first.id, second.id)
                for word, ndoc in await db.execute(
                    text(f"SELECT word, ndoc FROM ts_stat('SELECT tsv FROM kb_chunks_fts WHERE kb_id = {kb_id}')")
                )
            }
            assert kept == recount
            assert kept[(first.id, "intern")] == 2 and (first.id, "note") not in kept
            assert kept[(second.id, "note")] == 3
    finally:
        await index.close()
        await engine.dispose()
