"""Benchmark: the authenticated request path (key lookup + rate limit + usage) on a trivial endpoint.

Starts `aigw serve` (one worker, default settings, SQLite) and drives it with wrk (Debian `wrk`;
installed by this script when missing and run as root). Compares, in alternating rounds:
  /api/healthz  public, no auth: the floor of FastAPI + uvicorn on this machine
  /auth/me      API key: credential lookup, rate limit, usage record, response from the principal
at 1 and 64 concurrent connections. Prints requests/s, p50/p99 latency and server CPU per request
(medians over the rounds), the command, and the machine.

    .venv/bin/python bench/request_path.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

AIGW = str(Path(sys.executable).parent / "aigw")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        return shutil.which("wrk") or sys.exit("wrk did not install")
    sys.exit("this benchmark needs wrk: sudo apt-get install wrk")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    python = platform.python_version()
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, Linux {platform.release()}, Python {python}"


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")}
    env.update(
        {
            "AIGW_DATA_DIR": str(data_dir),
            "AIGW_ADMIN_EMAIL": "bench@example.com",
            "AIGW_ADMIN_PASSWORD": "bench-password",
            "AIGW_CONFIG": str(data_dir / "none.toml"),
        }
    )
    log = open(data_dir / "server.log", "wb")
    proc = subprocess.Popen(
        [AIGW, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit(f"server did not start; see {data_dir / 'server.log'}")


def make_key(base: str) -> str:
    with httpx.Client(base_url=base) as client:
        client.post("/auth/login", json={"email": "bench@example.com", "password": "bench-password"}).raise_for_status()
        me = client.get("/auth/me").json()
        client.put(f"/api/admin/users/{me['id']}", json={"rate_limit": 1_000_000}).raise_for_status()
        key: str = client.post("/api/keys", json={"name": "bench"}).json()["key"]
        return key


def run_wrk(wrk: str, url: str, connections: int, seconds: int, key: str | None) -> dict[str, float]:
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if key:
        cmd[1:1] = ["-H", f"Authorization: Bearer {key}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "rps": rps,
        "p50": lat["50"],
        "p99": lat["99"],
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "requests": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_server(Path(tmp), port)
        base = f"http://127.0.0.1:{port}"
        try:
            key = make_key(base)
            targets = [
                ("/api/healthz (no auth)", "/api/healthz", None),
                ("/auth/me (key+limit+usage)", "/auth/me", key),
            ]
            for _, path, k in targets:  # warm up both paths, the key cache and the usage writer
                run_wrk(wrk, base + path, 8, 2, k)
            results: dict[tuple[str, int], list[dict[str, float]]] = {}
            for _ in range(args.rounds):
                for conns in (1, 64):
                    for name, path, k in targets:
                        before = cpu_seconds(proc.pid)
                        row = run_wrk(wrk, base + path, conns, args.seconds, k)
                        row["cpu_ms"] = (cpu_seconds(proc.pid) - before) * 1000 / max(1, row["requests"])
                        results.setdefault((name, conns), []).append(row)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {machine()}")
    print(
        f"server:  aigw serve, 1 worker, SQLite, access log on; load: wrk -t1, {args.seconds} s x {args.rounds} "
        "rounds, alternating targets; medians"
    )
    print(f"{'endpoint':<30} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>11} {'non-2xx':>8}")
    for (name, conns), rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("rps", "p50", "p99", "cpu_ms", "errors")}
        print(
            f"{name:<30} {conns:>5} {med['rps']:>9.0f} {med['p50']:>8.3f} {med['p99']:>8.3f} "
            f"{med['cpu_ms']:>11.3f} {int(med['errors']):>8}"
        )


if __name__ == "__main__":
    main()
