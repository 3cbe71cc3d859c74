"""Each document records the embedding model of its vectors. A question is compared only with vectors of the
configured model, documents of another model stay findable by full text, the server and `aigw doctor` say so,
and `aigw kb reindex` brings them back into vector search, with the server running."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from conftest import start_gateway
from test_kb import query, upload, wait_ready

MODEL = "all-MiniLM-L6-v2"
OTHER = "ollama:nomic-embed-text"
LOG = b"The lighthouse keeper writes down the height of the tides every morning at six."


def relabel(database_url: str | None, data_dir: Path, doc_id: int) -> None:
    """Record the document as embedded by another model, as if the server had been configured with one."""
    sql = "UPDATE kb_documents SET embedding_model = '" + OTHER + "' WHERE id = " + str(int(doc_id))
    if database_url is None:
        with sqlite3.connect(data_dir / "aigw.db") as conn:
            conn.execute(sql)
        return

    async def run() -> None:
        conn = await asyncpg.connect(database_url.replace("postgresql://", "postgres://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_vectors_of_another_model_are_not_compared_until_reindexed(backend: str, tmp_path: Path, request: Any) -> None:
    database_url = request.getfixturevalue("postgres").new_database() if backend == "postgres" else None
    data_dir = tmp_path / "gw"
    env: dict[str, Any] = {"database_url": database_url} if database_url else {}
    gw = start_gateway(data_dir, **env)
    try:
        user = gw.new_user(rate_limit=1_000_000)
        client = gw.client(user.key)
        kb_id = client.post("/api/kb", json={"name": "Harbour"}).json()["id"]
        doc_id = upload(client, kb_id, "log.txt", LOG).json()["id"]
        other_id = upload(client, kb_id, "canteen.txt", b"The canteen opens at eight and closes at three.").json()["id"]
        assert wait_ready(client, kb_id, doc_id)["embedding_model"] == MODEL
        assert wait_ready(client, kb_id, other_id)["embedding_model"] == MODEL
        by_meaning = query(client, kb_id, "who records sea levels?", mode="vector", top_k=5)
        assert {hit["document_id"] for hit in by_meaning} == {doc_id, other_id}
    finally:
        gw.stop()

    relabel(database_url, data_dir, doc_id)
    gw = start_gateway(data_dir, **env)
    try:
        client = gw.client(user.key)
        assert client.get(f"/api/kb/{kb_id}/documents/{doc_id}").json()["embedding_model"] == OTHER
        # Not compared with a question of the configured model, in any mode that uses vectors...
        assert {hit["document_id"] for hit in query(client, kb_id, "who records sea levels?", mode="vector")} == {
            other_id
        }
        hybrid = query(client, kb_id, "who records sea levels?")
        assert doc_id not in {hit["document_id"] for hit in hybrid}
        # ...but still found by its words.
        assert [hit["document_id"] for hit in query(client, kb_id, "lighthouse tides", mode="fulltext")] == [doc_id]
        assert "documents of another embedding model" in gw.log()
        doctor = gw.cli("doctor")
        assert doctor.returncode == 0, doctor.stderr
        assert f"1 documents in 1 knowledge bases were embedded with {OTHER}, not {MODEL}" in doctor.stdout

        reindexed = gw.cli("kb", "reindex")
        assert reindexed.returncode == 0, reindexed.stderr
        assert f"re-embedding 1 documents (1 chunks) with {MODEL}" in reindexed.stdout
        assert f"re-embedded 1 documents with {MODEL}" in reindexed.stdout
        # The running server sees the new vectors at once.
        assert client.get(f"/api/kb/{kb_id}/documents/{doc_id}").json()["embedding_model"] == MODEL
        found = query(client, kb_id, "who records sea levels?", mode="vector", top_k=5)
        assert found[0]["document_id"] == doc_id and "lighthouse" in found[0]["content"]
        assert [hit["document_id"] for hit in query(client, kb_id, "lighthouse tides", mode="fulltext")] == [doc_id]
        again = gw.cli("kb", "reindex")
        assert again.returncode == 0 and f"every document is embedded with {MODEL}" in again.stdout
        assert "were embedded with" not in gw.cli("doctor").stdout
    finally:
        gw.stop()
