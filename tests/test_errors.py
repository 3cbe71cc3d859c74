"""Bad input gets a clear 4xx JSON error, never a 500 or a hang."""

from __future__ import annotations

import re

import httpx
import pytest

from conftest import MAX_BODY, Gateway


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "code"} and body["error"]
    if code is not None:
        assert body["code"] == code


def test_malformed_json_is_400(gateway: Gateway) -> None:
    resp = gateway.client().post("/auth/login", content=b'{"email": ', headers={"content-type": "application/json"})
    assert_error(resp, 400, "malformed_json")


def test_wrong_types_are_422(gateway: Gateway) -> None:
    user = gateway.new_user()
    assert_error(gateway.client(user.key).post("/api/keys", json={"name": 5}), 422, "invalid")
    assert_error(gateway.client(user.key).post("/api/keys", json=["name"]), 422, "invalid")
    assert_error(gateway.client(user.key).post("/api/keys", json={}), 422, "invalid")


def test_unknown_ids_are_404_and_absurd_ids_422(gateway: Gateway) -> None:
    user = gateway.new_user()
    client = gateway.client(user.key)
    assert_error(client.delete("/api/keys/424242"), 404, "not_found")
    assert_error(client.delete("/api/keys/99999999999999999999999"), 422)
    assert_error(client.delete("/api/keys/-1"), 422)
    assert_error(client.delete("/api/keys/abc"), 422)


def test_unknown_path_and_method_are_json(gateway: Gateway) -> None:
    assert_error(gateway.client().get("/no/such/thing"), 404, "not_found")
    assert_error(gateway.client().delete("/health"), 405, "method_not_allowed")


def test_oversized_body_is_413(gateway: Gateway) -> None:
    user = gateway.new_user()
    big = b'{"name": "' + b"x" * (MAX_BODY + 10) + b'"}'
    client = gateway.client(user.key)
    assert_error(client.post("/api/keys", content=big, headers={"content-type": "application/json"}), 413)

    def chunks():  # no Content-Length: the limit must hold while streaming too
        yield b'{"name": "'
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    assert_error(client.post("/api/keys", content=chunks(), headers={"content-type": "application/json"}), 413)
    assert client.get("/auth/me").status_code == 200


GARBAGE = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b'"x"',
    b"1e999",
    b'{"a":' * 50,
    b"\xff\xfe",
    b'{"email": null}',
    b'{"name": {"$gt": ""}}',
    b'{"user_id": 1e30, "name": "x"}',
    b'{"rate_limit": -5}',
]


@pytest.mark.parametrize("as_admin", [False, True])
def test_garbage_bodies_never_cause_500(gateway: Gateway, as_admin: bool) -> None:
    spec = gateway.client().get("/openapi.json").json()
    client = gateway.admin() if as_admin else gateway.client(gateway.new_user().key)
    for path, ops in spec["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in ops:
            if method.upper() not in ("POST", "PUT") or concrete == "/auth/logout":
                continue
            for body in GARBAGE:
                resp = client.request(
                    method.upper(), concrete, content=body, headers={"content-type": "application/json"}
                )
                assert resp.status_code < 500, (method, path, body, resp.text)
