"""The `aigw` command against the same data dir and database as a running server."""

from __future__ import annotations

import uuid

from conftest import Gateway


def test_user_create_list_set_role_deactivate(gateway: Gateway) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    made = gateway.cli("user", "create", email, "--password", "cli-password", "--name", "Cli", "--rate-limit", "42")
    assert made.returncode == 0, made.stderr
    listed = gateway.cli("user", "list")
    line = next(row for row in listed.stdout.splitlines() if email in row)
    assert "customer" in line and "42" in line
    client = gateway.login(email, "cli-password")
    assert client.get("/auth/me").json()["rate_limit"] == 42

    assert gateway.cli("user", "set-role", email, "admin").returncode == 0
    assert client.get("/api/admin/users").status_code == 200  # the running server sees it at once

    assert gateway.cli("user", "deactivate", email).returncode == 0
    assert client.get("/auth/me").status_code == 401

    again = gateway.cli("user", "create", email, "--password", "cli-password")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert gateway.cli("user", "set-role", email, "root").returncode != 0
    assert gateway.cli("user", "deactivate", "ghost@example.com").returncode == 1


def test_user_create_prompts_for_password(gateway: Gateway) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    made = gateway.cli("user", "create", email, input="prompted-pass\nprompted-pass\n")
    assert made.returncode == 0, made.stderr
    assert gateway.login(email, "prompted-pass").get("/auth/me").status_code == 200


def test_key_create_prints_a_working_key_once(gateway: Gateway) -> None:
    user = gateway.new_user()
    made = gateway.cli("key", "create", user.email, "--name", "from-cli")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("aigw_") and "not shown again" in made.stderr
    assert gateway.client(key).get("/auth/me").json()["id"] == user.id
    listed = gateway.cli("key", "list", "--email", user.email).stdout
    assert "from-cli" in listed and key not in listed and key[:13] in listed
    key_id = next(k["id"] for k in gateway.client(key).get("/api/keys").json() if k["name"] == "from-cli")
    assert gateway.cli("key", "revoke", str(key_id)).returncode == 0
    assert gateway.client(key).get("/auth/me").status_code == 401
    assert gateway.cli("key", "revoke", str(key_id)).returncode == 1


def test_doctor_reports_services_and_packages(gateway: Gateway) -> None:
    out = gateway.cli("doctor")
    assert out.returncode == 0, out.stderr
    assert "database" in out.stdout and "ok" in out.stdout
    assert "redis-server" in out.stdout and "llama_cpp" in out.stdout


def test_settings_come_from_aigw_toml_and_env_wins(gateway: Gateway) -> None:
    config = gateway.data_dir / "custom.toml"
    config.write_text("default_rate_limit = 33\nsession_ttl_hours = 5\n")
    email = f"toml-{uuid.uuid4().hex[:8]}@example.com"
    made = gateway.cli("user", "create", email, "--password", "toml-password", AIGW_CONFIG=str(config))
    assert made.returncode == 0, made.stderr
    row = next(r for r in gateway.cli("user", "list").stdout.splitlines() if email in r)
    assert " 33 " in row
    email2 = f"toml-{uuid.uuid4().hex[:8]}@example.com"
    gateway.cli(
        "user", "create", email2, "--password", "toml-password", AIGW_CONFIG=str(config), AIGW_DEFAULT_RATE_LIMIT="44"
    )
    assert " 44 " in next(r for r in gateway.cli("user", "list").stdout.splitlines() if email2 in r)
    config.write_text("no_such_setting = 1\n")
    bad = gateway.cli("user", "list", AIGW_CONFIG=str(config))
    assert bad.returncode != 0 and "no_such_setting" in bad.stderr
