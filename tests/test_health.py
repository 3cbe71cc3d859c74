from __future__ import annotations

from conftest import Gateway


def test_health_is_public_and_reports_services(gateway: Gateway) -> None:
    resp = gateway.client().get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["services"]["database"] is True
    assert all(isinstance(v, bool) for v in body["services"].values())


def test_answer_engine_healthz_get_and_post(gateway: Gateway) -> None:
    client = gateway.client()
    assert client.get("/api/healthz").json() == {"status": "ok"}
    assert client.post("/api/healthz").json() == {"status": "ok"}


def test_openapi_docs_are_served(gateway: Gateway) -> None:
    client = gateway.client()
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/auth/login", "/auth/logout", "/auth/me", "/api/keys", "/api/admin/usage", "/health"} <= set(paths)
