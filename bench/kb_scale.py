"""Benchmark: knowledge-base ingestion throughput and query latency at 10k and 100k chunks.

Part 1, ingestion: uploads a ~500 KB text document (real text: package documentation on this machine) to a
fresh `aigw serve` and times upload → `ready`; then embeds the very same chunk texts with the raw
sentence-transformers model (same precision, same batch size) in this process while the server is idle.
Reports chunks/s for both and their ratio.

Part 2, queries: fills one KB with N chunks (10k, then 100k) on SQLite and on PostgreSQL+pgvector and times
`POST /api/kb/{id}/query` over HTTP (hybrid, top_k 5) for the retrieval-quality questions, sequentially.
The first 10k chunks are real chunks of real documents embedded with the real model (cached under
bench/results/); 100k repeats them ten times with a small perturbation of each vector (Gaussian noise,
sigma 0.02, renormalised) and a marker word in the text, written straight into the database with aigw's
own index code (embedding 100k chunks here would take over half an hour).

    .venv/bin/python bench/kb_scale.py [--sizes 10000,100000] [--backends sqlite,postgres] [--skip-ingest]
                                       [--ann-min-chunks N]

On SQLite a KB of at least `--ann-min-chunks` chunks (the server's default, 20000, if not given) is searched
through the HNSW graph: the queries are timed once the server logs that its graph is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
AIGW = str(Path(sys.executable).parent / "aigw")
RESULTS = ROOT / "bench" / "results"
QUESTIONS = ROOT / "bench" / "kb_quality" / "questions.jsonl"
ADMIN = ("bench@aigw.local", "bench-password-1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    import torch

    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.system()} {platform.release()}"
    )


class Server:
    def __init__(self, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIGW_")},
            "AIGW_DATA_DIR": str(data_dir),
            "AIGW_ADMIN_EMAIL": ADMIN[0],
            "AIGW_ADMIN_PASSWORD": ADMIN[1],
            "AIGW_ACCESS_LOG": "false",
            "AIGW_MAX_BODY_BYTES": str(8 * 1024 * 1024),
            "AIGW_PRELOAD_MODELS": "false",  # the chat model is not needed; the embedder loads on first use
            **env,
        }
        log = open(data_dir / "server.log", "wb")
        self.proc = subprocess.Popen(
            [AIGW, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=data_dir,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("aigw did not start: " + (data_dir / "server.log").read_text()[-2000:])
            time.sleep(0.2)
        with httpx.Client(base_url=self.url) as client:
            client.post("/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
            key = client.post("/api/keys", json={"name": "bench"}, headers={"Origin": self.url}).json()["key"]
            me = client.get("/auth/me").json()["id"]
            client.put(f"/api/admin/users/{me}", json={"rate_limit": 1_000_000}, headers={"Origin": self.url})
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=600)

    def stop(self) -> None:
        self.client.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def corpus_texts() -> list[tuple[str, str]]:
    """(name, text) of real documents on this machine: the quality corpus, then package descriptions."""
    docs = []
    corpus = ROOT / "bench" / "kb_quality" / "corpus"
    for path in sorted(corpus.glob("*")):
        if path.suffix in (".md", ".txt") and path.name != "SOURCES.md":
            docs.append((path.name, path.read_text(errors="replace")))
    for meta in sorted(Path(sys.prefix).glob("lib/python3*/site-packages/*.dist-info/METADATA")):
        text = meta.read_text(errors="replace")
        body = text.split("\n\n", 1)[-1]
        if len(body) > 2000:
            docs.append((meta.parent.name + ".md", body))
    return docs


def ingestion(tmp: Path) -> dict[str, Any]:
    from aigw.knowledge.chunk import chunk_document
    from aigw.knowledge.extract import extract

    text = ""
    for _, body in corpus_texts():
        text += body + "\n\n"
        if len(text) >= 500_000:
            break
    text = text[:500_000]
    path = tmp / "handbook.txt"
    path.write_text(text)
    data_dir = tmp / "ingest"
    data_dir.mkdir()
    server = Server(data_dir)
    try:
        kb = server.client.post("/api/kb", json={"name": "ingest"}).json()["id"]
        server.client.post(f"/api/kb/{kb}/query", json={"query": "warm up the model"})
        started = time.perf_counter()
        doc = server.client.post(f"/api/kb/{kb}/documents", files={"file": ("handbook.txt", path.read_bytes())}).json()
        while doc["status"] == "processing":
            time.sleep(0.05)
            doc = server.client.get(f"/api/kb/{kb}/documents/{doc['id']}").json()
        seconds = time.perf_counter() - started
        assert doc["status"] == "ready", doc
    finally:
        server.stop()

    chunks = chunk_document(extract(path, "text"), source="handbook.txt", max_chars=1000, overlap=0)
    texts = [f"{c.context}\n{c.content}" if c.context else c.content for c in chunks]
    import contextlib

    import torch
    from sentence_transformers import SentenceTransformer

    from aigw.engines.embed.local import cpu_has_bf16, packaged_model_path

    model = SentenceTransformer(str(packaged_model_path()), device="cpu", local_files_only=True)
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if cpu_has_bf16() else contextlib.nullcontext()
    with precision:
        model.encode(texts[:64], batch_size=32)
        raw_started = time.perf_counter()
        model.encode(texts, batch_size=32, normalize_embeddings=True)
        raw_seconds = time.perf_counter() - raw_started
    return {
        "document_bytes": len(text.encode()),
        "chunks": doc["chunks"],
        "upload_to_ready_s": round(seconds, 2),
        "ingest_chunks_per_s": round(doc["chunks"] / seconds, 1),
        "raw_chunks": len(texts),
        "raw_chunks_per_s": round(len(texts) / raw_seconds, 1),
        "ratio": round((doc["chunks"] / seconds) / (len(texts) / raw_seconds), 3),
        "precision": "bfloat16 autocast" if cpu_has_bf16() else "float32",
    }


def real_chunks(limit: int) -> tuple[list[tuple[str, str]], np.ndarray]:
    """`limit` real chunks (context, content) and their MiniLM vectors, cached in bench/results/."""
    cache = RESULTS / f"kb_scale_chunks_{limit}.npz"
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        return list(zip(data["contexts"].tolist(), data["contents"].tolist(), strict=True)), data["vectors"]
    from aigw.knowledge.chunk import chunk_document
    from aigw.knowledge.extract import extract

    pairs: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, body in corpus_texts():
            path = Path(tmp) / "doc.md"
            path.write_text(body)
            for chunk in chunk_document(extract(path, "markdown"), source=name, max_chars=1000, overlap=0):
                pairs.append((chunk.context, chunk.content))
            if len(pairs) >= limit:
                break
    while len(pairs) < limit:  # not enough text on this machine: repeat (the vectors still differ by noise)
        pairs += pairs[: limit - len(pairs)]
    pairs = pairs[:limit]
    from aigw.engines.embed.local import SentenceTransformerEngine

    async def embed() -> np.ndarray:
        engine = SentenceTransformerEngine(name="bench", max_queue=1_000_000)
        try:
            texts = [f"{c}\n{t}" for c, t in pairs]
            parts = []
            for i in range(0, len(texts), 256):
                parts.append(await engine.embed(texts[i : i + 256]))
                print(f"  embedded {min(i + 256, len(texts))}/{len(texts)} chunks", end="\r", flush=True)
            print()
            return np.concatenate(parts)
        finally:
            await engine.close()

    vectors = asyncio.run(embed())
    RESULTS.mkdir(parents=True, exist_ok=True)
    np.savez(cache, contexts=np.array([c for c, _ in pairs]), contents=np.array([t for _, t in pairs]), vectors=vectors)
    return pairs, vectors


async def fill(
    database_url: str, user_id: int, kb_id: int, pairs: list[tuple[str, str]], vectors: np.ndarray, size: int
) -> None:
    """Write `size` chunks into the KB as documents of 100 chunks, with aigw's own index code."""
    from sqlalchemy import text

    from aigw.engines.embed.local import PACKAGED_MODEL_ID
    from aigw.knowledge.chunk import Chunk
    from aigw.knowledge.index import build_index
    from aigw.store.db import create_engine, session_factory
    from aigw.store.models import KbDocument

    engine = create_engine(database_url)
    index = build_index(engine.dialect.name)
    rng = np.random.default_rng(7)
    base = len(pairs)
    async with session_factory(engine)() as db:
        await index.prepare(db, vectors.shape[1])
        for start in range(0, size, 100):
            n = min(100, size - start)
            rows = [(start + i) % base for i in range(n)]
            copy = (start // base) if start >= base else 0
            batch = vectors[rows]
            if copy:
                batch = batch + rng.normal(0, 0.02, batch.shape).astype(np.float32)
                batch /= np.linalg.norm(batch, axis=1, keepdims=True)
            document = KbDocument(
                kb_id=kb_id,
                user_id=user_id,
                embedding_model=PACKAGED_MODEL_ID,  # the server's model: its vectors are searched
                filename=f"doc-{start // 100}.md",
                kind="markdown",
                media_type="text/markdown",
                size=0,
                stored_name=f"bench-{start}",
                status="ready",
                chunk_count=n,
                attempts=1,
            )
            db.add(document)
            await db.flush()
            chunks = [
                Chunk(content=pairs[r][1] + (f" copy{copy}" if copy else ""), context=pairs[r][0], position=i)
                for i, r in enumerate(rows)
            ]
            await index.add(db, user_id, document.id, kb_id, chunks, batch.astype(np.float32))
            if start % 5000 == 0:
                await db.commit()
                print(f"  wrote {start + n}/{size} chunks", end="\r", flush=True)
        await db.commit()
        if engine.dialect.name == "postgresql":
            await db.execute(text("ANALYZE kb_chunks"))
            await db.commit()
            # Which plan the vector search gets at this size: the HNSW index, or the exact scan of a small scope.
            query = vectors[0]
            await db.execute(text("SET LOCAL hnsw.ef_search = 200"))
            plan = await db.execute(
                text(
                    "EXPLAIN SELECT c.id FROM kb_chunks c WHERE c.kb_id IN (:kb) AND vector_dims(c.embedding) = 384 "
                    "ORDER BY (c.embedding::vector(384)) <=> CAST(:q AS vector(384)) LIMIT 50"
                ),
                {"kb": kb_id, "q": "[" + ",".join(f"{x:.6f}" for x in query) + "]"},
            )
            uses_hnsw = any("hnsw" in row[0] for row in plan.all())
            print(f"  PostgreSQL plan for a vector search over {size} chunks uses HNSW: {uses_hnsw}")
    print()
    await engine.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_for_graph(server: Server, data_dir: Path, kb_id: int, timeout: float = 900) -> float:
    """Query once (which brings the server's index up to the database and starts its graph), then wait until
    the server logs that the graph is ready; returns the seconds waited."""
    started = time.perf_counter()
    server.client.post(f"/api/kb/{kb_id}/query", json={"query": "start the graph", "mode": "vector"})
    while '"vector graph ready"' not in (data_dir / "server.log").read_text(errors="replace"):
        if time.perf_counter() - started > timeout:
            sys.exit("the server's vector graph was not ready in time")
        time.sleep(0.5)
    return time.perf_counter() - started


def queries(server: Server, kb_id: int, questions: list[str], mode: str) -> dict[str, float]:
    for question in questions[:5]:  # warm: the first query loads the vectors (SQLite) and caches plans
        server.client.post(f"/api/kb/{kb_id}/query", json={"query": question, "mode": mode})
    timings = []
    for _ in range(2):
        for question in questions:
            started = time.perf_counter()
            resp = server.client.post(f"/api/kb/{kb_id}/query", json={"query": question, "top_k": 5, "mode": mode})
            timings.append((time.perf_counter() - started) * 1000)
            assert resp.status_code == 200, resp.text
            # Every chunk has a vector the server's model made: vector and hybrid searches always find some.
            assert mode == "fulltext" or resp.json()["results"], f"no results in {mode} mode for {question!r}"
    return {
        "p50_ms": round(percentile(timings, 0.5), 1),
        "p95_ms": round(percentile(timings, 0.95), 1),
        "n": len(timings),
    }


def scale(
    tmp: Path,
    backend: str,
    size: int,
    pairs: list[tuple[str, str]],
    vectors: np.ndarray,
    questions: list[str],
    postgres: Any,
    ann_min_chunks: int | None = None,
) -> dict[str, Any]:
    data_dir = tmp / f"{backend}-{size}"
    data_dir.mkdir()
    env = {}
    if ann_min_chunks is not None:
        env["AIGW_KB_ANN_MIN_CHUNKS"] = str(ann_min_chunks)
    if backend == "postgres":
        name = f"bench_{size}"
        postgres.psql(f"DROP DATABASE IF EXISTS {name};")
        postgres.psql(f"CREATE DATABASE {name};")
        env["AIGW_DATABASE_URL"] = postgres.get_uri(database=name)
    server = Server(data_dir, **env)
    try:
        kb_id = server.client.post("/api/kb", json={"name": f"scale-{size}"}).json()["id"]
        user_id = server.client.get("/auth/me").json()["id"]
        url = env.get("AIGW_DATABASE_URL") or f"sqlite:///{data_dir / 'aigw.db'}"
        from aigw.settings import Settings, normalize_database_url

        started = time.perf_counter()
        asyncio.run(fill(normalize_database_url(url), user_id, kb_id, pairs, vectors, size))
        fill_s = time.perf_counter() - started
        result: dict[str, Any] = {"backend": backend, "chunks": size, "fill_s": round(fill_s, 1)}
        if backend == "sqlite" and size >= (ann_min_chunks or Settings.model_fields["kb_ann_min_chunks"].default):
            result["graph_ready_s"] = round(wait_for_graph(server, data_dir, kb_id), 1)
        for mode in ("hybrid", "vector", "fulltext"):
            result[mode] = queries(server, kb_id, questions, mode)
        return result
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--ann-min-chunks", type=int, help="SQLite: AIGW_KB_ANN_MIN_CHUNKS for the servers")
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print("machine:", machine())
    print("date:", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    report: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_ingest:
            report["ingestion"] = ingest = ingestion(tmp)
            print(
                f"\ningestion: {ingest['document_bytes']} bytes, {ingest['chunks']} chunks, upload to ready "
                f"{ingest['upload_to_ready_s']} s = {ingest['ingest_chunks_per_s']} chunks/s; raw model "
                f"{ingest['raw_chunks_per_s']} chunks/s ({ingest['precision']}); ratio {ingest['ratio']:.1%}"
            )
        questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
        sizes = [int(s) for s in args.sizes.split(",")]
        pairs, vectors = real_chunks(min(10_000, max(sizes)))
        postgres = None
        if "postgres" in args.backends:
            import warnings

            with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                import pgserver

            postgres = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
        rows = []
        try:
            for backend in args.backends.split(","):
                for size in sizes:
                    row = scale(tmp, backend, size, pairs, vectors, questions, postgres, args.ann_min_chunks)
                    rows.append(row)
                    print(json.dumps(row))
        finally:
            if postgres is not None:
                postgres.cleanup()
        report["queries"] = rows
        print("\n| backend | chunks | hybrid p50 / p95 ms | vector p50 / p95 ms | full-text p50 / p95 ms |")
        print("|---|---|---|---|---|")
        for row in rows:
            cells = [f"{row[m]['p50_ms']} / {row[m]['p95_ms']}" for m in ("hybrid", "vector", "fulltext")]
            print(f"| {row['backend']} | {row['chunks']} | " + " | ".join(cells) + " |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"kb_scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print("\nwritten:", out)


if __name__ == "__main__":
    main()
