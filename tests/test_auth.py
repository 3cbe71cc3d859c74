"""Login, sessions, logout and /auth/me (API.md rows 1-3)."""

from __future__ import annotations

from conftest import Gateway


def test_login_sets_httponly_samesite_session_cookie(gateway: Gateway) -> None:
    user = gateway.new_user(name="Ada")
    client = gateway.client()
    resp = client.post("/auth/login", json={"email": user.email, "password": user.password})
    assert resp.status_code == 200
    assert resp.json()["user"]["email"] == user.email
    assert resp.json()["user"]["role"] == "customer"
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith("aigw_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert client.get("/auth/me").json()["email"] == user.email


def test_me_with_api_key_returns_profile(gateway: Gateway) -> None:
    user = gateway.new_user(rate_limit=77, name="Grace")
    me = gateway.client(user.key).get("/auth/me")
    assert me.status_code == 200
    body = me.json()
    assert {k: body[k] for k in ("id", "email", "name", "role", "rate_limit", "active")} == {
        "id": user.id,
        "email": user.email,
        "name": "Grace",
        "role": "customer",
        "rate_limit": 77,
        "active": True,
    }
    assert body["created_at"].endswith("Z") or "+00:00" in body["created_at"]


def test_login_is_case_insensitive_on_email(gateway: Gateway) -> None:
    user = gateway.new_user()
    resp = gateway.client().post("/auth/login", json={"email": user.email.upper(), "password": user.password})
    assert resp.status_code == 200


def test_wrong_password_and_unknown_email_get_the_same_401(gateway: Gateway) -> None:
    user = gateway.new_user()
    client = gateway.client()
    wrong = client.post("/auth/login", json={"email": user.email, "password": "nope-nope"})
    unknown = client.post("/auth/login", json={"email": "nobody@example.com", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "Wrong email or password", "code": "invalid_credentials"}
    assert "set-cookie" not in wrong.headers


def test_logout_ends_the_server_side_session(gateway: Gateway) -> None:
    user = gateway.new_user()
    client = gateway.login(user.email, user.password)
    token = client.cookies["aigw_session"]
    resp = client.post("/auth/logout")
    assert resp.status_code == 200
    assert 'aigw_session=""' in resp.headers["set-cookie"] or "Max-Age=0" in resp.headers["set-cookie"]
    # Replaying the old cookie must fail: the session is gone on the server, not just in the browser.
    replay = gateway.client(cookies={"aigw_session": token})
    assert replay.get("/auth/me").status_code == 401


def test_no_credentials_and_bad_credentials_get_401(gateway: Gateway) -> None:
    assert gateway.client().get("/auth/me").json()["code"] == "unauthorized"
    for key in ("aigw_" + "x" * 43, "not-a-key", "aigw_"):
        resp = gateway.client(key).get("/auth/me")
        assert resp.status_code == 401, key
        assert resp.json()["code"] == "invalid_credentials"
    resp = gateway.client(cookies={"aigw_session": "forged"}).get("/auth/me")
    assert resp.status_code == 401


def test_repeated_login_attempts_are_rate_limited(gateway: Gateway) -> None:
    user = gateway.new_user()
    client = gateway.client()
    statuses = [
        client.post("/auth/login", json={"email": user.email, "password": "wrong-pass"}).status_code for _ in range(11)
    ]
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
    # The right password is refused too until the window passes: that is what stops guessing.
    resp = client.post("/auth/login", json={"email": user.email, "password": user.password})
    assert resp.status_code == 429 and "retry-after" in resp.headers


def test_cross_origin_cookie_request_is_refused(gateway: Gateway) -> None:
    user = gateway.new_user()
    client = gateway.login(user.email, user.password)
    evil = client.post("/api/keys", json={"name": "x"}, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and evil.json()["code"] == "csrf_origin"
    same = client.post("/api/keys", json={"name": "x"}, headers={"Origin": gateway.url})
    assert same.status_code == 201
    # Reads are not state-changing, and API keys are not ambient credentials: neither is checked.
    assert client.get("/auth/me", headers={"Origin": "https://evil.example"}).status_code == 200
    keyed = gateway.client(user.key).post("/api/keys", json={"name": "y"}, headers={"Origin": "https://evil.example"})
    assert keyed.status_code == 201
