"""Tuning study for knowledge-base retrieval: chunk size and overlap, embedded text, and fusion, in process.

For each chunking config the corpus of bench/kb_quality/ is read and chunked by aigw's own code (`sniff` on
the file's first bytes with the name and media type the HTTP harness uploads, `extract`, `chunk_document`
with source = file name), embedded once by aigw's `SentenceTransformerEngine` in batches of the ingestion
job's size (vectors cached in bench/results/kb_tuning-<config>.npy), and indexed in an in-memory SQLite FTS5
table made like aigw's (same tokenizer, same MATCH query from `query_terms`/`_fts_match`, `bm25()`). Every
question is then answered by every retrieval variant in numpy: full text only, vector only, reciprocal-rank
fusion (k, weight on the vector list), and a convex combination of min-max-normalised BM25 and cosine, each
with 50 or 100 candidates per side. Relevance and metrics are bench/kb_quality.py's (`is_relevant`, `dcg`),
so the numbers are comparable with the HTTP harness.

nDCG@10's ideal DCG counts the distinct relevant chunks found in the union of the top 10 of *every* variant
of the config (always the whole grid, whatever --variants shows), so it is a fixed yardstick per config. The
HTTP harness pools only its three modes; "as kb_quality.py would report" lines recompute that pool (full
text, vector and the one fused variant) for comparison.

    .venv/bin/python bench/kb_tuning.py          # the study: ~25 min of CPU on 2 cores with a cold cache
    .venv/bin/python bench/kb_tuning.py --configs 1000/150 --variants 'fulltext,vector,rrf-k60@50'
    .venv/bin/python bench/kb_tuning.py --configs 800/120,800/120:content --content-best 0 --throughput none
    #  --configs     comma-separated MAX/OVERLAP[:content] (":content" embeds the chunk content without the
    #                "file > heading" context line). Default: 400, 600, 800, 1000, 1400 with 15% overlap,
    #                then overlap 0 for the --zero-best N (2) best sizes; --full-grid: all 10 size x overlap.
    #  --content-best N   then the content-only embedding of the N (2) best context configs
    #  --variants    comma-separated fnmatch patterns over variant names (--list-variants); filters the report
    #                (and the choice of the best), never the pool of the ideal DCG
    #  --throughput  CONFIG,... or "best" (the robust choice) or "none": time ingesting 500 KB of corpus text
    #                (extract, chunk, embed in the ingestion job's batches)

The "best" configs of each stage are ranked by the robust fused variant (least mean regret across configs) on
all questions; the held-out table re-makes the final choice on half of the questions and scores the other half.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import hashlib
import json
import os
import resource
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import kb_quality as harness  # noqa: E402 - bench/kb_quality.py, for its relevance rule and metrics
from aigw.engines.embed.local import SentenceTransformerEngine, packaged_model_path  # noqa: E402
from aigw.knowledge.chunk import Chunk, chunk_document  # noqa: E402
from aigw.knowledge.extract import SNIFF_BYTES, extract, sniff  # noqa: E402
from aigw.knowledge.index import query_terms  # noqa: E402
from aigw.knowledge.index.sqlite import _fts_match  # noqa: E402
from aigw.knowledge.jobs import EMBED_BATCH  # noqa: E402

RESULTS = HERE / "results"
TOP_K = harness.TOP_K
MAX_DEPTH = 100  # candidates fetched per side; variants use the first 50 or all 100
MODEL_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length (word pieces, [CLS] and [SEP] included)
TRAINED_TOKENS = 128  # the length it was trained on
THROUGHPUT_BYTES = 500_000
BOOTSTRAP = 2000
DEFAULT_SIZES = (400, 600, 800, 1000, 1400)
OVERLAP_SHARE = 0.15
API_DEFAULT = "1000/150"

Ids = NDArray[np.int64]
Floats = NDArray[np.float64]


# Configs


@dataclass(frozen=True)
class Config:
    max_chars: int
    overlap: int
    embed_context: bool = True  # embed f"{context}\n{content}" (aigw today) or the content alone

    @property
    def name(self) -> str:
        return f"{self.max_chars}/{self.overlap}" + ("" if self.embed_context else ":content")

    @property
    def slug(self) -> str:
        return f"c{self.max_chars}-o{self.overlap}-{'ctx' if self.embed_context else 'content'}"

    @property
    def chunking(self) -> tuple[int, int]:
        return self.max_chars, self.overlap

    @staticmethod
    def parse(text: str) -> Config:
        spec, _, suffix = text.strip().partition(":")
        if suffix not in ("", "content", "ctx"):
            raise ValueError(f"unknown embedded-text option {suffix!r} in {text!r} (use :content)")
        chars, _, overlap = spec.partition("/")
        return Config(int(chars), int(overlap or 0), embed_context=suffix != "content")


def overlapped(size: int) -> Config:
    return Config(size, round(size * OVERLAP_SHARE))


def full_grid() -> list[Config]:
    return [Config(size, overlap) for size in DEFAULT_SIZES for overlap in (0, overlapped(size).overlap)]


# Variants


@dataclass(frozen=True)
class Variant:
    kind: Literal["fulltext", "vector", "rrf", "convex"]
    depth: int = 50
    k: int = 60  # RRF constant
    w: float = 1.0  # RRF weight of the vector list (the text list weighs 1)
    alpha: float = 0.5  # convex: weight of the normalised cosine, 1 - alpha on normalised BM25
    all_cos: bool = False  # convex: use the exact cosine of every candidate, not only the vector list's

    @property
    def name(self) -> str:
        if self.kind in ("fulltext", "vector"):
            return self.kind
        if self.kind == "rrf":
            weight = "" if self.w == 1 else f"-w{self.w:g}"
            return f"rrf-k{self.k}{weight}@{self.depth}"
        return f"convex{'-allcos' if self.all_cos else ''}-a{self.alpha:g}@{self.depth}"

    @property
    def fused(self) -> bool:
        return self.kind in ("rrf", "convex")

    @property
    def family(self) -> str:
        """The name without the candidate depth."""
        return self.name.split("@")[0]


API_HYBRID = Variant("rrf", depth=50, k=60)


def all_variants() -> list[Variant]:
    variants = [Variant("fulltext"), Variant("vector")]
    for depth in (50, 100):
        variants += [Variant("rrf", depth, k, w) for k in (5, 20, 60) for w in (0.5, 0.75, 1.0, 1.5, 2.0)]
        variants += [Variant("convex", depth, alpha=a) for a in (0.3, 0.4, 0.5, 0.6, 0.7)]
        variants += [Variant("convex", depth, alpha=a, all_cos=True) for a in (0.3, 0.5, 0.7)]
    return variants


def rank_variant(v: Variant, text_ids: Ids, text_scores: Floats, vec_ids: Ids, cos: Floats) -> list[int]:
    """The top 10 chunk indices of one variant for one question."""
    if v.kind == "fulltext":
        return [int(c) for c in text_ids[:TOP_K]]
    if v.kind == "vector":
        return [int(c) for c in vec_ids[:TOP_K]]
    t_ids, v_ids = text_ids[: v.depth], vec_ids[: v.depth]
    scores: dict[int, float] = {}  # insertion order text list first, as aigw's fuse(): ties keep that order
    if v.kind == "rrf":
        for rank, c in enumerate(t_ids.tolist()):
            scores[c] = scores.get(c, 0.0) + 1.0 / (v.k + rank + 1)
        for rank, c in enumerate(v_ids.tolist()):
            scores[c] = scores.get(c, 0.0) + v.w / (v.k + rank + 1)
    else:
        for c, s in zip(t_ids.tolist(), minmax(text_scores[: v.depth]).tolist(), strict=True):
            scores[c] = (1 - v.alpha) * s
        if v.all_cos:
            union = list(dict.fromkeys([*t_ids.tolist(), *v_ids.tolist()]))
            sims = minmax(cos[np.asarray(union, np.int64)])
        else:
            union, sims = v_ids.tolist(), minmax(cos[v_ids])
        for c, s in zip(union, sims.tolist(), strict=True):
            scores[c] = scores.get(c, 0.0) + v.alpha * s
    return sorted(scores, key=lambda c: -scores[c])[:TOP_K]


def minmax(values: Floats) -> Floats:
    if values.size == 0:
        return values
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.ones_like(values)
    out: Floats = (values - low) / (high - low)
    return out


# Corpus, chunks, embeddings, full text


@dataclass
class Corpus:
    chunks: list[Chunk]
    sources: list[str]  # file name of each chunk
    build_seconds: float

    def texts(self, embed_context: bool) -> list[str]:
        # jobs.IngestionJobs._embed: f"{context}\n{content}" when there is a context.
        if embed_context:
            return [f"{c.context}\n{c.content}" if c.context else c.content for c in self.chunks]
        return [c.content for c in self.chunks]


def media_type(path: Path) -> str:
    return "text/markdown" if path.suffix == ".md" else "text/plain"  # what kb_quality.py uploads


def read_chunks(files: Sequence[Path], max_chars: int, overlap: int) -> tuple[list[Chunk], list[str]]:
    chunks: list[Chunk] = []
    sources: list[str] = []
    for path in files:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
        kind, _ = sniff(head, path.name, media_type(path))
        doc_chunks = chunk_document(extract(path, kind), source=path.name, max_chars=max_chars, overlap=overlap)
        chunks += doc_chunks
        sources += [path.name] * len(doc_chunks)
    return chunks, sources


def build_corpus(files: Sequence[Path], max_chars: int, overlap: int) -> Corpus:
    start = time.perf_counter()
    chunks, sources = read_chunks(files, max_chars, overlap)
    return Corpus(chunks, sources, time.perf_counter() - start)


class Embedder:
    """aigw's engine driven the way ingestion and search drive it, with an on-disk cache of the vectors."""

    def __init__(self) -> None:
        self.engine = SentenceTransformerEngine()
        self.runner = asyncio.Runner()
        self.seconds = 0.0
        self.texts = 0

    def documents(self, texts: list[str]) -> NDArray[np.float32]:
        async def run() -> NDArray[np.float32]:
            parts = [
                await self.engine.embed(texts[i : i + EMBED_BATCH], purpose="document")
                for i in range(0, len(texts), EMBED_BATCH)
            ]
            return np.concatenate(parts)

        return self._timed(run, len(texts))

    def queries(self, texts: list[str]) -> NDArray[np.float32]:
        async def run() -> NDArray[np.float32]:  # one call per question, as a search does
            return np.concatenate([await self.engine.embed([t], purpose="query") for t in texts])

        return self._timed(run, len(texts))

    def _timed(self, run: Callable[[], Any], n: int) -> NDArray[np.float32]:
        self.runner.run(self.engine.warm())
        start = time.perf_counter()
        vectors: NDArray[np.float32] = self.runner.run(run())
        self.seconds += time.perf_counter() - start
        self.texts += n
        return vectors

    def cached(self, slug: str, texts: list[str], kind: Literal["document", "query"]) -> NDArray[np.float32]:
        """Vectors for `texts`, from bench/results/kb_tuning-<slug>.npy when it was made from the same texts."""
        digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
        npy, meta = RESULTS / f"kb_tuning-{slug}.npy", RESULTS / f"kb_tuning-{slug}.json"
        ident = {"sha256": digest, "model": self.engine.model_id, "dtype": self.engine.dtype, "n": len(texts)}
        if npy.exists() and meta.exists():
            saved = json.loads(meta.read_text())
            if all(saved.get(key) == value for key, value in ident.items()):
                cached: NDArray[np.float32] = np.load(npy)
                return cached
        log(f"embedding {len(texts)} {kind} texts for {slug} ...")
        start = time.perf_counter()
        vectors = self.documents(texts) if kind == "document" else self.queries(texts)
        seconds = time.perf_counter() - start
        RESULTS.mkdir(exist_ok=True)
        np.save(npy, vectors)
        chars = sum(map(len, texts))
        meta.write_text(json.dumps({**ident, "seconds": seconds, "chars": chars}, indent=1))
        log(f"  {seconds:.1f} s: {len(texts) / seconds:.1f} texts/s, {chars / seconds / 1000:.1f} k chars/s")
        return vectors

    def close(self) -> None:
        self.runner.run(self.engine.close())
        self.runner.close()


def fts_index(corpus: Corpus) -> sqlite3.Connection:
    """An in-memory copy of aigw's kb_chunks_fts (migration 0002), rowid = chunk index + 1."""
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE kb_chunks_fts USING fts5("
        "context, content, tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    db.executemany(
        "INSERT INTO kb_chunks_fts (rowid, context, content) VALUES (?, ?, ?)",
        [(i + 1, c.context, c.content) for i, c in enumerate(corpus.chunks)],
    )
    return db


def fulltext(db: sqlite3.Connection, query: str, limit: int) -> tuple[Ids, Floats]:
    """SqliteIndex.fulltext: chunk indices best first, and -bm25() (positive, higher is better)."""
    terms = query_terms(query)
    if not terms:
        return np.zeros(0, np.int64), np.zeros(0)
    rows = db.execute(
        "SELECT rowid, bm25(kb_chunks_fts) AS rank FROM kb_chunks_fts WHERE kb_chunks_fts MATCH ? "
        "ORDER BY rank LIMIT ?",
        (_fts_match(terms), limit),
    ).fetchall()
    return np.asarray([r[0] - 1 for r in rows], np.int64), np.asarray([-r[1] for r in rows], np.float64)


def token_lengths(texts: list[str]) -> NDArray[np.int64]:
    from transformers import AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # we count lengths past 512
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_path()), local_files_only=True)
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]]
    return np.asarray(lengths, np.int64)


# Evaluation


@dataclass
class Scores:
    """Per-question metrics of one variant in one config (arrays aligned with the question list)."""

    recall5: Floats
    mrr10: Floats
    ndcg10: Floats
    tops: list[list[int]]  # top-10 chunk indices per question

    def mean(self, metric: str, mask: NDArray[np.bool_] | None = None) -> float:
        values: Floats = getattr(self, metric)
        return float(values[mask].mean() if mask is not None else values.mean())


@dataclass
class ConfigResult:
    config: Config
    chunks: int
    mean_chars: float
    over_trained: float  # share of embedded texts longer than 128 word pieces
    truncated: float  # share longer than 256 (the model drops the rest)
    scores: dict[str, Scores] = field(default_factory=dict)
    relevant: dict[tuple[int, int], bool] = field(default_factory=dict)

    def gain(self, variant: str, mask: NDArray[np.bool_] | None = None) -> float:
        base = self.scores["fulltext"].mean("ndcg10", mask)
        return self.scores[variant].mean("ndcg10", mask) / base - 1 if base else 0.0


class Judge:
    """kb_quality.is_relevant, memoised per (question, chunk)."""

    def __init__(self, questions: Sequence[harness.Question], corpus: Corpus, memo: dict[tuple[int, int], bool]):
        self.questions, self.corpus, self.memo = questions, corpus, memo

    def __call__(self, qi: int, c: int) -> bool:
        key = (qi, c)
        if key not in self.memo:
            q = self.questions[qi]
            hit = {"source": self.corpus.sources[c], "content": self.corpus.chunks[c].content}
            self.memo[key] = q.doc == self.corpus.sources[c] and harness.is_relevant(hit, q)
        return self.memo[key]

    def of(self, qi: int) -> Callable[[int], bool]:
        """Relevance of chunks to question `qi`."""
        return lambda c: self(qi, c)


def ideal_dcg(tops: Iterable[list[int]], relevant: Callable[[int], bool]) -> float:
    pool = {c for top in tops for c in top if relevant(c)}
    return harness.dcg([1] * max(1, len(pool)))


def score_tops(tops: list[list[int]], ideals: list[float], judge: Judge) -> Scores:
    recall5, mrr10, ndcg10 = [], [], []
    for qi, top in enumerate(tops):
        rel = [judge(qi, c) for c in top]
        first = next((i + 1 for i, r in enumerate(rel) if r), None)
        recall5.append(1.0 if first is not None and first <= 5 else 0.0)
        mrr10.append(1.0 / first if first else 0.0)
        ndcg10.append(harness.dcg([int(r) for r in rel]) / ideals[qi])
    return Scores(np.asarray(recall5), np.asarray(mrr10), np.asarray(ndcg10), tops)


def evaluate(
    config: Config,
    corpus: Corpus,
    doc_vectors: NDArray[np.float32],
    query_vectors: NDArray[np.float32],
    questions: Sequence[harness.Question],
    variants: Sequence[Variant],
) -> ConfigResult:
    db = fts_index(corpus)
    cos_all = (query_vectors @ doc_vectors.T).astype(np.float64)  # questions x chunks
    tops: dict[str, list[list[int]]] = {v.name: [] for v in variants}
    for qi, q in enumerate(questions):
        text_ids, text_scores = fulltext(db, q.question, MAX_DEPTH)
        cos = cos_all[qi]
        part = np.argpartition(-cos, MAX_DEPTH - 1)[:MAX_DEPTH]
        vec_ids = part[np.argsort(-cos[part], kind="stable")].astype(np.int64)
        for v in variants:
            tops[v.name].append(rank_variant(v, text_ids, text_scores, vec_ids, cos))
    db.close()
    lengths = token_lengths(corpus.texts(config.embed_context))
    result = ConfigResult(
        config,
        chunks=len(corpus.chunks),
        mean_chars=statistics.fmean(len(c.content) for c in corpus.chunks),
        over_trained=float((lengths > TRAINED_TOKENS).mean()),
        truncated=float((lengths > MODEL_MAX_TOKENS).mean()),
    )
    judge = Judge(questions, corpus, result.relevant)
    ideals = [ideal_dcg((tops[v.name][qi] for v in variants), judge.of(qi)) for qi in range(len(questions))]
    for v in variants:
        result.scores[v.name] = score_tops(tops[v.name], ideals, judge)
    return result


def as_harness(result: ConfigResult, variant: str, questions: Sequence[harness.Question]) -> dict[str, float]:
    """nDCG@10 of full text, vector and `variant` as kb_quality.py would report them (pool of those three)."""
    judge = Judge(questions, Corpus([], [], 0), result.relevant)  # every pair it needs is memoised already
    names = ["fulltext", "vector", variant]
    ideals = [ideal_dcg((result.scores[n].tops[qi] for n in names), judge.of(qi)) for qi in range(len(questions))]
    return {n: score_tops(result.scores[n].tops, ideals, judge).mean("ndcg10") for n in names}


def bootstrap_gain(result: ConfigResult, variant: str, seed: int = 7) -> tuple[float, float]:
    """95% paired-bootstrap interval (over questions) of the nDCG@10 gain of `variant` over full text."""
    rng = np.random.default_rng(seed)
    a, b = result.scores[variant].ndcg10, result.scores["fulltext"].ndcg10
    idx = rng.integers(0, a.size, size=(BOOTSTRAP, a.size))
    gains = a[idx].mean(axis=1) / b[idx].mean(axis=1) - 1
    low, high = np.percentile(gains, [2.5, 97.5])
    return float(low), float(high)


# Choosing


@dataclass
class Choice:
    config: str
    variant: str
    ndcg: float
    gain: float


def best_point(results: Sequence[ConfigResult], variants: Sequence[str], mask: NDArray[np.bool_] | None) -> Choice:
    """The (config, fused variant) with the highest nDCG@10 on the questions in `mask`."""
    candidates = [(r, v) for r in results for v in variants]
    r, v = max(candidates, key=lambda rv: rv[0].scores[rv[1]].mean("ndcg10", mask))
    return Choice(r.config.name, v, r.scores[v].mean("ndcg10", mask), r.gain(v, mask))


def robust_variant(results: Sequence[ConfigResult], variants: Sequence[str], mask: NDArray[np.bool_] | None) -> str:
    """The fused variant with the least mean regret (nDCG@10 below each config's best variant) across configs."""

    def regret(v: str) -> float:
        return statistics.fmean(
            max(r.scores[u].mean("ndcg10", mask) for u in variants) - r.scores[v].mean("ndcg10", mask) for r in results
        )

    return min(variants, key=regret)


def robust_config(results: Sequence[ConfigResult], variant: str, mask: NDArray[np.bool_] | None) -> ConfigResult:
    return max(results, key=lambda r: r.scores[variant].mean("ndcg10", mask))


def split_masks(path: Path = harness.QUESTIONS) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Questions on even and on odd (1-based) lines of questions.jsonl."""
    lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    even = np.asarray([n % 2 == 0 for n in lines])
    return even, ~even


# Throughput


def throughput(embedder: Embedder, config: Config, files: Sequence[Path]) -> dict[str, float]:
    """Ingest (extract, chunk, embed as the ingestion job does) the first corpus files up to 500 KB."""
    chosen, size = [], 0
    for path in files:
        chosen.append(path)
        size += path.stat().st_size
        if size >= THROUGHPUT_BYTES:
            break
    embedder.runner.run(embedder.engine.warm())
    embedder.documents(["warm-up text"] * EMBED_BATCH)
    load_before = os.getloadavg()[0]
    cpu, start = time.process_time(), time.perf_counter()
    corpus = build_corpus(chosen, *config.chunking)
    texts = corpus.texts(config.embed_context)
    embedded = time.perf_counter()
    embedder.documents(texts)
    end = time.perf_counter()
    chars = sum(map(len, texts))
    return {
        "bytes": size,
        "chunks": len(texts),
        "embedded_chars": chars,
        "read_chunk_s": embedded - start,
        "embed_s": end - embedded,
        "chunks_per_s": len(texts) / (end - embedded),
        "chars_per_s": chars / (end - embedded),
        "s_per_500kb": (end - start) * THROUGHPUT_BYTES / size,
        "cpu_s": time.process_time() - cpu,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


# Report


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(x: float) -> str:
    return f"{x:+.1%}"


def print_matrix(results: Sequence[ConfigResult], shown: Sequence[str]) -> None:
    """One row per variant, one column per config: nDCG@10 and its gain over that config's full text."""
    head = " | ".join(r.config.name for r in results)
    print(f"| variant | {head} | mean gain | min gain |")
    print("|---" * (len(results) + 3) + "|")
    print("| chunks | " + " | ".join(str(r.chunks) for r in results) + " | | |")
    print("| >128 / >256 tok | " + " | ".join(f"{r.over_trained:.0%} / {r.truncated:.0%}" for r in results) + " | | |")
    for v in shown:
        cells = [f"{r.scores[v].mean('ndcg10'):.3f} {pct(r.gain(v))}" for r in results]
        gains = [r.gain(v) for r in results]
        summary = f"{pct(statistics.fmean(gains))} | {pct(min(gains))}" if v != "fulltext" else " | "
        print(f"| {v} | " + " | ".join(cells) + f" | {summary} |")


def print_recall(results: Sequence[ConfigResult], shown: Sequence[str]) -> None:
    """Recall@5 and MRR@10 (neither depends on the pooled ideal DCG)."""
    print("| variant | " + " | ".join(r.config.name for r in results) + " |")
    print("|---" * (len(results) + 1) + "|")
    for v in shown:
        cells = [f"{r.scores[v].mean('recall5'):.3f} / {r.scores[v].mean('mrr10'):.3f}" for r in results]
        print(f"| {v} | " + " | ".join(cells) + " |")


def long_rows(results: Sequence[ConfigResult], shown: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            "config": r.config.name,
            "variant": v,
            "chunks": r.chunks,
            "recall@5": r.scores[v].mean("recall5"),
            "mrr@10": r.scores[v].mean("mrr10"),
            "ndcg@10": r.scores[v].mean("ndcg10"),
            "gain_vs_fulltext": r.gain(v),
        }
        for r in results
        for v in shown
    ]


def print_summary(
    results: Sequence[ConfigResult], fused: Sequence[str], questions: Sequence[harness.Question]
) -> dict[str, Any]:
    by_name = {r.config.name: r for r in results}
    summary: dict[str, Any] = {}
    best = best_point(results, fused, None)
    summary["best_point"] = best.__dict__
    print(f"\nBest single point (all 229 questions): {best.config} {best.variant}: "
          f"nDCG@10 {best.ndcg:.3f}, gain {pct(best.gain)}")  # fmt: skip
    robust = robust_variant(results, fused, None)
    home = robust_config(results, robust, None)
    gains = [r.gain(robust) for r in results]
    low, high = bootstrap_gain(home, robust)
    summary["robust"] = {"variant": robust, "config": home.config.name, "ci95": [low, high]}
    print(f"Robust fusion (least mean regret across the {len(results)} configs): {robust}: "
          f"gain mean {pct(statistics.fmean(gains))}, min {pct(min(gains))}, max {pct(max(gains))}; "
          f"best config for it {home.config.name}: "
          f"nDCG@10 {home.scores[robust].mean('ndcg10'):.3f}, gain {pct(home.gain(robust))} "
          f"(95% bootstrap CI {pct(low)} .. {pct(high)})")  # fmt: skip
    even, odd = split_masks()
    summary["held_out"] = []
    print("\nHeld-out check (choose on one half of the questions, measure on the other):")
    print("| tuned on | chosen config | chosen variant | tune nDCG | tune gain | test nDCG | test gain |")
    print("|---|---|---|---|---|---|---|")
    for tune_name, tune, test in (("even lines", even, odd), ("odd lines", odd, even)):
        rows = []
        point = best_point(results, fused, tune)
        rows.append((point.config, point.variant))
        v = robust_variant(results, fused, tune)
        rows.append((robust_config(results, v, tune).config.name, v))
        for config, variant in dict.fromkeys(rows):
            r = by_name[config]
            row: dict[str, Any] = {
                "tuned_on": tune_name,
                "config": config,
                "variant": variant,
                "tune_ndcg": r.scores[variant].mean("ndcg10", tune),
                "tune_gain": r.gain(variant, tune),
                "test_ndcg": r.scores[variant].mean("ndcg10", test),
                "test_gain": r.gain(variant, test),
            }
            summary["held_out"].append(row)
            print(f"| {tune_name} | {config} | {variant} | {row['tune_ndcg']:.3f} | {pct(row['tune_gain'])} "
                  f"| {row['test_ndcg']:.3f} | {pct(row['test_gain'])} |")  # fmt: skip
    print("\nAs kb_quality.py would report them (pool = full text, vector and this fused variant):")
    print("| config | hybrid variant | fulltext | vector | hybrid | hybrid vs full text |")
    print("|---|---|---|---|---|---|")
    summary["as_harness"] = []
    pairs = [(API_DEFAULT, API_HYBRID.name), (best.config, best.variant), (home.config.name, robust)]
    for config, variant in dict.fromkeys(p for p in pairs if p[0] in by_name):
        h = as_harness(by_name[config], variant, questions)
        summary["as_harness"].append({"config": config, "variant": variant, **h})
        print(f"| {config} | {variant} | {h['fulltext']:.3f} | {h['vector']:.3f} | {h[variant]:.3f} "
              f"| {pct(h[variant] / h['fulltext'] - 1)} |")  # fmt: skip
    return summary


def print_cache_speeds(results: Sequence[ConfigResult]) -> None:
    """Embedding speed of each config's whole corpus, as recorded when its cache was made (the machine is shared:
    compare with the load noted by the dedicated measurement below)."""
    print("\nEmbedding speed when each cache was made (whole corpus, batches of 16, through the engine):")
    print("| config | chunks | s | chunks/s | embedded k chars/s |")
    print("|---|---|---|---|---|")
    for r in results:
        meta = json.loads((RESULTS / f"kb_tuning-{r.config.slug}.json").read_text())
        seconds = float(meta["seconds"])
        print(f"| {r.config.name} | {meta['n']} | {seconds:.0f} | {meta['n'] / seconds:.1f} "
              f"| {meta['chars'] / seconds / 1000:.1f} |")  # fmt: skip


def print_throughput(rows: dict[str, dict[str, float]]) -> None:
    if not rows:
        return
    print(f"\nIngestion throughput (first corpus files up to {THROUGHPUT_BYTES // 1000} KB; extract + chunk + "
          f"embed in batches of {EMBED_BATCH} through SentenceTransformerEngine):")  # fmt: skip
    print("| config | chunks | chunks/s | embedded k chars/s | s per 500 KB | CPU s | load avg before/after |")
    print("|---|---|---|---|---|---|---|")
    for name, t in rows.items():
        load = f"{t['load_before']:.2f} / {t['load_after']:.2f}"
        print(f"| {name} | {t['chunks']:.0f} | {t['chunks_per_s']:.1f} | {t['chars_per_s'] / 1000:.1f} "
              f"| {t['s_per_500kb']:.1f} | {t['cpu_s']:.1f} | {load} |")  # fmt: skip


# Main


def source_digests() -> dict[str, str]:
    """sha256 of the aigw modules that decide chunks and ranking (they change under active development)."""
    import aigw.knowledge

    root = Path(aigw.knowledge.__file__).parent
    names = ("chunk.py", "extract.py", "index.py", "retrieve.py", "jobs.py")
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest()[:16] for name in names}


def run_config(
    config: Config,
    files: Sequence[Path],
    embedder: Embedder,
    query_vectors: NDArray[np.float32],
    questions: Sequence[harness.Question],
    variants: Sequence[Variant],
    corpora: dict[tuple[int, int], Corpus],
) -> ConfigResult:
    if config.chunking not in corpora:
        corpora[config.chunking] = build_corpus(files, *config.chunking)
    corpus = corpora[config.chunking]
    vectors = embedder.cached(config.slug, corpus.texts(config.embed_context), "document")
    start = time.perf_counter()
    result = evaluate(config, corpus, vectors, query_vectors, questions, variants)
    ndcg = {name: result.scores[name].mean("ndcg10") for name in ("fulltext", "vector", API_HYBRID.name)}
    log(
        f"{config.name}: {result.chunks} chunks, evaluated in {time.perf_counter() - start:.1f} s; nDCG@10 "
        + ", ".join(f"{name} {value:.3f}" for name, value in ndcg.items())
    )
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", help="Comma-separated MAX/OVERLAP[:content] (default: see --full-grid)")
    parser.add_argument(
        "--full-grid", action="store_true", help="Without --configs: 400..1400 x overlap {0, 15%%} (10 embeddings)"
    )
    parser.add_argument(
        "--zero-best", type=int, default=2, help="Default grid: overlap 0 only for the N best sizes (default 2)"
    )
    parser.add_argument("--variants", default="*", help="Comma-separated fnmatch patterns of variants to report")
    parser.add_argument("--content-best", type=int, default=2, help="Content-only embedding for the N best configs")
    parser.add_argument("--throughput", default="best", help='CONFIG,... ("best": the robust choice) or "none"')
    parser.add_argument("--list-variants", action="store_true", help="Print the variant names and exit")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    variants = all_variants()
    if args.list_variants:
        print("\n".join(v.name for v in variants))
        return
    patterns = [p.strip() for p in args.variants.split(",") if p.strip()]
    shown = [v.name for v in variants if any(fnmatch.fnmatchcase(v.name, p) for p in patterns)]
    if not shown:
        sys.exit(f"--variants {args.variants!r} matches none of: {', '.join(v.name for v in variants)}")
    shown = list(dict.fromkeys(["fulltext", *shown]))  # gains are relative to full text: always show it
    fused = [v.name for v in variants if v.fused]
    shown_fused = [v for v in shown if v in fused] or fused

    questions = harness.load_questions()
    files = harness.corpus_files()
    started = time.perf_counter()
    embedder = Embedder()
    query_vectors = embedder.cached("queries", [q.question for q in questions], "query")
    corpora: dict[tuple[int, int], Corpus] = {}
    results: list[ConfigResult] = []

    def run(configs: Iterable[Config]) -> None:
        have = {r.config for r in results}
        for config in dict.fromkeys(configs):
            if config not in have:
                results.append(run_config(config, files, embedder, query_vectors, questions, variants, corpora))

    def best_contexts(n: int) -> list[Config]:
        """The n best configs that embed the context, ranked by the robust fused variant among them."""
        with_context = [r for r in results if r.config.embed_context]
        if n <= 0 or not with_context:
            return []
        robust = robust_variant(with_context, shown_fused, None)
        return [r.config for r in sorted(with_context, key=lambda r: -r.scores[robust].mean("ndcg10"))[:n]]

    if args.configs:
        run(Config.parse(c) for c in args.configs.split(","))
    elif args.full_grid:
        run(full_grid())
    else:  # overlap 15% for every size, then no overlap for the best sizes only
        run(overlapped(size) for size in DEFAULT_SIZES)
        run(Config(c.max_chars, 0) for c in best_contexts(args.zero_best))
    run(Config(c.max_chars, c.overlap, embed_context=False) for c in best_contexts(args.content_best))

    print("# Knowledge-base retrieval tuning (in process)\n")
    print(f"command: {harness.command_line()}")
    print(f"machine: {harness.machine()}")
    print(f"date:    {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"corpus:  {len(files)} documents, {sum(p.stat().st_size for p in files) / 1e6:.2f} MB; "
          f"{len(questions)} questions; top_k {TOP_K}; "
          f"embedder {embedder.engine.model_id} ({embedder.engine.dtype})")  # fmt: skip
    print("ideal DCG: relevant chunks pooled over the top 10 of all variants of the config\n")
    print("nDCG@10 and its gain over full text of the same config (config = max_chars/overlap; ':content' embeds "
          "the chunk without its 'file > heading' line):\n")  # fmt: skip
    print_matrix(results, shown)
    print("\nRecall@5 / MRR@10:\n")
    print_recall(results, shown)
    summary = print_summary(results, shown_fused, questions)

    timings: dict[str, dict[str, float]] = {}
    if args.throughput != "none":
        names = args.throughput.split(",")
        if "best" in names:
            names = [summary["robust"]["config"], *(n for n in names if n != "best")]
        for name in dict.fromkeys(names):
            log(f"throughput {name} ...")
            timings[name] = throughput(embedder, Config.parse(name), files)
    print_cache_speeds(results)
    print_throughput(timings)
    embedder.close()

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"\nrun: {time.perf_counter() - started:.0f} s wall, {cpu:.0f} s CPU; "
          f"embedding {embedder.texts} texts took {embedder.seconds:.0f} s (the rest came from the cache)")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"kb_tuning-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({
        "command": harness.command_line(),
        "machine": harness.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "configs": [{"config": r.config.name, "chunks": r.chunks, "mean_chars": r.mean_chars,
                     "over_128_tokens": r.over_trained, "over_256_tokens": r.truncated} for r in results],
        "rows": long_rows(results, [v.name for v in variants]),
        "summary": summary,
        "throughput": timings,
        "aigw_sources": source_digests(),
    }, indent=1))  # fmt: skip
    print(f"results: {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
