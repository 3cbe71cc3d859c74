"""Per-user rate limits: 429 with Retry-After and X-RateLimit-*, across keys, sessions and workers."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import Gateway, start_gateway


def test_61st_request_in_a_minute_gets_429(gateway: Gateway) -> None:
    user = gateway.new_user(rate_limit=60)
    client = gateway.client(user.key)
    responses = [client.get("/auth/me") for _ in range(61)]
    assert [r.status_code for r in responses[:60]] == [200] * 60
    assert responses[0].headers["x-ratelimit-limit"] == "60"
    assert responses[0].headers["x-ratelimit-remaining"] == "59"
    assert responses[59].headers["x-ratelimit-remaining"] == "0"
    denied = responses[60]
    assert denied.status_code == 429
    assert denied.json()["code"] == "rate_limited"
    assert 1 <= int(denied.headers["retry-after"]) <= 60
    assert denied.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(denied.headers["x-ratelimit-reset"]) <= 60


def test_limit_is_shared_by_all_keys_and_sessions_of_a_user(gateway: Gateway) -> None:
    user = gateway.new_user(rate_limit=10)
    second = gateway.client(user.key).post("/api/keys", json={"name": "second"}).json()["key"]
    session = gateway.login(user.email, user.password)
    clients = [gateway.client(user.key), gateway.client(second), session]
    statuses = [clients[i % 3].get("/auth/me").status_code for i in range(12)]
    assert statuses.count(200) == 9  # the key creation above was the 10th request
    assert statuses.count(429) == 3
    # Another user is not affected.
    assert gateway.client(gateway.new_user(rate_limit=10).key).get("/auth/me").status_code == 200


def test_raised_limit_applies_on_the_next_request(gateway: Gateway) -> None:
    user = gateway.new_user(rate_limit=2)
    client = gateway.client(user.key)
    assert [client.get("/auth/me").status_code for _ in range(3)] == [200, 200, 429]
    assert gateway.admin().put(f"/api/admin/users/{user.id}", json={"rate_limit": 100}).status_code == 200
    assert client.get("/auth/me").status_code == 200


@pytest.fixture(scope="module")
def two_workers_with_redis(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, postgres: object
) -> Iterator[Gateway]:
    database_url = postgres.new_database()  # type: ignore[attr-defined]
    gw = start_gateway(tmp_path_factory.mktemp("gw-redis"), workers=2, database_url=database_url, redis_url=redis_url)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def two_workers_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-2w"), workers=2)
    yield gw
    gw.stop()


def fresh_connection_statuses(url: str, key: str, n: int) -> list[int]:
    """n requests, each on its own connection, 8 at a time, so both workers take a share."""

    def one(_: int) -> int:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            return client.get("/auth/me").status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def test_with_redis_the_limit_holds_across_two_workers(two_workers_with_redis: Gateway) -> None:
    gw = two_workers_with_redis
    assert len(gw.worker_pids()) == 2, gw.log()  # start_gateway waited for both
    user = gw.new_user(rate_limit=60)
    statuses = fresh_connection_statuses(gw.url, user.key, 90)
    assert statuses.count(200) == 60
    assert statuses.count(429) == 30
    assert gw.client().get("/health").json()["services"]["redis"] is True


def test_with_redis_deactivation_reaches_every_worker(two_workers_with_redis: Gateway) -> None:
    gw = two_workers_with_redis
    user = gw.new_user()
    assert set(fresh_connection_statuses(gw.url, user.key, 20)) == {200}
    assert gw.admin().delete(f"/api/admin/users/{user.id}").status_code == 200
    assert set(fresh_connection_statuses(gw.url, user.key, 20)) == {401}


def test_without_redis_deactivation_reaches_every_worker(two_workers_sqlite: Gateway) -> None:
    gw = two_workers_sqlite
    assert len(gw.worker_pids()) == 2, gw.log()  # start_gateway waited for both
    user = gw.new_user()
    assert set(fresh_connection_statuses(gw.url, user.key, 20)) == {200}  # both workers have it cached
    assert gw.admin().delete(f"/api/admin/users/{user.id}").status_code == 200
    assert set(fresh_connection_statuses(gw.url, user.key, 20)) == {401}


def test_cli_revocation_reaches_a_running_server(two_workers_sqlite: Gateway) -> None:
    gw = two_workers_sqlite
    user = gw.new_user()
    keys = gw.client(user.key).get("/api/keys").json()
    assert set(fresh_connection_statuses(gw.url, user.key, 10)) == {200}
    result = gw.cli("key", "revoke", str(keys[0]["id"]))
    assert result.returncode == 0, result.stderr
    assert set(fresh_connection_statuses(gw.url, user.key, 10)) == {401}


def test_workers_share_one_generated_secret(two_workers_sqlite: Gateway) -> None:
    gw = two_workers_sqlite
    assert (Path(gw.data_dir) / "secret_key").stat().st_mode & 0o077 == 0
    user = gw.new_user()  # the key was made by one worker; every request below may land on either
    assert set(fresh_connection_statuses(gw.url, user.key, 20)) == {200}
