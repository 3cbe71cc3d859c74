"""Rebuild bench/kb_quality/corpus/ from text that ships with Debian and PyPI packages on this machine.

One-off and reproducible on a machine with the same packages: manual pages are rendered with
`man --nh --nj -P cat` at MANWIDTH=100 (no hyphenation, no justification, so phrases stay whole),
Debian docs are copied (gunzipped, terminal escapes stripped), and the long description of
installed Python distributions is taken from their METADATA (markdown kept as .md, reStructuredText
and plain text saved as .txt). Writes SOURCES.md. The questions in questions.jsonl were written
against these exact files: rebuilding with other package versions may break their answer spans
(run check_questions.py after a rebuild).

    .venv/bin/python bench/kb_quality/build_corpus.py
"""

from __future__ import annotations

import email
import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# (manual page, section, license family)
MAN_PAGES = [
    ("ssh_config", "5", "BSD-style (OpenSSH)"),
    ("ssh-keygen", "1", "BSD-style (OpenSSH)"),
    ("systemd.timer", "5", "LGPL-2.1+"),
    ("systemd.service", "5", "LGPL-2.1+"),
    ("journalctl", "1", "LGPL-2.1+"),
    ("journald.conf", "5", "LGPL-2.1+"),
    ("tmpfiles.d", "5", "LGPL-2.1+"),
    ("tar", "1", "GPL-3+"),
    ("find", "1", "GPL-3+"),
    ("xargs", "1", "GPL-3+"),
    ("flock", "1", "MIT-style (flock source; util-linux)"),
    ("strace", "1", "LGPL-2.1+"),
    ("git-bisect", "1", "GPL-2"),
    ("git-stash", "1", "GPL-2"),
    ("git-worktree", "1", "GPL-2"),
    ("gitfaq", "7", "GPL-2"),
    ("gitworkflows", "7", "GPL-2"),
    ("pg_dump", "1", "PostgreSQL (BSD-like)"),
    ("VACUUM", "7", "PostgreSQL (BSD-like)"),
    ("tc-netem", "8", "GPL-2"),
    ("ss", "8", "GPL-2"),
    ("apt_preferences", "5", "GPL-2+"),
    ("resolv.conf", "5", "permissive BSD-style (UC Regents; man-pages)"),
]

# (path under /usr/share/doc, corpus file name, license family)
DEBIAN_DOCS = [
    ("nodejs/contributing/investigating-native-memory-leaks.md", "nodejs-investigating-native-memory-leaks.md", "MIT"),
    ("nodejs/contributing/writing-and-running-benchmarks.md", "nodejs-writing-and-running-benchmarks.md", "MIT"),
    ("nodejs/contributing/pull-requests.md", "nodejs-pull-requests-guide.md", "MIT"),
    ("nodejs/contributing/writing-tests.md", "nodejs-writing-tests.md", "MIT"),
    ("nodejs/BUILDING.md", "nodejs-building-from-source.md", "MIT"),
    ("nodejs/api/worker_threads.md", "nodejs-api-worker-threads.md", "MIT"),
    ("nodejs/api/dns.md", "nodejs-api-dns.md", "MIT"),
    ("sed/sedfaq.txt.gz", "sed-faq.txt", "GPL-3+ (Debian sed package; FAQ text by Eric Pement)"),
    ("man-db/man-db-manual.txt.gz", "man-db-manual.txt", "verbatim-copying permission notice (man-db)"),
    ("dpkg/spec/triggers.txt", "dpkg-triggers-spec.txt", "GPL-2+"),
]

# (distribution name as in *.dist-info, license family)
PYPI = [
    ("fastapi", "MIT"),
    ("typer", "MIT"),
    ("trafilatura", "Apache-2.0"),
    ("redis", "MIT"),
    ("orjson", "Apache-2.0 / MIT"),
    ("tqdm", "MPL-2.0 / MIT"),
    ("defusedxml", "PSF"),
    ("python_dotenv", "BSD-3-Clause"),
    ("limits", "MIT"),
    ("diskcache", "Apache-2.0"),
    ("rich", "MIT"),
    ("psutil", "BSD-3-Clause"),
    ("sse_starlette", "BSD-3-Clause"),
    ("pytz", "MIT"),
    ("threadpoolctl", "BSD-3-Clause"),
    ("httpx", "BSD-3-Clause"),
    ("uvicorn", "BSD-3-Clause"),
    ("sqlalchemy", "MIT"),
    ("alembic", "MIT"),
    ("courlan", "Apache-2.0"),
]


def dpkg_owner(path: str) -> tuple[str, str]:
    real = os.path.realpath(path)
    for candidate in (path, real):
        out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if out.returncode == 0:
            pkg = out.stdout.split(":", 1)[0].strip()
            version = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, check=True
            ).stdout
            return pkg, version
    return "?", "?"


def render_man(page: str, section: str) -> tuple[str, str]:
    env = {**os.environ, "MANWIDTH": "100", "LANG": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    source = subprocess.run(["man", "-w", section, page], capture_output=True, text=True, check=True).stdout.strip()
    text = subprocess.run(
        ["man", "--nh", "--nj", "-P", "cat", section, page], capture_output=True, text=True, env=env, check=True
    ).stdout
    return source, ANSI.sub("", text)


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    rows: list[tuple[str, str, str, str, str]] = []  # file, package, version, path, license
    for page, section, lic in MAN_PAGES:
        source, text = render_man(page, section)
        name = f"man-{page}.{section}.txt"
        (CORPUS / name).write_text(text)
        pkg, version = dpkg_owner(source)
        rows.append((name, f"{pkg} (Debian)", version, f"{source} (rendered: man --nh --nj -P cat, MANWIDTH=100)", lic))
    for rel, name, lic in DEBIAN_DOCS:
        doc = Path("/usr/share/doc") / rel
        raw = gzip.decompress(doc.read_bytes()) if doc.suffix == ".gz" else doc.read_bytes()
        (CORPUS / name).write_text(ANSI.sub("", raw.decode("utf-8")))
        pkg, version = dpkg_owner(str(doc))
        rows.append((name, f"{pkg} (Debian)", version, str(doc), lic))
    for dist, lic in PYPI:
        (info,) = SITE.glob(f"{dist}-*.dist-info")
        meta = email.message_from_bytes((info / "METADATA").read_bytes())
        body = meta.get_payload()
        assert isinstance(body, str) and body.strip(), dist
        ext = ".md" if "markdown" in (meta.get("Description-Content-Type") or "") else ".txt"
        name = f"pypi-{meta['Name'].lower()}-readme{ext}"
        (CORPUS / name).write_text(body.strip() + "\n")
        rel = f".venv/lib/{SITE.parent.name}/site-packages/{info.name}/METADATA"
        rows.append((name, f"{meta['Name']} (PyPI)", meta["Version"], f"{rel} (long description)", lic))
    total = sum((CORPUS / r[0]).stat().st_size for r in rows)
    lines = [
        "# Corpus sources",
        "",
        f"{len(rows)} documents, {total / 1e6:.2f} MB, built by `bench/kb_quality/build_corpus.py` on Debian 12.",
        "All are redistributable documentation of free software. License family: from the document's own notice where",
        "it has one, else from the package's Debian copyright file or PyPI metadata (a summary, not legal advice).",
        "",
        "| file | bytes | package | version | path | license family |",
        "|---|---|---|---|---|---|",
    ]
    for name, pkg, version, path, lic in rows:
        lines.append(f"| {name} | {(CORPUS / name).stat().st_size} | {pkg} | {version} | `{path}` | {lic} |")
    (CORPUS / "SOURCES.md").write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} documents, {total} bytes")


if __name__ == "__main__":
    main()
