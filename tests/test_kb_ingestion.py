"""Knowledge-base ingestion through the API: the SSRF corpus is refused, ingestion survives a killed server, and
chat answers with the user's knowledge (sources in `done`) only when it is relevant."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from conftest import Gateway, start_gateway
from kb_files import FACTS, document, filler
from test_chat import chat, sse_events
from test_kb import query, upload, wait_ready

# Every one of these must be refused before any connection is made (no internet is needed to refuse them).
SSRF_CORPUS = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/admin",
    "http://127.1/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[0:0:0:0:0:ffff:7f00:1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/",
    "http://10.0.0.1/",
    "http://10.255.255.254/",
    "http://172.16.0.1/",
    "http://172.31.255.1/",
    "http://192.168.0.1/",
    "http://192.168.1.1:3000/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://[fd12:3456::1]/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://localhost/",
    "http://localhost:8080/",
    "http://api.localhost/",
    "http://user:secret@10.0.0.1/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_stats",
    "ftp://10.0.0.1/pub/",
    "dict://127.0.0.1:11211/stats",
    "data:text/plain,hello",
    "javascript:alert(1)",
    "http:///no-host",
    "https://[64:ff9b::7f00:1]/",
]


@pytest.mark.parametrize("url", SSRF_CORPUS)
def test_ssrf_corpus_is_refused(gateway: Gateway, url: str) -> None:
    client = gateway.client(gateway.admin_key)
    kb_id = _kb(gateway)
    resp = client.post(f"/api/kb/{kb_id}/documents", data={"url": url})
    assert 400 <= resp.status_code < 500, (url, resp.status_code, resp.text)
    assert resp.json()["code"] in ("url_not_allowed", "bad_request", "invalid"), resp.text


_kbs: dict[str, int] = {}


def _kb(gw: Gateway) -> int:
    if gw.url not in _kbs:
        _kbs[gw.url] = gw.admin().post("/api/kb", json={"name": "ssrf"}).json()["id"]
    return _kbs[gw.url]


def _chunk_rows(data_dir: Path, database_url: str | None, doc_id: int) -> int:
    sql = "SELECT count(*) FROM kb_chunks WHERE document_id = " + str(int(doc_id))
    if database_url is None:
        with sqlite3.connect(data_dir / "aigw.db") as conn:
            return int(conn.execute(sql).fetchone()[0])

    async def count() -> int:
        conn = await asyncpg.connect(database_url.replace("postgresql://", "postgres://"))
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(count())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_killed_ingestion_resumes_after_restart(backend: str, tmp_path: Path, request: Any) -> None:
    """Killed mid-embedding (as the document itself reports it, however fast or busy the machine is), the server
    leaves nothing half-written, and after a restart the document is taken up again and finished."""
    data_dir = tmp_path / "gw"
    database_url = request.getfixturevalue("postgres").new_database() if backend == "postgres" else None
    env: dict[str, Any] = {"AIGW_KB_JOB_LEASE_SECONDS": "2", "AIGW_MAX_BODY_BYTES": str(4 * 1024 * 1024)}
    if database_url:
        env["database_url"] = database_url
    gw = start_gateway(data_dir, **env)
    client = gw.client(gw.new_user(rate_limit=1_000_000).key)  # polled many times a second below
    kb_id = client.post("/api/kb", json={"name": "Big"}).json()["id"]
    paragraphs = filler(900)
    paragraphs.insert(700, "The backup generator in building C is tested on the first Monday of each month.")
    resp = upload(client, kb_id, "big.txt", "\n\n".join(paragraphs).encode())
    assert resp.status_code == 202
    doc_id = resp.json()["id"]
    deadline = time.monotonic() + 300
    while True:
        doc = client.get(f"/api/kb/{kb_id}/documents/{doc_id}").json()
        assert doc["status"] == "processing", doc
        progress = doc["progress"] or {}
        if doc["stage"] == "embedding" and 0 < progress["done"] < progress["total"]:
            break
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.05)
    os.killpg(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait()
    gw.stop()  # closes the test's clients; the server is already gone
    assert _chunk_rows(data_dir, database_url, doc_id) == 0  # nothing half-written is searchable

    restarted = start_gateway(data_dir, **env)
    try:
        again = restarted.client(client.headers["Authorization"].split()[1])
        doc = wait_ready(again, kb_id, doc_id, timeout=300)
        assert doc["status"] == "ready" and doc["chunks"] > 100
        assert _chunk_rows(data_dir, database_url, doc_id) == doc["chunks"]
        hits = query(again, kb_id, "When is the backup generator tested?")
        assert "generator" in hits[0]["content"]
    finally:
        restarted.stop()


@pytest.fixture(scope="module")
def rag_gateway(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Any:
    models = [{"name": "qwen2.5-coder-0.5b", "backends": [{"engine": "llama", "n_ctx": 4096}]}]
    gw = start_gateway(
        tmp_path_factory.mktemp("gw-rag"),
        AIGW_MODELS_DIR=str(models_dir),
        AIGW_CHAT_MODELS=json.dumps(models),
        AIGW_PRELOAD_MODELS="true",
    )
    yield gw
    gw.stop()


def test_chat_answers_from_the_knowledge_base_and_reports_sources(rag_gateway: Gateway) -> None:
    user = rag_gateway.new_user()
    client = rag_gateway.client(user.key)
    kb_id = client.post("/api/kb", json={"name": "Ops"}).json()["id"]
    name, data = document("txt")
    doc_id = upload(client, kb_id, name, data).json()["id"]
    wait_ready(client, kb_id, doc_id)

    body = {"messages": [{"role": "user", "content": FACTS["txt"].question}], "options": {"temperature": 0}}
    events = sse_events(chat(rag_gateway, user.key, body))
    answer = "".join(data["content"] for event, data in events if event == "token")
    done = events[-1][1]
    assert events[-1][0] == "done"
    assert done["sources"][0]["document_id"] == doc_id and done["sources"][0]["source"] == name
    assert "orca" in answer.lower(), answer
    # Only the sentences around the fact are injected, not its whole chunk of filler, within the default budget.
    assert "orca-17" in done["sources"][0]["excerpt"] and len(done["sources"][0]["excerpt"]) <= 450
    assert sum(len(s["excerpt"]) for s in done["sources"]) <= 700

    # Small talk is not about the KB: nothing is injected and no sources are reported.
    hello = sse_events(chat(rag_gateway, user.key, {"messages": [{"role": "user", "content": "Hello!"}]}))
    assert "sources" not in hello[-1][1]

    # Another user's chat never sees this user's knowledge, even when their own knowledge base is searched:
    # the stranger's KB holds a near copy of the document with the fact taken out.
    stranger = rag_gateway.new_user()
    strangers = rag_gateway.client(stranger.key)
    their_kb = strangers.post("/api/kb", json={"name": "Ops"}).json()["id"]
    their_doc = data.replace(b"orca-17", b"(not recorded)")
    assert their_doc != data
    their_id = upload(strangers, their_kb, name, their_doc).json()["id"]
    wait_ready(strangers, their_kb, their_id)
    theirs = sse_events(chat(rag_gateway, stranger.key, body))
    their_sources = theirs[-1][1].get("sources", [])
    assert their_sources, "the stranger's own KB is searched"
    assert {s["document_id"] for s in their_sources} == {their_id}
    assert "orca-17" not in json.dumps(theirs)
