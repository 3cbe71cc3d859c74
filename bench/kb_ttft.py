"""Time to the first word of a knowledge-base answer, and what the context budget costs in answer quality.

Ingests the retrieval corpus (bench/kb_quality/corpus/) once into a temporary data dir, then serves it with
one context budget after another: no passages, 1, 2 and 4 passages cut to sentence windows, and the budget
before this benchmark (4 whole 1000-character chunks). For a sample of the retrieval questions it streams
`/api/chat` (temperature 0, the embedded Qwen2.5-Coder-0.5B) and measures, per budget:

- time to first token (client side, request sent to first `token` event), p50 and p95;
- prompt tokens the model evaluated (prompt_eval_count - prompt_cached_count);
- context recall: the question's answer span is in the injected excerpts (`sources[].excerpt`);
- answer overlap: the share of the span's content words (4+ letters) that the answer uses.

    .venv/bin/python bench/kb_ttft.py [--questions 24] [--num-predict 48]

Prints a markdown table, the command, the machine and the date; writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kb_quality import (
    RESULTS,
    Question,
    check,
    command_line,
    corpus_files,
    ingest,
    load_questions,
    machine,
    normalize,
    percentile,
    serve_on,
)

# name -> environment of the gateway
BUDGETS: dict[str, dict[str, str]] = {
    "0 passages": {"AIGW_KB_CONTEXT_CHUNKS": "0"},
    "1 window (default)": {},
    "2 windows (700 chars)": {"AIGW_KB_CONTEXT_CHUNKS": "2", "AIGW_KB_CONTEXT_CHARS": "700"},
    "4 windows (1800 chars)": {
        "AIGW_KB_CONTEXT_CHUNKS": "4",
        "AIGW_KB_CONTEXT_CHARS": "1800",
        "AIGW_KB_CONTEXT_MARGIN": "2",
    },
    "4 whole chunks (before)": {
        "AIGW_KB_CONTEXT_CHUNKS": "4",
        "AIGW_KB_CONTEXT_CHARS": "4000",
        "AIGW_KB_CONTEXT_WINDOW_CHARS": "4000",
        "AIGW_KB_CONTEXT_MARGIN": "2",
    },
}
WORD = re.compile(r"[a-z][a-z0-9_-]{3,}")


def span_in(span: str, excerpts: str) -> bool:
    a, b = normalize(span), normalize(excerpts)
    if not b:
        return False
    if a in b:
        return True
    match = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return match.size >= 0.5 * len(a)


def overlap(span: str, answer: str) -> float:
    wanted = set(WORD.findall(normalize(span)))
    return len(wanted & set(WORD.findall(normalize(answer)))) / len(wanted) if wanted else 0.0


def ask(client: httpx.Client, q: Question, num_predict: int) -> dict[str, Any]:
    body = {
        "messages": [{"role": "user", "content": q.question}],
        "options": {"temperature": 0, "num_predict": num_predict},
    }
    started = time.perf_counter()
    first: float | None = None
    answer, done = "", {}
    with client.stream("POST", "/api/chat", json=body) as resp:
        if resp.status_code != 200:
            sys.exit(f"/api/chat -> {resp.status_code}: {resp.read().decode()}")
        event = ""
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if event == "token":
                    first = first or time.perf_counter()
                    answer += data["content"]
                elif event == "done":
                    done = data
                elif event == "error":
                    sys.exit(f"chat error: {data}")
    excerpts = " ".join(s.get("excerpt", "") for s in done.get("sources", []))
    return {
        "ttft_ms": ((first or time.perf_counter()) - started) * 1000,
        "evaluated": done.get("prompt_eval_count", 0) - done.get("prompt_cached_count", 0),
        "recall": span_in(q.answer, excerpts),
        "overlap": overlap(q.answer, answer),
        "passages": len(done.get("sources", [])),
        "context_chars": len(excerpts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--num-predict", type=int, default=48)
    parser.add_argument("--budgets", default=",".join(BUDGETS), help="comma-separated names from the table")
    args = parser.parse_args()
    budgets = {name: BUDGETS[name] for name in args.budgets.split(",")}
    questions = load_questions()
    sample = questions[:: max(1, len(questions) // args.questions)][: args.questions]
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kb-ttft-") as tmp:
        data = Path(tmp)
        with serve_on(data, {}) as (base, key), httpx.Client(base_url=base, timeout=600) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            _, seconds, chunks = ingest(client, corpus_files(), timeout=3600)
            print(f"ingested {chunks} chunks in {seconds:.0f} s", file=sys.stderr)
        for name, env in budgets.items():
            served = serve_on(data, {**env, "AIGW_PRELOAD_MODELS": "true"})
            with served as (base, key), httpx.Client(base_url=base, timeout=600) as client:
                client.headers["Authorization"] = f"Bearer {key}"
                check(client.get("/auth/me"))
                ask(client, sample[-1], 1)  # warm: the model's first use in the process
                results = [ask(client, q, args.num_predict) for q in sample]
            slowest = sorted(zip(results, sample, strict=True), key=lambda rq: -rq[0]["ttft_ms"])[:2]
            for r, q in slowest:
                print(f"  slowest: {r['ttft_ms']:.0f} ms, {r['evaluated']} tokens read: {q.id}", file=sys.stderr)
            ttft = [r["ttft_ms"] for r in results]
            rows[name] = {
                "ttft_p50_ms": statistics.median(ttft),
                "ttft_p95_ms": percentile(ttft, 95),
                "evaluated_tokens": statistics.mean(r["evaluated"] for r in results),
                "passages": statistics.mean(r["passages"] for r in results),
                "context_chars": statistics.mean(r["context_chars"] for r in results),
                "context_recall": statistics.mean(r["recall"] for r in results),
                "answer_overlap": statistics.mean(r["overlap"] for r in results),
            }
            print(name, json.dumps(rows[name]), file=sys.stderr)
    print(
        "| budget | TTFT p50 ms | TTFT p95 ms | prompt tokens read | passages | context chars | "
        "context recall | answer overlap |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['ttft_p50_ms']:.0f} | {r['ttft_p95_ms']:.0f} | {r['evaluated_tokens']:.0f} | "
            f"{r['passages']:.1f} | {r['context_chars']:.0f} | {r['context_recall']:.2f} | {r['answer_overlap']:.2f} |"
        )
    meta = {
        "command": command_line(),
        "machine": machine(),
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "questions": len(sample),
        "num_predict": args.num_predict,
    }
    print(f"\n{len(sample)} questions; command: {meta['command']}\nmachine: {meta['machine']}\ndate: {meta['date']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kb_ttft.json").write_text(json.dumps({"rows": rows, **meta}, indent=1))


if __name__ == "__main__":
    main()
