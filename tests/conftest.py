"""Real servers for the tests: aigw itself (`aigw serve` in a subprocess), PostgreSQL and Redis.

Every test talks HTTP to a running gateway. The `gateway` fixture runs each test twice, once on
SQLite and once on PostgreSQL (pgserver's PostgreSQL 16, or AIGW_TEST_POSTGRES_URL if given).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from aigw.engines.packaged import QWEN_CODER_05B, assemble
from doubles.ollama import OllamaProtocolDouble

AIGW = str(Path(sys.executable).parent / "aigw")
ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "root-password-1"
MAX_BODY = 1024 * 1024
SHARED_MODELS_DIR: Path | None = None  # set for the session by the shared_models_dir fixture
# Every worker loads its models at start (when preloading is on); on two busy cores that can take minutes.
STARTUP_SECONDS = 300
WORKER_READY = "worker ready"  # aigw.app.WORKER_READY, logged once by each worker process with its pid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TestUser:
    id: int
    email: str
    password: str
    key: str


@dataclass
class Gateway:
    url: str
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    admin_key: str = ""
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(base_url=self.url, headers=headers, **{"timeout": 30, **kwargs})
        self._clients.append(client)
        return client

    def admin(self) -> httpx.Client:
        return self.client(self.admin_key)

    def new_user(self, *, rate_limit: int = 1000, role: str = "customer", name: str = "Test") -> TestUser:
        email = f"u-{uuid.uuid4().hex[:12]}@example.com"
        password = "password-" + uuid.uuid4().hex[:8]
        admin = self.admin()
        resp = admin.post(
            "/api/admin/users",
            json={"email": email, "password": password, "name": name, "role": role, "rate_limit": rate_limit},
        )
        assert resp.status_code == 201, resp.text
        user_id = resp.json()["id"]
        resp = admin.post("/api/admin/keys", json={"user_id": user_id, "name": "test"})
        assert resp.status_code == 201, resp.text
        return TestUser(user_id, email, password, resp.json()["key"])

    def login(self, email: str, password: str) -> httpx.Client:
        client = self.client()
        resp = client.post("/auth/login", json={"email": email, "password": password})
        assert resp.status_code == 200, resp.text
        return client

    def cli(self, *args: str, input: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIGW, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
            cwd=self.data_dir,
        )

    def log(self) -> str:
        return (self.data_dir / "server.log").read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """The pids of the worker processes that have logged that they are ready and are still running."""
        return {pid for pid in ready_pids(self.log()) if _running(pid)}

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def ready_pids(log: str) -> set[int]:
    pids = set()
    for line in log.splitlines():
        if WORKER_READY not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == WORKER_READY:
            pids.add(int(entry["pid"]))
    return pids


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gateway_env(
    data_dir: Path, *, database_url: str | None = None, redis_url: str | None = None, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")}
    env.update(
        {
            "AIGW_DATA_DIR": str(data_dir),
            "AIGW_ADMIN_EMAIL": ADMIN_EMAIL,
            "AIGW_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "AIGW_MAX_BODY_BYTES": str(MAX_BODY),
            "AIGW_USAGE_FLUSH_SECONDS": "0.2",
            "AIGW_CONFIG": str(data_dir / "aigw.toml"),
            "AIGW_PRELOAD_MODELS": "false",  # servers that never chat need not load the model
        }
    )
    if SHARED_MODELS_DIR is not None:  # the embedding model's ONNX export is made once, not once per server
        env["AIGW_MODELS_DIR"] = str(SHARED_MODELS_DIR)
    if database_url:
        env["AIGW_DATABASE_URL"] = database_url
    if redis_url:
        env["AIGW_REDIS_URL"] = redis_url
    env.update(extra)
    return env


def start_gateway(data_dir: Path, *, workers: int = 1, **env_args: Any) -> Gateway:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = gateway_env(data_dir, **env_args)
    port = free_port()
    log = open(data_dir / "server.log", "wb")
    proc = subprocess.Popen(
        [AIGW, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=data_dir,
    )
    log.close()
    gateway = Gateway(url=f"http://127.0.0.1:{port}", data_dir=data_dir, env=env, proc=proc)
    wait_until_serving(gateway, workers)
    with httpx.Client(base_url=gateway.url) as client:
        resp = client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert resp.status_code == 200, resp.text
        origin = {"Origin": gateway.url}
        resp = client.post("/api/keys", json={"name": "tests"}, headers=origin)
        assert resp.status_code == 201, resp.text
        gateway.admin_key = resp.json()["key"]
        me = client.get("/auth/me")
        assert me.status_code == 200, me.text
        resp = client.put(f"/api/admin/users/{me.json()['id']}", json={"rate_limit": 1_000_000}, headers=origin)
        assert resp.status_code == 200, resp.text
    return gateway


def wait_until_serving(gateway: Gateway, workers: int) -> None:
    """Wait until every worker process has logged that it is ready (models loaded if preloaded) and the
    port answers; one worker answering /health says nothing about the others, which may still be loading."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if gateway.proc.poll() is not None:
            raise RuntimeError(f"aigw exited with {gateway.proc.returncode}:\n{gateway.log()}")
        ready = gateway.worker_pids()
        if len(ready) >= workers:
            try:
                if httpx.get(f"{gateway.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            gateway.stop()
            raise RuntimeError(
                f"aigw did not get {workers} worker(s) ready within {STARTUP_SECONDS} s "
                f"(ready: {sorted(ready) or 'none'}):\n{gateway.log()}"
            )
        time.sleep(0.1)


class Postgres:
    """A PostgreSQL server for the session: pgserver's bundled PostgreSQL 16, or an existing one."""

    def __init__(self, root: Path) -> None:
        self._server: Any = None
        base = os.environ.get("AIGW_TEST_POSTGRES_URL")
        if base is None:
            with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                import pgserver

            self._server = pgserver.get_server(root, cleanup_mode="stop")
            base = self._server.get_uri()
        self.base = base

    def new_database(self) -> str:
        import asyncio

        import asyncpg

        name = f"aigw_{uuid.uuid4().hex[:10]}"

        async def create() -> None:
            conn = await asyncpg.connect(self.base.replace("postgresql://", "postgres://"))
            try:
                await conn.execute(f"CREATE DATABASE {name}")
            finally:
                await conn.close()

        asyncio.run(create())
        head, _, query = self.base.partition("?")
        return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make test`, which installs it")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    log_path = workdir / "redis.log"
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*command, "--dir", str(workdir)], stdout=log, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=5, socket_timeout=5)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if proc.poll() is not None:
                    pytest.fail(f"redis-server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"redis-server on port {port} did not answer PING within 60 s ({exc}):\n"
                        + log_path.read_text(errors="replace")
                    )
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session", autouse=True)
def shared_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One models dir for every server of the session: model files are assembled or exported into it once."""
    global SHARED_MODELS_DIR
    SHARED_MODELS_DIR = tmp_path_factory.mktemp("models")
    yield SHARED_MODELS_DIR
    SHARED_MODELS_DIR = None


@pytest.fixture(scope="session")
def models_dir(shared_models_dir: Path) -> Path:
    """The shared models dir, with the packaged chat model assembled in it."""
    assemble(QWEN_CODER_05B, shared_models_dir)
    return shared_models_dir


LLAMA_API_KEY = "test-llama-key"


@dataclass
class LlamaServer:
    base_url: str  # with /v1
    api_key: str


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[LlamaServer]:
    """A real third-party OpenAI-compatible server: llama-cpp-python's own, on the packaged GGUF."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail("llama-cpp-python is not installed in this environment")
    model = models_dir / QWEN_CODER_05B.filename
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "2048", "--api_key", LLAMA_API_KEY, "--verbose", "False"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", LLAMA_API_KEY)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                headers = {"Authorization": f"Bearer {LLAMA_API_KEY}"}
                if httpx.get(f"{server.base_url}/models", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def gateway_on(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str, **env: str
) -> Gateway:
    """A gateway on the database the fixture is parametrised with: "sqlite" or "postgres" (a new database)."""
    database_url = None
    if request.param == "postgres":
        database_url = request.getfixturevalue("postgres").new_database()
    return start_gateway(tmp_path_factory.mktemp(f"{name}-{request.param}"), database_url=database_url, **env)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = gateway_on(request, tmp_path_factory, "gw")
    yield gw
    gw.stop()


# A protocol double of an Ollama server, one per test module (its reply queues are per test).
@pytest.fixture(scope="module")
def ollama_double() -> Iterator[OllamaProtocolDouble]:
    double = OllamaProtocolDouble().start()
    yield double
    double.stop()
