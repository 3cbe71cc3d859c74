"""Admin endpoints (API.md rows 35-42): users, usage, keys; customers get 403 on every one."""

from __future__ import annotations

import re
import time

import pytest

from conftest import Gateway


def admin_routes(gateway: Gateway) -> list[tuple[str, str]]:
    spec = gateway.client().get("/openapi.json").json()
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
        for path, ops in spec["paths"].items()
        if path.startswith("/api/admin")
        for method in ops
    ]


def test_customer_gets_403_on_every_admin_endpoint(gateway: Gateway) -> None:
    user = gateway.new_user()
    routes = admin_routes(gateway)
    assert len(routes) >= 8
    client = gateway.client(user.key)
    for method, path in routes:
        resp = client.request(method, path, json={})
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["code"] == "admin_required"
    anonymous = gateway.client()
    for method, path in routes:
        assert anonymous.request(method, path, json={}).status_code == 401, (method, path)


def test_admin_creates_user_who_can_log_in(gateway: Gateway) -> None:
    admin = gateway.admin()
    resp = admin.post(
        "/api/admin/users",
        json={
            "email": "New.Person@Example.com",
            "password": "s3cret-pass",
            "name": "New",
            "role": "customer",
            "rate_limit": 30,
        },
    )
    assert resp.status_code == 201, resp.text
    user = resp.json()
    assert user["email"] == "new.person@example.com" and user["rate_limit"] == 30 and user["active"] is True
    assert gateway.login("new.person@example.com", "s3cret-pass").get("/auth/me").json()["id"] == user["id"]
    assert any(u["id"] == user["id"] for u in admin.get("/api/admin/users").json())
    dup = admin.post("/api/admin/users", json={"email": "new.person@example.com", "password": "another-pass"})
    assert dup.status_code == 409 and dup.json()["code"] == "email_taken"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": "long-enough"},
        {"email": "a@example.com", "password": "short"},
        {"email": "b@example.com", "password": "long-enough", "role": "superuser"},
        {"email": "c@example.com", "password": "long-enough", "rate_limit": 0},
        {"email": "d@example.com", "password": "long-enough", "rate_limit": "many"},
        {"email": "e@example.com", "password": "long-enough", "colour": "blue"},
        {"password": "long-enough"},
    ],
)
def test_invalid_user_fields_get_422(gateway: Gateway, body: dict[str, object]) -> None:
    resp = gateway.admin().post("/api/admin/users", json=body)
    assert resp.status_code == 422, resp.text
    assert set(resp.json()) == {"error", "code"}


def test_admin_updates_name_role_limit_and_password(gateway: Gateway) -> None:
    user = gateway.new_user()
    admin = gateway.admin()
    resp = admin.put(f"/api/admin/users/{user.id}", json={"name": "Renamed", "rate_limit": 5, "role": "admin"})
    assert resp.status_code == 200
    assert (resp.json()["name"], resp.json()["rate_limit"], resp.json()["role"]) == ("Renamed", 5, "admin")
    # The change is visible on the very next request made with the user's existing key.
    me = gateway.client(user.key).get("/auth/me").json()
    assert (me["name"], me["rate_limit"], me["role"]) == ("Renamed", 5, "admin")
    assert gateway.client(user.key).get("/api/admin/users").status_code == 200
    admin.put(f"/api/admin/users/{user.id}", json={"password": "brand-new-pass"})
    old = gateway.client().post("/auth/login", json={"email": user.email, "password": user.password})
    assert old.status_code == 401
    assert gateway.login(user.email, "brand-new-pass").get("/auth/me").status_code == 200
    assert admin.put("/api/admin/users/999999", json={"name": "x"}).status_code == 404


def test_deactivated_user_key_and_session_are_rejected_on_next_request(gateway: Gateway) -> None:
    user = gateway.new_user()
    keyed = gateway.client(user.key)
    session = gateway.login(user.email, user.password)
    assert keyed.get("/auth/me").status_code == 200 and session.get("/auth/me").status_code == 200
    resp = gateway.admin().delete(f"/api/admin/users/{user.id}")
    assert resp.status_code == 200 and resp.json()["active"] is False
    assert keyed.get("/auth/me").status_code == 401
    assert session.get("/auth/me").status_code == 401
    login = gateway.client().post("/auth/login", json={"email": user.email, "password": user.password})
    assert login.status_code == 401
    # Reactivation does not resurrect the ended keys.
    gateway.admin().put(f"/api/admin/users/{user.id}", json={"active": True})
    assert keyed.get("/auth/me").status_code == 401
    assert gateway.login(user.email, user.password).get("/auth/me").status_code == 200


def test_last_active_admin_cannot_be_removed(gateway: Gateway) -> None:
    admin = gateway.admin()
    me = admin.get("/auth/me").json()
    others = [
        u for u in admin.get("/api/admin/users").json() if u["role"] == "admin" and u["active"] and u["id"] != me["id"]
    ]
    for other in others:  # leave exactly one active admin
        admin.put(f"/api/admin/users/{other['id']}", json={"role": "customer"})
    resp = admin.delete(f"/api/admin/users/{me['id']}")
    assert resp.status_code == 409 and resp.json()["code"] == "last_admin"
    assert admin.put(f"/api/admin/users/{me['id']}", json={"role": "customer"}).status_code == 409
    assert admin.get("/auth/me").json()["role"] == "admin"


def test_usage_counts_calls_per_user_and_endpoint(gateway: Gateway) -> None:
    user = gateway.new_user()
    client = gateway.client(user.key)
    for _ in range(3):
        client.get("/auth/me")
    client.get("/api/keys")
    client.delete("/api/keys/999999")
    deadline = time.monotonic() + 10
    while True:
        rows = gateway.admin().get("/api/admin/usage", params={"period": "24h"}).json()
        mine = {r["endpoint"]: r for r in rows if r["user_id"] == user.id}
        if mine.get("/auth/me", {}).get("count") == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine["/auth/me"]["count"] == 3
    assert mine["/auth/me"]["email"] == user.email
    assert mine["/api/keys"]["count"] == 1
    assert mine["/api/keys/{key_id}"]["count"] == 1  # the route template, not the raw path
    assert {"user_id", "email", "endpoint", "count"} <= set(mine["/auth/me"])
    for period in ("7d", "30d"):
        assert gateway.admin().get("/api/admin/usage", params={"period": period}).status_code == 200
    assert gateway.admin().get("/api/admin/usage", params={"period": "1y"}).status_code == 422
