"""API keys (API.md rows 32-34, 40-42): shown once, stored hashed, owner-scoped, revocable at once."""

from __future__ import annotations

import re
import time

from conftest import Gateway


def test_created_key_is_aigw_base62_and_works(gateway: Gateway) -> None:
    user = gateway.new_user()
    resp = gateway.client(user.key).post("/api/keys", json={"name": "Production"})
    assert resp.status_code == 201
    body = resp.json()
    assert body["name"] == "Production" and isinstance(body["id"], int)
    assert re.fullmatch(r"aigw_[0-9A-Za-z]{43}", body["key"])  # 43 base62 digits hold 256 random bits
    assert body["key"].startswith(body["prefix"])
    assert gateway.client(body["key"]).get("/auth/me").json()["id"] == user.id


def test_listed_keys_never_show_the_secret(gateway: Gateway) -> None:
    user = gateway.new_user()
    secret = gateway.client(user.key).post("/api/keys", json={"name": "listed"}).json()["key"]
    for resp in (gateway.client(user.key).get("/api/keys"), gateway.admin().get("/api/admin/keys")):
        assert resp.status_code == 200
        assert secret not in resp.text and user.key not in resp.text
        assert secret[:13] in resp.text  # the display prefix is there, so a user can tell keys apart
    own = gateway.client(user.key).get("/api/keys").json()
    assert {k["name"] for k in own} == {"test", "listed"}
    assert set(own[0]) == {"id", "name", "prefix", "created_at", "last_used_at"}


def test_keys_are_stored_only_as_hashes(gateway: Gateway) -> None:
    user = gateway.new_user()
    gateway.client(user.key).get("/auth/me")
    dump = gateway.cli("key", "list", "--email", user.email)
    assert dump.returncode == 0, dump.stderr
    assert user.key not in dump.stdout and user.key[:13] in dump.stdout
    if "AIGW_DATABASE_URL" not in gateway.env:
        raw = b"".join(p.read_bytes() for p in gateway.data_dir.glob("aigw.db*"))
        assert user.key.encode() not in raw
        assert user.key[5:].encode() not in raw


def test_deleted_key_is_rejected_on_the_next_request(gateway: Gateway) -> None:
    user = gateway.new_user()
    client = gateway.client(user.key)
    spare = client.post("/api/keys", json={"name": "spare"}).json()
    spare_client = gateway.client(spare["key"])
    assert spare_client.get("/auth/me").status_code == 200  # warm the cache
    assert client.delete(f"/api/keys/{spare['id']}").json() == {"success": True}
    assert spare_client.get("/auth/me").status_code == 401
    assert client.get("/auth/me").status_code == 200


def test_users_cannot_see_or_delete_each_others_keys(gateway: Gateway) -> None:
    alice, bob = gateway.new_user(), gateway.new_user()
    bob_keys = gateway.client(bob.key).get("/api/keys").json()
    resp = gateway.client(alice.key).delete(f"/api/keys/{bob_keys[0]['id']}")
    assert resp.status_code == 404
    assert gateway.client(bob.key).get("/auth/me").status_code == 200
    assert [k["id"] for k in gateway.client(alice.key).get("/api/keys").json()] != [bob_keys[0]["id"]]


def test_last_used_at_follows_use(gateway: Gateway) -> None:
    user = gateway.new_user()
    client = gateway.client(user.key)
    fresh = gateway.admin().get("/api/admin/keys").json()
    assert next(k for k in fresh if k["user_id"] == user.id)["last_used_at"] is None
    client.get("/auth/me")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        used = client.get("/api/keys").json()[0]["last_used_at"]
        if used is not None:
            break
        time.sleep(0.1)
    assert used is not None


def test_admin_creates_lists_and_deletes_any_key(gateway: Gateway) -> None:
    user = gateway.new_user()
    admin = gateway.admin()
    made = admin.post("/api/admin/keys", json={"user_id": user.id, "name": "ops"})
    assert made.status_code == 201
    key = made.json()
    assert gateway.client(key["key"]).get("/auth/me").json()["id"] == user.id
    listed = {k["id"]: k for k in admin.get("/api/admin/keys").json()}
    assert listed[key["id"]]["user_id"] == user.id and listed[key["id"]]["email"] == user.email
    assert admin.delete(f"/api/admin/keys/{key['id']}").status_code == 200
    assert gateway.client(key["key"]).get("/auth/me").status_code == 401
    assert admin.delete(f"/api/admin/keys/{key['id']}").status_code == 404
    assert admin.post("/api/admin/keys", json={"user_id": 999999, "name": "x"}).status_code == 404
