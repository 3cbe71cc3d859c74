"""Retrieval quality of knowledge bases: Recall@5, MRR@10 and nDCG@10 of full-text, vector and hybrid search.

Uploads the corpus in bench/kb_quality/corpus/ (real documentation from Debian and PyPI packages, see
SOURCES.md there) into a fresh knowledge base, asks every question of bench/kb_quality/questions.jsonl in
each mode, and judges each returned chunk against the question's answer span. Without --url it starts
`aigw serve` itself on a temporary data dir (SQLite, default embedding engine) with a user and API key made
by the CLI. Prints a markdown table, the command, the machine and the date; writes JSON to bench/results/.

    .venv/bin/python bench/kb_quality.py [--url URL --key KEY] [--modes fulltext,vector,hybrid]
        [--chunk-chars N --overlap N] [--env KEY=VALUE ...] [--verbose]

A chunk is relevant to a question when its `source` is the question's document and, after normalising both
(NFC, typographic quotes made plain, markdown ` and * dropped, whitespace collapsed, lower case), the chunk
contains the span, or the span contains the chunk, or their longest common substring covers at least half
the span (a span split across two chunks). nDCG@10 uses binary gains; its ideal DCG counts the distinct
relevant chunks found in the union of all modes' top 10 for that question (at least 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "kb_quality" / "corpus"
QUESTIONS = HERE / "kb_quality" / "questions.jsonl"
RESULTS = HERE / "results"
AIGW = str(Path(sys.executable).parent / "aigw")
MODES = ("fulltext", "vector", "hybrid")
TOP_K = 10
QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
MARKUP = re.compile(r"[`*]")
EMAIL, PASSWORD = "kb-bench@example.com", "kb-bench-password"


def normalize(text: str) -> str:
    """The form spans and chunks are compared in (also used by kb_quality/check_questions.py)."""
    text = MARKUP.sub("", unicodedata.normalize("NFC", text).translate(QUOTES))
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    doc: str
    answer: str


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [Question(r["id"], r["question"], r["doc"], r["answer"]) for r in rows]


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.suffix in (".md", ".txt") and p.name != "SOURCES.md")


def is_relevant(hit: dict[str, Any], q: Question) -> bool:
    if Path(str(hit.get("source", ""))).name != q.doc:
        return False
    span, content = normalize(q.answer), normalize(str(hit.get("content", "")))
    if not content:
        return False
    if span in content or content in span:
        return True
    match = SequenceMatcher(None, span, content, autojunk=False).find_longest_match(0, len(span), 0, len(content))
    return match.size >= 0.5 * len(span)


# Metrics


def dcg(gains: list[int]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains[:TOP_K]))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


@dataclass
class Outcome:
    """One question asked in one mode: relevance of each of the top 10, their chunk ids, and the latency."""

    relevant: list[bool]
    chunk_ids: list[Any]
    sources: list[str]
    ms: float


@dataclass
class ModeScore:
    recall5: list[float] = field(default_factory=list)
    mrr10: list[float] = field(default_factory=list)
    ndcg10: list[float] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        return {
            "recall@5": statistics.fmean(self.recall5),
            "mrr@10": statistics.fmean(self.mrr10),
            "ndcg@10": statistics.fmean(self.ndcg10),
            "p50_ms": percentile(self.ms, 50),
            "p95_ms": percentile(self.ms, 95),
        }


def score(outcomes: dict[str, dict[str, Outcome]], modes: list[str]) -> tuple[dict[str, ModeScore], dict[str, Any]]:
    """Per-mode metrics, and per question the rank (1-based) of each mode's first relevant chunk."""
    scores = {m: ModeScore() for m in modes}
    per_question: dict[str, Any] = {}
    for qid, by_mode in outcomes.items():
        pool = {cid for o in by_mode.values() for cid, rel in zip(o.chunk_ids, o.relevant, strict=True) if rel}
        ideal = dcg([1] * max(1, len(pool)))
        per_question[qid] = {"relevant_chunks_in_pool": len(pool)}
        for mode, o in by_mode.items():
            first = next((i + 1 for i, rel in enumerate(o.relevant) if rel), None)
            s = scores[mode]
            s.recall5.append(1.0 if first is not None and first <= 5 else 0.0)
            s.mrr10.append(1.0 / first if first else 0.0)
            s.ndcg10.append(dcg([int(r) for r in o.relevant]) / ideal)
            s.ms.append(o.ms)
            per_question[qid][mode] = {"first_relevant_rank": first, "ms": round(o.ms, 2), "sources": o.sources}
    return scores, per_question


# The gateway


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run([AIGW, *args], env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"aigw {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@contextmanager
def own_gateway(extra_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Start `aigw serve` on a temporary data dir; yield its base URL and an API key."""
    with tempfile.TemporaryDirectory(prefix="kb-quality-") as tmp, serve_on(Path(tmp), extra_env) as served:
        yield served


@contextmanager
def serve_on(data: Path, extra_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Start `aigw serve` on `data` (a user and key are made the first time); yield its base URL and the key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")}
    env.update(
        AIGW_DATA_DIR=str(data),
        AIGW_CONFIG=str(data / "none.toml"),  # never pick up an aigw.toml from elsewhere
        AIGW_PRELOAD_MODELS="false",
        AIGW_ACCESS_LOG="false",
    )
    env.update(extra_env)
    key_file = data / "bench-key.txt"
    if not key_file.exists():
        cli(env, data, "user", "create", EMAIL, "--password", PASSWORD, "--rate-limit", "1000000")
        key_file.write_text(cli(env, data, "key", "create", EMAIL, "--name", "bench").splitlines()[-1])
    key = key_file.read_text().strip()
    port = free_port()
    log = open(data / "server.log", "ab")  # closed below, after the server
    proc = subprocess.Popen(
        [AIGW, "serve", "--port", str(port)], env=env, cwd=data, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # models load before the server answers when they are preloaded
        while True:
            if proc.poll() is not None:
                sys.exit(f"aigw serve exited:\n{(data / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit("aigw serve did not answer /health within 300 s")
            time.sleep(0.1)
        yield base, key
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def check(response: httpx.Response) -> Any:
    if response.is_error:
        sys.exit(f"{response.request.method} {response.request.url.path} -> {response.status_code}: {response.text}")
    return response.json()


def ingest(client: httpx.Client, files: list[Path], timeout: float) -> tuple[int, float, int]:
    """Create a KB, upload the corpus, wait until every document is ready; return (kb id, seconds, chunks)."""
    kb = check(client.post("/api/kb", json={"name": "kb-quality", "description": "retrieval benchmark corpus"}))
    start = time.perf_counter()
    for path in files:
        media = "text/markdown" if path.suffix == ".md" else "text/plain"
        with path.open("rb") as fh:
            check(client.post(f"/api/kb/{kb['id']}/documents", files={"file": (path.name, fh, media)}))
    while True:
        docs = check(client.get(f"/api/kb/{kb['id']}/documents", params={"limit": 1000}))
        failed = [d for d in docs if d["status"] == "failed"]
        if failed:
            sys.exit("ingestion failed: " + "; ".join(f"{d['filename']}: {d.get('error')}" for d in failed))
        if len(docs) == len(files) and all(d["status"] == "ready" for d in docs):
            return int(kb["id"]), time.perf_counter() - start, sum(int(d["chunks"]) for d in docs)
        if time.perf_counter() - start > timeout:
            sys.exit(f"ingestion not done after {timeout:.0f} s: {sum(d['status'] == 'ready' for d in docs)} ready")
        time.sleep(0.5)


def ask(client: httpx.Client, kb_id: int, q: Question, mode: str) -> Outcome:
    start = time.perf_counter()
    response = client.post(f"/api/kb/{kb_id}/query", json={"query": q.question, "top_k": TOP_K, "mode": mode})
    ms = (time.perf_counter() - start) * 1000
    hits = check(response)["results"][:TOP_K]
    return Outcome(
        relevant=[is_relevant(h, q) for h in hits],
        chunk_ids=[h.get("chunk_id", (h.get("source"), h.get("content"))) for h in hits],
        sources=[str(h.get("source", "")) for h in hits],
        ms=ms,
    )


# Report


def command_line() -> str:
    """The command as run, with the value of --key masked."""
    words = [Path(sys.executable).name, *sys.argv]
    masked = ["***" if i > 0 and words[i - 1] == "--key" else w for i, w in enumerate(words)]
    return " ".join(re.sub(r"^--key=.*", "--key=***", w) for w in masked)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "")
    cpu = model or platform.processor()
    return f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, Python {platform.python_version()}"


def report(rows: dict[str, dict[str, float]], meta: dict[str, Any]) -> None:
    print(f"\ncommand: {meta['command']}")
    print(f"machine: {meta['machine']}")
    print(f"date:    {meta['date']}")
    print(f"corpus:  {meta['documents']} documents, {meta['corpus_bytes'] / 1e6:.2f} MB -> {meta['chunks']} chunks "
          f"({meta['chunking']}); ingestion {meta['ingest_seconds']:.1f} s")  # fmt: skip
    print(f"questions: {meta['questions']}, top_k {TOP_K}\n")
    print("| mode | Recall@5 | MRR@10 | nDCG@10 | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    for mode, r in rows.items():
        print(f"| {mode} | {r['recall@5']:.3f} | {r['mrr@10']:.3f} | {r['ndcg@10']:.3f} "
              f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} |")  # fmt: skip
    if "hybrid" in rows and "fulltext" in rows and rows["fulltext"]["ndcg@10"] > 0:
        gain = rows["hybrid"]["ndcg@10"] / rows["fulltext"]["ndcg@10"] - 1
        print(f"\nhybrid vs full-text, nDCG@10: {gain:+.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="Use a running gateway (needs --key) instead of starting one")
    parser.add_argument("--key", help="API key for --url")
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated: fulltext,vector,hybrid")
    parser.add_argument("--chunk-chars", type=int, help="AIGW_KB_CHUNK_CHARS of the started gateway")
    parser.add_argument("--overlap", type=int, help="AIGW_KB_CHUNK_OVERLAP of the started gateway")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="Extra env for the gateway")
    parser.add_argument("--limit", type=int, help="Ask only the first N questions (a quick look)")
    parser.add_argument("--ingest-timeout", type=float, default=3600, help="Seconds to wait for ingestion")
    parser.add_argument("--keep-kb", action="store_true", help="With --url: do not delete the KB afterwards")
    parser.add_argument("--verbose", action="store_true", help="Print the questions hybrid search missed")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if bad := [m for m in modes if m not in MODES]:
        parser.error(f"unknown mode(s) {bad}; choose from {MODES}")
    if args.url and not args.key:
        parser.error("--url needs --key")
    if bad_env := [item for item in args.env if "=" not in item]:
        parser.error(f"--env wants KEY=VALUE, got {bad_env}")
    extra = dict(item.split("=", 1) for item in args.env)
    if args.chunk_chars is not None:
        extra["AIGW_KB_CHUNK_CHARS"] = str(args.chunk_chars)
    if args.overlap is not None:
        extra["AIGW_KB_CHUNK_OVERLAP"] = str(args.overlap)
    if args.url and extra:
        print("note: --env/--chunk-chars/--overlap only apply to a gateway this script starts", file=sys.stderr)
    questions = load_questions()[: args.limit]
    files = corpus_files()

    @contextmanager
    def gateway() -> Iterator[tuple[str, str]]:
        if args.url:
            yield args.url.rstrip("/"), args.key
        else:
            with own_gateway(extra) as started:
                yield started

    with gateway() as (base, key):
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
            check(client.get("/health"))
            kb_id, ingest_s, chunks = ingest(client, files, args.ingest_timeout)
            print(f"ingested {len(files)} documents in {ingest_s:.1f} s: {chunks} chunks", flush=True)
            try:
                for mode in modes:  # warm-up: load the embedding model, fill caches; not measured
                    ask(client, kb_id, questions[0], mode)
                outcomes: dict[str, dict[str, Outcome]] = {}
                for n, q in enumerate(questions, 1):
                    outcomes[q.id] = {mode: ask(client, kb_id, q, mode) for mode in modes}  # modes interleaved
                    if n % 25 == 0:
                        print(f"  {n}/{len(questions)} questions", flush=True)
            finally:
                if args.url and not args.keep_kb:
                    client.delete(f"/api/kb/{kb_id}")
    scores, per_question = score(outcomes, modes)
    rows = {mode: scores[mode].row() for mode in modes}
    chars, overlap = extra.get("AIGW_KB_CHUNK_CHARS", "default"), extra.get("AIGW_KB_CHUNK_OVERLAP", "default")
    chunking = f"chunk chars {chars}, overlap {overlap}"
    meta = {
        "command": command_line(),
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "documents": len(files),
        "corpus_bytes": sum(p.stat().st_size for p in files),
        "chunks": chunks,
        "chunking": chunking if not args.url else "as configured on the gateway",
        "ingest_seconds": ingest_s,
        "questions": len(questions),
        "env": extra,
    }
    report(rows, meta)
    if args.verbose and "hybrid" in modes:
        by_id = {q.id: q for q in questions}
        misses = [qid for qid, r in per_question.items() if r["hybrid"]["first_relevant_rank"] is None]
        print(f"\nhybrid misses ({len(misses)}):")
        for qid in misses:
            q = by_id[qid]
            top = ", ".join(per_question[qid]["hybrid"]["sources"][:3])
            print(f"- {qid} [{q.doc}] {q.question}\n    expected: {q.answer!r}\n    top sources: {top}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"kb_quality-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"meta": meta, "modes": rows, "questions": per_question}, indent=1))
    print(f"\nresults: {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
