"""The ingestion worker outlives what goes wrong around it: a database that goes away mid-document, and an
embedding engine that is busy or unreachable for a while. Only a document's own faults fail it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import asyncpg

from conftest import Gateway, start_gateway
from doubles.ollama import OllamaProtocolDouble
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
