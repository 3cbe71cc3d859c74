"""Ingestion progress over real HTTP and in the CLI, on SQLite and on PostgreSQL: a document says which stage it
is in and how far that stage has got, until it is ready (all chunks done) or failed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from aigw.knowledge.jobs import EMBED_BATCH
from aigw.settings import normalize_database_url
from aigw.store.db import create_engine
from aigw.store.models import KbDocument
from conftest import Gateway
from kb_files import filler
from test_kb import upload, wait_ready

STAGES = ["queued", "extracting", "ocr", "embedding", "indexing"]
UNITS = {"extracting": "pages", "ocr": "pages", "embedding": "chunks", "indexing": "chunks"}


def big_text(paragraphs: int) -> bytes:
    return "\n\n".join(filler(paragraphs)).encode()


def observe_until_finished(client: httpx.Client, kb_id: int, doc_id: int, timeout: float = 600) -> list[dict[str, Any]]:
    """Every distinct state the document API shows, polled 20 times a second, up to ready or failed.

    Progress is written at most every 0.5 s (aigw.knowledge.progress.WRITE_INTERVAL), so a state lasts about
    that long and polling at this pace sees the stages and counts the worker goes through.
    """
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(f"/api/kb/{kb_id}/documents/{doc_id}")
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        state = {"status": doc["status"], "stage": doc["stage"], "progress": doc["progress"], "chunks": doc["chunks"]}
        if not seen or seen[-1] != state:
            seen.append(state)
        if doc["status"] != "processing":
            return seen
        assert time.monotonic() < deadline, f"document {doc_id} still processing after {timeout} s: {seen}"
        time.sleep(0.05)


def test_a_document_reports_stage_and_progress_until_it_is_ready(gateway: Gateway) -> None:
    client = gateway.client(gateway.new_user(rate_limit=1_000_000).key)  # polled many times a second
    kb_id = client.post("/api/kb", json={"name": "Progress"}).json()["id"]
    # ~200 chunks, 13 embedding batches: "embedding 0/200" alone stays for a good part of a second even on a
    # fast machine, so the polling below sees the document mid-way however busy or idle the machine is.
    resp = upload(client, kb_id, "handbook.txt", big_text(400))
    assert resp.status_code == 202, resp.text
    queued = resp.json()
    assert queued["status"] == "processing" and queued["stage"] == "queued" and queued["progress"] is None

    seen = observe_until_finished(client, kb_id, queued["id"])

    final = seen[-1]
    assert final["status"] == "ready", seen
    chunks = final["chunks"]
    assert chunks > 10 * EMBED_BATCH
    assert final["stage"] is None
    assert final["progress"] == {"done": chunks, "total": chunks, "unit": "chunks"}

    working = seen[:-1]
    assert working, "no state before ready was observed"
    assert all(s["status"] == "processing" and s["stage"] in STAGES for s in working), seen
    for state in working:
        progress = state["progress"]
        if progress is not None:
            assert 0 <= progress["done"] <= progress["total"], state
            assert progress["unit"] == UNITS[state["stage"]], state
    # Stages only go forward, and within one stage the count only grows.
    order = [(STAGES.index(s["stage"]), (s["progress"] or {}).get("done", 0)) for s in working]
    assert order == sorted(order), seen
    embedding = [s["progress"] for s in working if s["stage"] == "embedding"]
    assert embedding, f"the embedding stage was never observed: {seen}"
    assert all(p["total"] == chunks for p in embedding), seen
    assert any(p["done"] < chunks for p in embedding), seen

    listed = {d["id"]: d for d in client.get(f"/api/kb/{kb_id}/documents").json()}
    assert listed[queued["id"]]["progress"] == final["progress"] and listed[queued["id"]]["stage"] is None


def test_a_failed_document_has_neither_stage_nor_progress(gateway: Gateway) -> None:
    client = gateway.client(gateway.new_user().key)
    kb_id = client.post("/api/kb", json={"name": "Empty"}).json()["id"]
    doc = wait_ready(client, kb_id, upload(client, kb_id, "blank.txt", b"   \n\n   \n").json()["id"])
    assert doc["status"] == "failed" and doc["error"] == "No text found in the document"
    assert doc["stage"] is None and doc["progress"] is None


def set_document(gateway: Gateway, doc_id: int, **values: Any) -> None:
    """Write a document row the way another worker would, through the gateway's own database."""
    configured = gateway.env.get("AIGW_DATABASE_URL")
    url = normalize_database_url(configured) if configured else f"sqlite+aiosqlite:///{gateway.data_dir / 'aigw.db'}"

    async def write() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(update(KbDocument).where(KbDocument.id == doc_id).values(**values))
        finally:
            await engine.dispose()

    asyncio.run(write())


def test_a_document_another_worker_is_processing_shows_its_stage_in_the_api_and_the_cli(gateway: Gateway) -> None:
    user = gateway.new_user()
    client = gateway.client(user.key)
    kb_id = client.post("/api/kb", json={"name": "Scans"}).json()["id"]
    doc_id = upload(client, kb_id, "scan.txt", big_text(3)).json()["id"]
    ready = wait_ready(client, kb_id, doc_id)
    assert ready["status"] == "ready"
    # Held under a live lease by a worker of another process: this server's worker leaves it alone.
    lease = {"lease_owner": "another-worker", "lease_until": datetime.now(UTC) + timedelta(hours=1)}
    set_document(gateway, doc_id, status="processing", stage="ocr", progress_done=2, progress_total=5, **lease)
    try:
        doc = client.get(f"/api/kb/{kb_id}/documents/{doc_id}").json()
        assert doc["status"] == "processing" and doc["stage"] == "ocr"
        assert doc["progress"] == {"done": 2, "total": 5, "unit": "pages"}
        out = gateway.cli("kb", "documents", str(kb_id), "--email", user.email)
        assert out.returncode == 0, out.stderr
        line = next(row for row in out.stdout.splitlines() if "scan.txt" in row)
        assert line.split()[:5] == [str(doc_id), "processing", "ocr", "2/5", "pages"], out.stdout

        set_document(gateway, doc_id, stage="embedding", progress_done=48, progress_total=130)
        doc = client.get(f"/api/kb/{kb_id}/documents").json()[0]
        assert doc["stage"] == "embedding" and doc["progress"] == {"done": 48, "total": 130, "unit": "chunks"}
        out = gateway.cli("kb", "documents", str(kb_id), "--email", user.email)
        line = next(row for row in out.stdout.splitlines() if "scan.txt" in row)
        assert line.split()[:5] == [str(doc_id), "processing", "embedding", "48/130", "chunks"], out.stdout
    finally:
        chunks = ready["chunks"]
        done = {"progress_done": chunks, "progress_total": chunks, "lease_owner": None, "lease_until": None}
        set_document(gateway, doc_id, status="ready", stage=None, **done)


def test_the_cli_watches_documents_until_they_are_ready_or_failed(gateway: Gateway) -> None:
    user = gateway.new_user()
    client = gateway.client(user.key)
    kb_id = client.post("/api/kb", json={"name": "Watched"}).json()["id"]
    doc_id = upload(client, kb_id, "guide.txt", big_text(40)).json()["id"]

    watched = gateway.cli("kb", "documents", str(kb_id), "--email", user.email, "--watch", "--interval", "0.2")

    assert watched.returncode == 0, watched.stderr
    chunks = client.get(f"/api/kb/{kb_id}/documents/{doc_id}").json()["chunks"]
    line = next(row for row in watched.stdout.splitlines() if "guide.txt" in row)
    assert line.split() == [str(doc_id), "ready", "-", f"{chunks}/{chunks}", "chunks", str(chunks), "guide.txt"]
    listed = gateway.cli("kb", "list", "--email", user.email)
    assert listed.returncode == 0, listed.stderr
    assert any("Watched" in row and row.split()[-1] == "1" for row in listed.stdout.splitlines()), listed.stdout

    upload(client, kb_id, "blank.txt", b"   \n\n   \n")
    failed = gateway.cli("kb", "documents", str(kb_id), "--email", user.email, "--watch", "--interval", "0.2")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "No text found in the document" in failed.stdout
    assert any("blank.txt" in row and row.split()[1] == "failed" for row in failed.stdout.splitlines())
    assert gateway.cli("kb", "documents", str(kb_id), "--email", "ghost@example.com").returncode == 1
