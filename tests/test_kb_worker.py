"""Knowledge bases outlive what goes wrong around them: a database that goes away mid-document, an embedding
engine that is busy or unreachable for a while (only a document's own faults fail it), and slow web servers
behind URL adds (which hold no database connection while they wait)."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conftest import Gateway, start_gateway
from doubles.ollama import OllamaProtocolDouble, ServerThread
from kb_files import filler
from test_kb import query, upload, wait_ready


def wait_for_log(gateway: Gateway, *needles: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not any(needle in gateway.log() for needle in needles):
        assert time.monotonic() < deadline, f"none of {needles} logged:\n{gateway.log()[-3000:]}"
        time.sleep(0.1)


async def _admin(postgres: Any, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(postgres.base.replace("postgresql://", "postgres://"))
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def test_a_document_finishes_after_the_database_comes_back(tmp_path: Path, postgres: Any) -> None:
    database_url = postgres.new_database()
    name = database_url.split("?")[0].rsplit("/", 1)[1]
    gw = start_gateway(tmp_path / "gw", database_url=database_url, AIGW_KB_JOB_LEASE_SECONDS="2")
    try:
        client = gw.client(gw.new_user(rate_limit=1_000_000).key)
        kb_id = client.post("/api/kb", json={"name": "Outage"}).json()["id"]
        paragraphs = filler(600)
        paragraphs.insert(400, "The backup generator in building C is tested on the first Monday of each month.")
        doc_id = upload(client, kb_id, "big.txt", "\n\n".join(paragraphs).encode()).json()["id"]
        deadline = time.monotonic() + 300
        while True:  # mid-embedding, as the document reports it
            doc = client.get(f"/api/kb/{kb_id}/documents/{doc_id}").json()
            progress = doc["progress"] or {}
            if doc["stage"] == "embedding" and 0 < progress["done"] < progress["total"]:
                break
            assert doc["status"] == "processing" and time.monotonic() < deadline, doc
            time.sleep(0.05)

        # The database goes away: no new connections, and every open one is cut.
        asyncio.run(_admin(postgres, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        asyncio.run(_admin(postgres, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name))
        wait_for_log(gw, "ingestion round failed", "ingestion failed")  # the final transaction met the outage
        asyncio.run(_admin(postgres, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))

        doc = wait_ready(client, kb_id, doc_id, timeout=300)
        assert doc["status"] == "ready" and doc["chunks"] > 50, doc
        assert "generator" in query(client, kb_id, "When is the backup generator tested?")[0]["content"]
        # And the worker goes on with new work.
        later = upload(client, kb_id, "later.txt", b"The canteen opens at eight.").json()["id"]
        assert wait_ready(client, kb_id, later)["status"] == "ready"
    finally:
        gw.stop()


def test_a_busy_embedding_engine_delays_a_document_but_does_not_fail_it(
    tmp_path: Path, ollama_double: OllamaProtocolDouble
) -> None:
    embedding = {"engine": "ollama", "base_url": ollama_double.url, "model": "nomic-embed-text"}
    gw = start_gateway(tmp_path / "gw", AIGW_EMBEDDING=json.dumps(embedding))
    try:
        client = gw.client(gw.new_user().key)
        kb_id = client.post("/api/kb", json={"name": "Busy"}).json()["id"]
        ollama_double.reply_embed_status(503, "server busy, please try again")
        ollama_double.reply_embed_status(503, "server busy, please try again")
        doc_id = upload(client, kb_id, "note.txt", b"Interns get twelve days of paid leave.").json()["id"]
        doc = wait_ready(client, kb_id, doc_id, timeout=120)
        assert doc["status"] == "ready", doc
        assert gw.log().count("embedding engine unavailable; the document waits") == 2
        # A request the engine refuses outright (4xx) is the document's end, with the engine's reason.
        ollama_double.reply_embed_status(400, "input too long for this model")
        bad = upload(client, kb_id, "bad.txt", b"Some text the engine refuses.").json()["id"]
        doc = wait_ready(client, kb_id, bad, timeout=120)
        assert doc["status"] == "failed" and "input too long" in doc["error"], doc
    finally:
        gw.stop()


def test_slow_url_adds_leave_connections_for_everyone_else(tmp_path: Path) -> None:
    """Eight URL adds wait on a web server that does not answer; with a pool of two connections, other
    requests still get theirs at once."""
    release = threading.Event()
    waiting: list[int] = []

    async def stalled(_: Request) -> Response:
        waiting.append(1)
        await asyncio.to_thread(release.wait, 60)
        return Response("<html><body><p>The canteen opens at eight.</p></body></html>", media_type="text/html")

    site = ServerThread(Starlette(routes=[Route("/slow", stalled)]))
    site.start()
    gw = start_gateway(
        tmp_path / "gw",
        AIGW_KB_FETCH_ALLOW='["127.0.0.1/32"]',
        AIGW_DB_POOL_SIZE="2",
        AIGW_DB_MAX_OVERFLOW="0",
    )
    try:
        key = gw.new_user(rate_limit=1_000_000).key
        client = gw.client(key)
        kb_id = client.post("/api/kb", json={"name": "Slow"}).json()["id"]

        def add(n: int) -> int:
            with gw.client(key, timeout=90) as own:
                return own.post(f"/api/kb/{kb_id}/documents", data={"url": f"{site.url}/slow?n={n}"}).status_code

        with ThreadPoolExecutor(8) as pool:
            adds = [pool.submit(add, n) for n in range(8)]
            deadline = time.monotonic() + 60
            while len(waiting) < 8:  # every add is waiting on the site
                assert time.monotonic() < deadline, "the URL adds never reached the site"
                time.sleep(0.1)
            started = time.monotonic()
            listed = gw.client(key, timeout=20).get(f"/api/kb/{kb_id}/documents")
            assert listed.status_code == 200 and time.monotonic() - started < 5, listed.text
            release.set()
            assert [a.result(timeout=90) for a in adds] == [202] * 8
    finally:
        release.set()
        gw.stop()
        site.stop()


def test_page_and_ocr_limits_fail_a_document_with_a_reason(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "gw", AIGW_KB_MAX_PAGES="2", AIGW_KB_OCR_SECONDS="0.01")
    try:
        client = gw.client(gw.new_user().key)
        kb_id = client.post("/api/kb", json={"name": "Scans"}).json()["id"]
        frames = [Image.new("L", (400, 120), 255) for _ in range(3)]
        for frame in frames:
            ImageDraw.Draw(frame).text((10, 40), "Quarterly report", fill=0)
        tiff = io.BytesIO()
        frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
        png = io.BytesIO()
        frames[0].save(png, format="PNG")
        long_scan = upload(client, kb_id, "scan.tiff", tiff.getvalue()).json()["id"]
        slow_scan = upload(client, kb_id, "scan.png", png.getvalue()).json()["id"]
        text = upload(client, kb_id, "note.txt", b"The canteen opens at eight.").json()["id"]
        doc = wait_ready(client, kb_id, long_scan)
        assert doc["status"] == "failed" and "3 frames; at most 2" in doc["error"], doc
        doc = wait_ready(client, kb_id, slow_scan)
        assert doc["status"] == "failed" and "OCR of this document took longer than 0.01 s" in doc["error"], doc
        assert wait_ready(client, kb_id, text)["status"] == "ready"
    finally:
        gw.stop()


def test_users_take_turns_so_a_small_upload_does_not_wait_behind_large_ones(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "gw")
    try:
        alice = gw.client(gw.new_user(rate_limit=1_000_000).key)
        bob = gw.client(gw.new_user(rate_limit=1_000_000).key)
        alices_kb = alice.post("/api/kb", json={"name": "Archive"}).json()["id"]
        bobs_kb = bob.post("/api/kb", json={"name": "Notes"}).json()["id"]
        big = "\n\n".join(filler(900)).encode()
        large = [upload(alice, alices_kb, f"archive-{n}.txt", big).json()["id"] for n in range(2)]
        small = upload(bob, bobs_kb, "note.txt", b"The canteen opens at eight.").json()["id"]
        assert wait_ready(bob, bobs_kb, small)["status"] == "ready"
        # Bob's note went before Alice's second archive (in upload order it was last).
        second = alice.get(f"/api/kb/{alices_kb}/documents/{large[1]}").json()
        assert second["status"] == "processing", second
        for doc_id in large:
            assert wait_ready(alice, alices_kb, doc_id, timeout=600)["status"] == "ready"
    finally:
        gw.stop()


def test_two_workers_never_both_finish_one_document(tmp_path: Path) -> None:
    """A worker whose lease was taken over (it stalled past its lease) works on, but only the new holder of the
    lease may finish the document: its chunks are written once."""
    data_dir = tmp_path / "gw"
    gw = start_gateway(data_dir, AIGW_KB_INGEST_WORKERS="2")
    try:
        client = gw.client(gw.new_user(rate_limit=1_000_000).key)
        kb_id = client.post("/api/kb", json={"name": "Contested"}).json()["id"]
        doc_id = upload(client, kb_id, "big.txt", "\n\n".join(filler(900)).encode()).json()["id"]
        deadline = time.monotonic() + 300
        while True:  # early in the embedding, so the other worker claims it long before the first could finish
            doc = client.get(f"/api/kb/{kb_id}/documents/{doc_id}").json()
            progress = doc["progress"] or {}
            if doc["stage"] == "embedding" and 0 < progress["done"] < progress["total"] // 2:
                break
            assert doc["status"] == "processing" and time.monotonic() < deadline, doc
            time.sleep(0.05)
        # The first worker loses its lease, as if it had stalled past it (and its renewals cannot win it back):
        # the other worker takes the document.
        with sqlite3.connect(data_dir / "aigw.db") as conn:
            conn.execute(
                "UPDATE kb_documents SET lease_owner = NULL, lease_until = '2000-01-01 00:00:00.000000' WHERE id = ?",
                (doc_id,),
            )
        wait_for_log(gw, '"attempt":2')
        doc = wait_ready(client, kb_id, doc_id, timeout=300)
        assert doc["status"] == "ready"
        with sqlite3.connect(data_dir / "aigw.db") as conn:
            rows = conn.execute("SELECT count(*) FROM kb_chunks WHERE document_id = ?", (doc_id,)).fetchone()[0]
            owner = conn.execute("SELECT user_id FROM kb_documents WHERE id = ?", (doc_id,)).fetchone()[0]
            fts = conn.execute(
                f"SELECT count(*) FROM kb_chunks_fts_{owner} "
                "WHERE rowid IN (SELECT id FROM kb_chunks WHERE document_id = ?)",
                (doc_id,),
            ).fetchone()[0]
        assert rows == fts == doc["chunks"] > 100
        # The first worker's late commit is refused, and it says so (it used to report the document ready too).
        wait_for_log(gw, "document lost to another worker")
        # The winner logs just after its commit shows the document ready: wait for its line, then count.
        ready_line = f'"msg":"document ready","document_id":{doc_id},'
        wait_for_log(gw, ready_line)
        assert gw.log().count(ready_line) == 1
    finally:
        gw.stop()
