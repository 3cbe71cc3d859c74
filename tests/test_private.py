"""What aigw writes is its owner's alone, and no secret reaches a printout or a child process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from aigw.engines.ocr import tesseract
from conftest import AIGW, Gateway, gateway_env
from test_kb import upload, wait_ready

SECRET = "hunter2-do-not-print"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_dir_and_what_is_written_in_it_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    env = gateway_env(data_dir)
    made = subprocess.run(
        [AIGW, "user", "create", "perm@example.com", "--password", "perm-password"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert mode_of(data_dir) == 0o700
    written = [p for p in data_dir.rglob("*") if not p.is_symlink()]
    assert data_dir / "aigw.db" in written and data_dir / "secret_key" in written
    assert {p.name: oct(mode_of(p)) for p in written if mode_of(p) & 0o077} == {}


def test_uploads_are_owner_only(gateway: Gateway) -> None:
    client = gateway.admin()
    kb = client.post("/api/kb", json={"name": "private files"}).json()["id"]
    doc = upload(client, kb, "private.txt", b"The vault code is in the blue folder.").json()
    assert wait_ready(client, kb, doc["id"])["status"] == "ready"
    stored = [p for p in (gateway.data_dir / "kb").rglob("*") if p.is_file()]
    assert stored
    assert {str(p): oct(mode_of(p)) for p in stored if mode_of(p) & 0o077} == {}


def test_doctor_shows_no_password_and_warns_about_an_open_data_dir(gateway: Gateway) -> None:
    before = mode_of(gateway.data_dir)
    os.chmod(gateway.data_dir, 0o755)
    try:
        out = gateway.cli("doctor", AIGW_REDIS_URL=f"redis://default:{SECRET}@127.0.0.1:1/0")
    finally:
        os.chmod(gateway.data_dir, before)
    printed = out.stdout + out.stderr
    assert SECRET not in printed
    assert "redis://default:***@127.0.0.1:1/0" in printed
    assert f"{gateway.data_dir} is open to other accounts (mode 0755)" in printed
    # What the server wrote is owner-only. (Tests write files of their own here, server.log and custom.toml
    # among them, with the test process's umask: doctor rightly names those.)
    warned = [line for line in gateway.cli("doctor").stdout.splitlines() if "open to other accounts" in line]
    server_files = (f"{gateway.data_dir} is open", "aigw.db", "secret_key", "/kb", "/models")
    assert not [line for line in warned if any(name in line for name in server_files)], warned


def test_tesseract_sees_none_of_the_gateways_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for the tesseract binary that prints the environment it was given as its "text".
    script = tmp_path / "tesseract"
    script.write_text(f"#!{sys.executable}\nimport os, sys\nsys.stdin.buffer.read()\nprint(dict(os.environ))\n")
    script.chmod(0o700)
    monkeypatch.setattr(tesseract, "TESSERACT_COMMAND", str(script))
    monkeypatch.setenv("AIGW_SECRET_KEY", SECRET)
    monkeypatch.setenv("AIGW_DATABASE_URL", f"postgresql://aigw:{SECRET}@db/aigw")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    seen = tesseract.image_to_text(Image.new("L", (8, 8), 255), "eng")
    assert SECRET not in seen and "AIGW_" not in seen
    assert "'OMP_THREAD_LIMIT': '1'" in seen and "'PATH'" in seen
