"""Knowledge bases over real HTTP, on SQLite and on PostgreSQL+pgvector: CRUD, every ingestible format,
hybrid retrieval, tags, isolation between users, limits and deletion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

import conftest
from conftest import MAX_BODY, Gateway, gateway_on
from doubles.ollama import ServerThread
from kb_files import FACTS, document, html_document


def wait_ready(client: httpx.Client, kb_id: int, doc_id: int, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = client.get(f"/api/kb/{kb_id}/documents/{doc_id}").json()
        if doc["status"] != "processing":
            return doc
        assert time.monotonic() < deadline, f"document {doc_id} still processing"
        time.sleep(0.2)


def upload(client: httpx.Client, kb_id: int, name: str, data: bytes, **form: str) -> httpx.Response:
    return client.post(f"/api/kb/{kb_id}/documents", files={"file": (name, data)}, data=form)


def query(client: httpx.Client, kb_id: int, text: str, **extra: Any) -> list[dict[str, Any]]:
    resp = client.post(f"/api/kb/{kb_id}/query", json={"query": text, **extra})
    assert resp.status_code == 200, resp.text
    results: list[dict[str, Any]] = resp.json()["results"]
    return results


RUSSIAN = "Стажёры получают двенадцать дней оплачиваемого отпуска в год. Заявление подаётся за две недели."
JAPANESE = "インターンは年に十二日の有給休暇を取得できます。申請は二週間前までに行ってください。"


def site_app() -> Starlette:
    async def faq(_: Request) -> Response:
        return Response(html_document(), media_type="text/html; charset=utf-8")

    async def to_private(_: Request) -> Response:
        return RedirectResponse("http://10.0.0.1/faq", status_code=302)

    async def to_metadata(_: Request) -> Response:
        return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=301)

    async def image(_: Request) -> Response:
        return Response(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, media_type="image/png")

    async def cyrillic(_: Request) -> Response:  # the charset is declared in the header only
        page = f"<html><head><title>Отпуск</title></head><body><p>{RUSSIAN}</p></body></html>"
        return Response(page.encode("windows-1251"), headers={"Content-Type": "text/html; charset=windows-1251"})

    async def japanese(_: Request) -> Response:  # the charset is declared in the page only
        page = f'<html><head><meta charset="shift_jis"><title>休暇</title></head><body><p>{JAPANESE}</p></body></html>'
        return Response(page.encode("shift_jis"), headers={"Content-Type": "text/html"})

    return Starlette(
        routes=[
            Route("/faq", faq),
            Route("/to-private", to_private),
            Route("/to-metadata", to_metadata),
            Route("/image", image),
            Route("/cyrillic", cyrillic),
            Route("/japanese", japanese),
        ]
    )


@pytest.fixture(scope="module")
def site() -> Iterator[ServerThread]:
    server = ServerThread(site_app())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def kb_gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway that may fetch from 127.0.0.1 (the explicit test setting) for the URL-ingestion tests."""
    gw = gateway_on(request, tmp_path_factory, "gw-kb", AIGW_KB_FETCH_ALLOW='["127.0.0.1/32"]')
    yield gw
    gw.stop()


@dataclass
class PlantedKb:
    user: conftest.TestUser
    client: httpx.Client
    kb_id: int
    documents: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def planted(kb_gateway: Gateway, site: ServerThread) -> PlantedKb:
    """One KB holding a document of every format, each with its own planted fact."""
    user = kb_gateway.new_user()
    client = kb_gateway.client(user.key)
    kb_id = client.post("/api/kb", json={"name": "Company", "description": "everything"}).json()["id"]
    queued = {}
    for fmt in FACTS:
        if fmt == "url":
            resp = client.post(f"/api/kb/{kb_id}/documents", data={"url": f"{site.url}/faq", "tags": "billing,faq"})
        else:
            name, data = document(fmt)
            resp = upload(client, kb_id, name, data, **({"language": "en"} if fmt in ("png", "tiff") else {}))
        assert resp.status_code == 202, resp.text
        assert resp.json()["status"] == "processing"
        queued[fmt] = resp.json()["id"]
    documents = {fmt: wait_ready(client, kb_id, doc_id) for fmt, doc_id in queued.items()}
    return PlantedKb(user, client, kb_id, documents)


@pytest.mark.parametrize("fmt", list(FACTS))
def test_each_format_is_ingested_and_its_planted_fact_is_the_top_result(planted: PlantedKb, fmt: str) -> None:
    doc = planted.documents[fmt]
    assert doc["status"] == "ready", doc
    assert doc["chunks"] >= 1 and doc["error"] is None
    fact = FACTS[fmt]
    results = query(planted.client, planted.kb_id, fact.question)
    top = results[0]
    assert top["document_id"] == doc["id"], (fmt, results[:3])
    assert fact.answer in top["content"].lower()
    assert top["source"] == (doc["url"] if fmt == "url" else fact.name)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_document_list_reports_type_size_tags_and_chunks(planted: PlantedKb) -> None:
    listed = planted.client.get(f"/api/kb/{planted.kb_id}/documents").json()
    by_id = {d["id"]: d for d in listed}
    assert len(by_id) == len(FACTS)
    url_doc = by_id[planted.documents["url"]["id"]]
    assert url_doc["type"] == "html" and url_doc["filename"] is None and url_doc["url"].endswith("/faq")
    assert url_doc["tags"] == ["billing", "faq"]
    pdf = by_id[planted.documents["pdf"]["id"]]
    assert pdf["type"] == "pdf" and pdf["filename"] == "pricing.pdf" and pdf["size"] > 500
    kbs = planted.client.get("/api/kb").json()
    assert kbs == [
        {
            "id": planted.kb_id,
            "name": "Company",
            "description": "everything",
            "doc_count": len(FACTS),
            "created_at": kbs[0]["created_at"],
        }
    ]


def test_results_keep_page_and_row(planted: PlantedKb) -> None:
    pdf_hit = query(planted.client, planted.kb_id, FACTS["pdf"].question)[0]
    assert pdf_hit["page"] == 2
    csv_hit = query(planted.client, planted.kb_id, FACTS["csv"].question)[0]
    assert csv_hit["row"] is not None and csv_hit["row"] <= 43
    assert "ZX-900" in csv_hit["content"] and "price_eur" in csv_hit["content"]  # the header travels with rows


def test_each_retrieval_mode_answers(planted: PlantedKb) -> None:
    for mode in ("fulltext", "vector", "hybrid"):
        results = query(planted.client, planted.kb_id, "staging server Bluefin", mode=mode, top_k=3)
        assert results and "orca" in results[0]["content"].lower(), mode


def test_tags_filter_inside_the_query(planted: PlantedKb) -> None:
    question = FACTS["url"].question
    only_faq = query(planted.client, planted.kb_id, question, include_tags=["faq"], top_k=10)
    assert only_faq and {r["document_id"] for r in only_faq} == {planted.documents["url"]["id"]}
    without = query(planted.client, planted.kb_id, question, exclude_tags=["billing"], top_k=10)
    assert planted.documents["url"]["id"] not in {r["document_id"] for r in without}
    assert query(planted.client, planted.kb_id, question, include_tags=["nope"]) == []


def test_another_user_gets_404_on_every_kb_route(planted: PlantedKb, kb_gateway: Gateway) -> None:
    other = kb_gateway.client(kb_gateway.new_user().key)
    kb, doc = planted.kb_id, planted.documents["txt"]["id"]
    assert other.get("/api/kb").json() == []
    responses = [
        other.get(f"/api/kb/{kb}/documents"),
        other.get(f"/api/kb/{kb}/documents/{doc}"),
        other.post(f"/api/kb/{kb}/documents", files={"file": ("a.txt", b"hello there")}),
        other.post(f"/api/kb/{kb}/query", json={"query": "orca"}),
        other.delete(f"/api/kb/{kb}/documents/{doc}"),
        other.delete(f"/api/kb/{kb}"),
    ]
    for resp in responses:
        assert resp.status_code == 404, (resp.request.url, resp.text)
        assert resp.json()["code"] in ("kb_not_found", "document_not_found")
    # A KB of their own does not reach into another user's documents either.
    own = other.post("/api/kb", json={"name": "mine"}).json()["id"]
    assert query(other, own, FACTS["txt"].question) == []
    assert planted.client.get(f"/api/kb/{kb}/documents/{doc}").status_code == 200


def test_admin_lists_every_kb_with_its_owner(planted: PlantedKb, kb_gateway: Gateway) -> None:
    listed = kb_gateway.admin().get("/api/admin/kb").json()
    mine = next(kb for kb in listed if kb["id"] == planted.kb_id)
    assert mine["owner_email"] == planted.user.email and mine["user_id"] == planted.user.id
    assert mine["doc_count"] == len(FACTS)
    assert planted.client.get("/api/admin/kb").status_code == 403


def test_kb_create_validates_and_delete_removes_everything(kb_gateway: Gateway) -> None:
    client = kb_gateway.client(kb_gateway.new_user().key)
    assert client.post("/api/kb", json={}).status_code == 422
    assert client.post("/api/kb", json={"name": ""}).status_code == 422
    kb = client.post("/api/kb", json={"name": "Temp"})
    assert kb.status_code == 201 and kb.json()["doc_count"] == 0
    kb_id = kb.json()["id"]
    doc_id = upload(client, kb_id, "a.txt", b"The cafeteria serves lasagne on Tuesdays.").json()["id"]
    assert wait_ready(client, kb_id, doc_id)["status"] == "ready"
    assert query(client, kb_id, "lasagne")
    assert client.delete(f"/api/kb/{kb_id}").json() == {"success": True}
    assert client.get(f"/api/kb/{kb_id}/documents").status_code == 404
    assert client.get("/api/kb").json() == []
    files = list((kb_gateway.data_dir / "kb" / "files").iterdir())
    assert all(f.stat().st_size != len(b"The cafeteria serves lasagne on Tuesdays.") for f in files)


def test_deleting_a_document_removes_its_chunks(kb_gateway: Gateway) -> None:
    client = kb_gateway.client(kb_gateway.new_user().key)
    kb_id = client.post("/api/kb", json={"name": "Menu"}).json()["id"]
    keep = upload(client, kb_id, "keep.txt", b"The espresso machine is descaled every Monday.").json()["id"]
    gone = upload(client, kb_id, "gone.txt", b"The espresso beans come from a roaster in Lisbon.").json()["id"]
    wait_ready(client, kb_id, keep)
    wait_ready(client, kb_id, gone)
    assert {r["document_id"] for r in query(client, kb_id, "espresso", top_k=10)} == {keep, gone}
    assert client.delete(f"/api/kb/{kb_id}/documents/{gone}").json() == {"success": True}
    for mode in ("fulltext", "vector", "hybrid"):
        assert {r["document_id"] for r in query(client, kb_id, "espresso roaster", top_k=10, mode=mode)} == {keep}
    assert client.get(f"/api/kb/{kb_id}/documents/{gone}").status_code == 404
    assert client.delete(f"/api/kb/{kb_id}/documents/{gone}").status_code == 404


def test_bad_uploads_get_clear_4xx(kb_gateway: Gateway) -> None:
    client = kb_gateway.client(kb_gateway.new_user().key)
    kb_id = client.post("/api/kb", json={"name": "Limits"}).json()["id"]
    checks = [
        (upload(client, kb_id, "big.txt", b"a" * (MAX_BODY + 1)), 413),
        (upload(client, kb_id, "archive.txt", b"PK\x03\x04" + b"\0" * 200), 415),
        (upload(client, kb_id, "program.pdf", b"\x7fELF\x02\x01\x01" + b"\0" * 200), 415),
        (upload(client, kb_id, "empty.txt", b""), 422),
        (upload(client, kb_id, "a.png", b"hello", language="klingon"), 422),
        (client.post(f"/api/kb/{kb_id}/documents", data={"language": "en"}), 422),
        (client.post(f"/api/kb/{kb_id}/documents", files={"file": ("a.txt", b"x")}, data={"url": "http://a.b/"}), 422),
        (client.post(f"/api/kb/{kb_id}/documents", data={"url": "http://127.0.0.1/", "tags": "[1, 2]"}), 422),
        (client.post(f"/api/kb/{kb_id}/query", json={"query": ""}), 422),
        (client.post(f"/api/kb/{kb_id}/query", json={"query": "x", "top_k": 500}), 422),
        (client.post(f"/api/kb/{kb_id}/query", json={"query": "x", "mode": "magic"}), 422),
    ]
    for resp, status in checks:
        assert resp.status_code == status, (resp.request.url, resp.text)
        body = resp.json()
        assert set(body) == {"error", "code"} and body["error"]
    assert client.get(f"/api/kb/{kb_id}/documents").json() == []


def test_text_in_other_charsets_is_read_as_written(kb_gateway: Gateway, site: ServerThread) -> None:
    """A page's charset comes from its header or its <meta>; an upload that declares none is detected."""
    client = kb_gateway.client(kb_gateway.new_user().key)
    for path, expected in (("/cyrillic", RUSSIAN), ("/japanese", JAPANESE), (None, RUSSIAN)):
        kb_id = client.post("/api/kb", json={"name": f"charset {path}"}).json()["id"]
        if path is None:
            resp = upload(client, kb_id, "notes.txt", (RUSSIAN + "\n").encode("windows-1251") * 3)
        else:
            resp = client.post(f"/api/kb/{kb_id}/documents", data={"url": site.url + path})
        assert resp.status_code == 202, resp.text
        assert wait_ready(client, kb_id, resp.json()["id"])["status"] == "ready"
        [hit] = query(client, kb_id, expected[:20], top_k=1)
        assert expected[:40] in hit["content"], (path, hit["content"])


def test_a_document_without_text_fails_with_a_reason(kb_gateway: Gateway) -> None:
    client = kb_gateway.client(kb_gateway.new_user().key)
    kb_id = client.post("/api/kb", json={"name": "Blank"}).json()["id"]
    import io

    from kb_files import text_image

    blank = io.BytesIO()
    text_image([]).save(blank, format="PNG")
    doc = wait_ready(client, kb_id, upload(client, kb_id, "blank.png", blank.getvalue()).json()["id"])
    assert doc["status"] == "failed" and "text" in doc["error"].lower()


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/to-private", 422, "url_not_allowed"),
        ("/to-metadata", 422, "url_not_allowed"),
        ("/image", 415, "unsupported_url_content"),
    ],
)
def test_url_ingestion_refuses_redirects_to_internal_addresses(
    kb_gateway: Gateway, site: ServerThread, path: str, status: int, code: str
) -> None:
    client = kb_gateway.client(kb_gateway.new_user().key)
    kb_id = client.post("/api/kb", json={"name": "Web"}).json()["id"]
    resp = client.post(f"/api/kb/{kb_id}/documents", data={"url": site.url + path})
    assert (resp.status_code, resp.json()["code"]) == (status, code), resp.text
    assert client.get(f"/api/kb/{kb_id}/documents").json() == []
