"""SQLite's HNSW graph for large scopes, through the index API on a real SQLite database with synthetic normalised
vectors: it agrees with the exact scan, honours scopes and tag filters however selective, follows additions and
deletions, and is saved to the data dir, loaded by the next process and rebuilt when the file is missing,
corrupt, of another model or of another database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import delete, select, text

from aigw.knowledge.chunk import Chunk
from aigw.knowledge.hnsw import HnswOptions, graph_path, read_graph, read_header
from aigw.knowledge.index import Scope, build_index
from aigw.knowledge.index.sqlite import SqliteIndex
from aigw.store.db import create_engine, migrate, session_factory
from aigw.store.models import KbDocument, KbDocumentTag, KnowledgeBase, User
from conftest import Gateway, start_gateway
from test_kb import query, upload, wait_ready

DIMS = 64
MODEL = "synthetic-64"
MIN_CHUNKS = 500
PER_DOCUMENT = 100
LATENT = 12
BASIS = np.random.default_rng(1234).normal(size=(LATENT, DIMS))
CENTERS = np.random.default_rng(4321).normal(size=(40, LATENT))


def vectors(n: int, seed: int) -> NDArray[np.float32]:
    """Clustered unit vectors of a low intrinsic dimension, as sentence embeddings are."""
    rng = np.random.default_rng(seed)
    latent = CENTERS[rng.integers(0, len(CENTERS), n)] + rng.normal(scale=0.6, size=(n, LATENT))
    raw = latent @ BASIS + rng.normal(scale=0.3, size=(n, DIMS))
    return (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Corpus:
    """A database of two KBs: `big` (40 documents; 6 tagged "rare", 1 tagged "tiny") and `other` (10 documents)."""

    directory: Path
    url: str
    big: int
    other: int
    user: int
    documents: dict[int, tuple[int, list[str]]]  # document id -> (kb id, tags)
    ids: NDArray[np.int64]  # chunk ids, ascending
    vectors: NDArray[np.float32]  # row-aligned with ids
    chunk_documents: NDArray[np.int64]

    def exact(self, kb_ids: Sequence[int], query: NDArray[np.float32], limit: int, tag: str | None = None) -> list[int]:
        allowed = {d for d, (kb, tags) in self.documents.items() if kb in kb_ids and (tag is None or tag in tags)}
        rows = np.flatnonzero(np.isin(self.chunk_documents, list(allowed)))
        scores = self.vectors[rows] @ query
        return [int(self.ids[rows[i]]) for i in np.argsort(-scores, kind="stable")[:limit]]


async def add_documents(
    url: str, kb_id: int, user_id: int, count: int, seed: int, tags: Callable[[int], list[str]] = lambda _: []
) -> dict[int, tuple[list[str], NDArray[np.float32]]]:
    """`count` documents of PER_DOCUMENT chunks, written with aigw's own index code; their tags and vectors."""
    engine = create_engine(url)
    index = build_index("sqlite")
    added = {}
    try:
        async with session_factory(engine)() as db:
            for i in range(count):
                document = KbDocument(
                    kb_id=kb_id,
                    user_id=user_id,
                    filename=f"doc-{seed}-{i}.txt",
                    kind="text",
                    media_type="text/plain",
                    size=1,
                    stored_name=f"stored-{seed}-{i}",
                    status="ready",
                    chunk_count=PER_DOCUMENT,
                    attempts=1,
                )
                db.add(document)
                await db.flush()
                document_tags = tags(i)
                db.add_all(KbDocumentTag(document_id=document.id, tag=tag) for tag in document_tags)
                batch = vectors(PER_DOCUMENT, seed * 1000 + i)
                chunks = [Chunk(content=f"chunk {j} of {document.id}", context="", position=j) for j in range(100)]
                await index.add(db, user_id, document.id, kb_id, chunks, batch)
                added[document.id] = (document_tags, batch)
            await db.commit()
    finally:
        await engine.dispose()
    return added


async def load_corpus(directory: Path, seed: int = 0) -> Corpus:
    url = f"sqlite+aiosqlite:///{directory / 'aigw.db'}"
    engine = create_engine(url)
    await migrate(engine, directory / ".migrate.lock")
    async with session_factory(engine)() as db:
        user = User(email="ann@example.com", password_hash="x")
        db.add(user)
        await db.flush()
        big, other = KnowledgeBase(user_id=user.id, name="big"), KnowledgeBase(user_id=user.id, name="other")
        db.add_all([big, other])
        await db.commit()
        ids = (user.id, big.id, other.id)
    await engine.dispose()
    user_id, big_id, other_id = ids

    def big_tags(i: int) -> list[str]:
        return ["rare"] * (i < 6) + ["tiny"] * (i == 6)

    documents: dict[int, tuple[int, list[str]]] = {}
    parts = []
    for kb_id, count, kb_seed, tags in ((big_id, 40, 1, big_tags), (other_id, 10, 2, lambda _: [])):
        added = await add_documents(url, kb_id, user_id, count, 10 * seed + kb_seed, tags)
        for doc_id, (doc_tags, batch) in added.items():
            documents[doc_id] = (kb_id, doc_tags)
            parts.append((doc_id, batch))
    engine = create_engine(url)
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, document_id FROM kb_chunks ORDER BY id"))).all()
    await engine.dispose()
    by_document = dict(parts)
    chunk_documents = np.array([r[1] for r in rows], np.int64)
    stacked = np.concatenate([by_document[d] for d in sorted(by_document)])  # documents were written in id order
    return Corpus(
        directory=directory,
        url=url,
        big=big_id,
        other=other_id,
        user=user_id,
        documents=documents,
        ids=np.array([r[0] for r in rows], np.int64),
        vectors=stacked,
        chunk_documents=chunk_documents,
    )


@pytest.fixture(scope="module")
async def template(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return await load_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
async def corpus(template: Corpus, tmp_path: Path) -> Corpus:
    """A copy of the module's database, in a data dir of its own (no graph file yet)."""
    for name in ("aigw.db", "aigw.db-wal"):
        if (template.directory / name).exists():
            shutil.copyfile(template.directory / name, tmp_path / name)
    return replace(
        template,
        directory=tmp_path,
        url=f"sqlite+aiosqlite:///{tmp_path / 'aigw.db'}",
        documents=dict(template.documents),
    )


class Searcher:
    """A SqliteIndex with its graph, as one worker process has it, and a session to search with."""

    def __init__(self, corpus: Corpus, model: str = MODEL) -> None:
        self.corpus = corpus
        self.engine = create_engine(corpus.url)
        self.sessions = session_factory(self.engine)
        index = build_index("sqlite", HnswOptions(corpus.directory / "kb", model, MIN_CHUNKS))
        assert isinstance(index, SqliteIndex) and index.hnsw is not None
        self.index = index
        self.hnsw = index.hnsw

    async def search(
        self, kb_ids: Sequence[int], query: NDArray[np.float32], limit: int, include: Sequence[str] = ()
    ) -> list[int]:
        async with self.sessions() as db:
            found = await self.index.vector(db, Scope(list(kb_ids), include_tags=include), query, limit)
        scores = [score for _, score in found]
        assert scores == sorted(scores, reverse=True)
        return [chunk_id for chunk_id, _ in found]

    async def ready(self, timeout: float = 120) -> None:
        """Sync with the database (which starts the graph's upkeep) and wait until the graph answers."""
        async with self.sessions() as db:
            await self.index.prepare(db, DIMS)
        deadline = time.monotonic() + timeout
        while not self.hnsw.ready:
            assert time.monotonic() < deadline, "the vector graph did not become ready"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.index.close()
        await self.engine.dispose()


@pytest.fixture
async def searcher(corpus: Corpus) -> AsyncIterator[Searcher]:
    searcher = Searcher(corpus)
    await searcher.ready()
    yield searcher
    await searcher.close()


def recall(found: list[int], exact: list[int]) -> float:
    return len(set(found) & set(exact)) / len(exact)


async def test_graph_results_agree_with_the_exact_scan(searcher: Searcher, corpus: Corpus) -> None:
    queries = vectors(100, 99)
    answered = searcher.hnsw.answered
    for k in (10, 100):
        recalls = []
        for vector in queries:
            found = await searcher.search([corpus.big, corpus.other], vector, k)
            assert len(found) == k
            recalls.append(recall(found, corpus.exact([corpus.big, corpus.other], vector, k)))
        assert np.mean(recalls) >= 0.95, (k, np.mean(recalls))
    assert searcher.hnsw.answered == answered + 2 * len(queries)  # the graph answered, not the exact scan


async def test_a_selective_scope_or_tag_filter_still_returns_top_k(searcher: Searcher, corpus: Corpus) -> None:
    queries = vectors(40, 98)
    # A KB of a fifth of the graph, a tag on 12% of it (both through the graph), a tag below the threshold.
    for kb_ids, tag, scope_size in (
        ([corpus.other], None, 1000),
        ([corpus.big], "rare", 600),
        ([corpus.big], "tiny", 100),
    ):
        for k in (10, 100):
            recalls = []
            for vector in queries:
                found = await searcher.search(kb_ids, vector, k, include=[tag] if tag else [])
                exact = corpus.exact(kb_ids, vector, k, tag)
                assert len(found) == min(k, scope_size)
                assert set(found) <= set(corpus.exact(kb_ids, vector, scope_size, tag))  # all inside the scope
                recalls.append(recall(found, exact))
            assert np.mean(recalls) >= 0.95, (kb_ids, tag, k, np.mean(recalls))


async def test_deleted_documents_leave_the_results(searcher: Searcher, corpus: Corpus) -> None:
    gone = next(d for d, (kb, _) in corpus.documents.items() if kb == corpus.big)
    gone_ids = set(corpus.ids[corpus.chunk_documents == gone].tolist())
    query = corpus.vectors[corpus.chunk_documents == gone][0]
    assert (await searcher.search([corpus.big], query, 10))[0] in gone_ids
    async with searcher.sessions() as db:
        owner = await db.scalar(select(KbDocument.user_id).where(KbDocument.id == gone))
        assert owner is not None
        await searcher.index.deleting(db, owner, [gone])
        await db.execute(delete(KbDocument).where(KbDocument.id == gone))
        await db.commit()
    found = await searcher.search([corpus.big, corpus.other], query, 100)
    assert len(found) == 100 and not set(found) & gone_ids
    del corpus.documents[gone]
    assert recall(found, corpus.exact([corpus.big, corpus.other], query, 100)) >= 0.95


async def test_new_documents_are_found_at_once(searcher: Searcher, corpus: Corpus) -> None:
    added = await add_documents(corpus.url, corpus.other, corpus.user, 2, seed=30)
    async with searcher.sessions() as db:
        new_ids = [
            int(i)
            for (i,) in (
                await db.execute(text("SELECT id FROM kb_chunks WHERE id > :last"), {"last": int(corpus.ids[-1])})
            ).all()
        ]
    for _, batch in added.values():
        found = await searcher.search([corpus.big, corpus.other], batch[7], 5)
        assert found[0] in new_ids


async def test_the_graph_file_is_loaded_by_the_next_process(
    searcher: Searcher, corpus: Corpus, caplog: pytest.LogCaptureFixture
) -> None:
    path = graph_path(corpus.directory / "kb", MODEL, DIMS)
    header = read_header(path)
    assert header["model"] == MODEL and header["dimensions"] == DIMS and header["count"] == len(corpus.ids)
    assert header["last_id"] == int(corpus.ids[-1])
    queries = vectors(20, 97)
    before = [await searcher.search([corpus.big, corpus.other], q, 10) for q in queries]
    caplog.set_level(logging.INFO, "aigw.knowledge.hnsw")
    second = Searcher(corpus)
    try:
        await second.ready()
        messages = [r.message for r in caplog.records]
        assert "vector graph loaded" in messages and "vector graph built" not in messages
        assert [await second.search([corpus.big, corpus.other], q, 10) for q in queries] == before
    finally:
        await second.close()


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda path: path.unlink(), "missing"),
        (corrupt, "corrupt: checksum mismatch"),
        (lambda path: path.write_bytes(path.read_bytes()[:5000]), "corrupt: truncated or extended"),
        (lambda path: path.write_bytes(b"not a graph"), "corrupt: not a graph file"),
    ],
)
async def test_a_missing_or_corrupt_file_is_rebuilt(
    searcher: Searcher, corpus: Corpus, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None], reason: str
) -> None:
    path = graph_path(corpus.directory / "kb", MODEL, DIMS)
    queries = vectors(20, 96)
    before = [await searcher.search([corpus.big, corpus.other], q, 10) for q in queries]
    await searcher.close()
    damage(path)
    caplog.set_level(logging.INFO, "aigw.knowledge.hnsw")
    second = Searcher(corpus)
    try:
        await second.ready()
        rebuilt = [r for r in caplog.records if r.message == "rebuilding the vector graph"]
        assert [r.reason for r in rebuilt] == [reason]  # type: ignore[attr-defined]
        assert read_graph(path, MODEL, DIMS).size == len(corpus.ids)  # written again, whole
        after = [await second.search([corpus.big, corpus.other], q, 10) for q in queries]
        assert np.mean([recall(a, b) for a, b in zip(after, before, strict=True)]) >= 0.95
    finally:
        await second.close()


async def test_a_file_of_another_model_or_database_is_not_used(
    searcher: Searcher, corpus: Corpus, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await searcher.close()
    path = graph_path(corpus.directory / "kb", MODEL, DIMS)
    other_model = graph_path(corpus.directory / "kb", "other-model", DIMS)
    other_model.write_bytes(path.read_bytes())
    caplog.set_level(logging.INFO, "aigw.knowledge.hnsw")
    renamed = Searcher(corpus, model="other-model")
    try:
        await renamed.ready()
    finally:
        await renamed.close()
    # Another database with the same data dir layout: its chunk ids overlap, its vectors differ.
    elsewhere = await load_corpus(tmp_path_factory.mktemp("elsewhere"), seed=5)
    (elsewhere.directory / "kb").mkdir()
    graph_path(elsewhere.directory / "kb", MODEL, DIMS).write_bytes(path.read_bytes())
    replaced = Searcher(elsewhere)
    try:
        await replaced.ready()
        query = elsewhere.vectors[1234]
        assert (await replaced.search([elsewhere.big, elsewhere.other], query, 1)) == [int(elsewhere.ids[1234])]
    finally:
        await replaced.close()
    reasons = [r.reason for r in caplog.records if r.message == "rebuilding the vector graph"]  # type: ignore[attr-defined]
    assert reasons[0] == "of another embedding model (synthetic-64, 64 dimensions)"
    assert reasons[1].startswith("of another database")


async def test_one_process_builds_the_file_while_another_waits_and_loads(
    corpus: Corpus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "aigw.knowledge.hnsw")
    first, second = Searcher(corpus), Searcher(corpus)
    try:
        await asyncio.gather(first.ready(), second.ready())
        messages = [r.message for r in caplog.records]
        assert messages.count("vector graph built") == 1
        assert messages.count("vector graph loaded") == 1
        query = corpus.vectors[42]
        assert await first.search([corpus.big], query, 10) == await second.search([corpus.big], query, 10)
    finally:
        await first.close()
        await second.close()


# Through a real gateway: the embedded model, real documents, and a threshold low enough for the graph.

SUBJECTS = ["lathe", "kiln", "forklift", "router", "printer", "boiler", "loom", "drone", "freezer", "pump"]
PLACES = ["Oslo", "Lagos", "Quito", "Perth", "Hanoi", "Tunis", "Lima", "Riga", "Porto", "Accra"]
DISHES = ["risotto", "ramen", "goulash", "tagine", "paella", "pierogi", "laksa", "moussaka", "ceviche", "biryani"]
GRAPH_ENV = {"AIGW_KB_CHUNK_CHARS": "200", "AIGW_KB_ANN_MIN_CHUNKS": "8"}
QUESTIONS = ["Which machine is kept in Hanoi?", "Who cooks the ramen?", "When was the drone serviced?"]


def paragraphs(kind: str, start: int, count: int) -> bytes:
    """Distinct ~200-character paragraphs, one chunk each, so that no two chunks tie."""
    lines = []
    for i in range(start, start + count):
        if kind == "machines":
            lines.append(
                f"The {SUBJECTS[i % 10]} number {i} is kept in the {PLACES[(3 * i) % 10]} workshop. It was "
                f"serviced on day {i + 3} of the year by technician T-{i}. Its spare parts come in batches of {i + 2}."
            )
        else:
            lines.append(
                f"On {['Monday', 'Tuesday', 'Friday'][i % 3]} number {i} the canteen serves {DISHES[i % 10]} cooked "
                f"by chef C-{i}. It costs {i + 7} euros and is made with produce from {PLACES[i % 10]}."
            )
    return "\n\n".join(lines).encode()


def graph_log(gateway: Gateway) -> list[dict[str, Any]]:
    entries = []
    for line in gateway.log().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("logger") == "aigw.knowledge.hnsw":
                entries.append(entry)
    return entries


def wait_for_graph(gateway: Gateway, client: httpx.Client, kb_id: int, timeout: float = 180) -> list[dict[str, Any]]:
    """Query once (a query brings the index up to the database, which starts the graph), then wait for the graph
    to be ready; returns the graph's log lines."""
    query(client, kb_id, "warm up")
    deadline = time.monotonic() + timeout
    while not any(e["msg"] == "vector graph ready" for e in graph_log(gateway)):
        assert time.monotonic() < deadline, gateway.log()[-3000:]
        time.sleep(0.1)
    return graph_log(gateway)


def answers(client: httpx.Client, kb_id: int) -> list[list[tuple[int, float]]]:
    """The results of every question by vector, hybrid and a tag filter: chunk ids with their similarity."""
    found = []
    for question in QUESTIONS:
        for extra in ({"mode": "vector"}, {"mode": "hybrid"}, {"mode": "vector", "include_tags": ["canteen"]}):
            results = query(client, kb_id, question, top_k=5, **extra)
            assert len(results) == 5
            found.append([(r["chunk_id"], r["similarity"]) for r in results])
    return found


def test_a_gateway_answers_from_the_graph_as_from_the_exact_scan_and_rebuilds_a_lost_or_corrupt_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("gw-ann")
    exact = start_gateway(data_dir, AIGW_KB_CHUNK_CHARS="200")  # the default threshold: exact scans only
    try:
        user = exact.new_user()
        client = exact.client(user.key)
        kb_id = client.post("/api/kb", json={"name": "Plant"}).json()["id"]
        documents = {}
        for name, body, tags in (
            ("machines.txt", paragraphs("machines", 0, 20), "workshop"),
            ("canteen.txt", paragraphs("canteen", 0, 15), "canteen"),
            ("more.txt", paragraphs("machines", 20, 10), "workshop"),
        ):
            resp = upload(client, kb_id, name, body, tags=tags)
            assert resp.status_code == 202, resp.text
            documents[name] = resp.json()["id"]
        chunks = sum(wait_ready(client, kb_id, doc_id)["chunks"] for doc_id in documents.values())
        assert chunks >= 40
        reference = answers(client, kb_id)
    finally:
        exact.stop()
    kb_dir = data_dir / "kb"
    assert not list(kb_dir.glob("vectors.*.faiss"))

    def damage_none(path: Path) -> None:
        pass

    # A first start builds the file; the next loads it; a deleted or corrupt one is rebuilt.
    for damage, expected in (
        (damage_none, "missing"),
        (damage_none, None),
        (lambda path: path.unlink(), "missing"),
        (corrupt, "corrupt: checksum mismatch"),
    ):
        files = list(kb_dir.glob("vectors.*.faiss"))
        if files:
            damage(files[0])
        gateway = start_gateway(data_dir, **GRAPH_ENV)
        try:
            client = gateway.client(user.key)
            entries = wait_for_graph(gateway, client, kb_id)
            rebuilt = [e["reason"] for e in entries if e["msg"] == "rebuilding the vector graph"]
            assert rebuilt == ([expected] if expected else []), entries
            assert any(e["msg"] == ("vector graph saved" if expected else "vector graph loaded") for e in entries)
            ready = next(e for e in entries if e["msg"] == "vector graph ready")
            assert ready["vectors"] == chunks
            assert answers(client, kb_id) == reference
        finally:
            gateway.stop()

    # Deleting a document takes its chunks out of the graph's answers at once.
    gateway = start_gateway(data_dir, **GRAPH_ENV)
    try:
        client = gateway.client(user.key)
        wait_for_graph(gateway, client, kb_id)
        gone = documents["machines.txt"]
        assert any(r["document_id"] == gone for r in query(client, kb_id, QUESTIONS[0], top_k=10, mode="vector"))
        assert client.delete(f"/api/kb/{kb_id}/documents/{gone}").status_code == 200
        for question in QUESTIONS:
            for mode in ("vector", "hybrid"):
                results = query(client, kb_id, question, top_k=10, mode=mode)
                assert len(results) == 10 and all(r["document_id"] != gone for r in results)
    finally:
        gateway.stop()
