"""Check bench/kb_quality/questions.jsonl against the corpus; exit 1 on any problem.

For every question: the fields are there, the id is unique, the document exists, the answer span is 20-200
characters, and the span, normalised exactly as the harness compares chunks (bench/kb_quality.py
`normalize`: NFC, typographic quotes made plain, markdown ` and * dropped, whitespace collapsed, lower case),
occurs in its own document and in no other document of the corpus. Also reports how many questions each
document has and how often the span occurs in its own document.

    .venv/bin/python bench/kb_quality/check_questions.py
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("kb_quality_harness", HERE.parent / "kb_quality.py")
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness  # dataclasses look their module up there
_spec.loader.exec_module(harness)


def main() -> int:
    docs = {p.name: harness.normalize(p.read_text()) for p in harness.corpus_files()}
    problems: list[str] = []
    seen: set[str] = set()
    per_doc: Counter[str] = Counter()
    repeated = 0
    lines = [ln for ln in harness.QUESTIONS.read_text().splitlines() if ln.strip()]
    for n, line in enumerate(lines, 1):
        row = json.loads(line)
        if set(row) != {"id", "question", "doc", "answer"}:
            problems.append(f"line {n}: fields {sorted(row)}")
            continue
        qid, doc, span = row["id"], row["doc"], harness.normalize(row["answer"])
        if qid in seen:
            problems.append(f"{qid}: duplicate id")
        seen.add(qid)
        if doc not in docs:
            problems.append(f"{qid}: no document {doc}")
            continue
        per_doc[doc] += 1
        if not 20 <= len(row["answer"]) <= 200:
            problems.append(f"{qid}: answer is {len(row['answer'])} characters")
        count = docs[doc].count(span)
        if count == 0:
            problems.append(f"{qid}: answer not found in {doc}: {row['answer']!r}")
        repeated += count > 1
        if others := [name for name, text in docs.items() if name != doc and span in text]:
            problems.append(f"{qid}: answer also found in {', '.join(others)}")
    print(f"{len(lines)} questions over {len(per_doc)} of {len(docs)} documents; {repeated} spans occur more than once")
    print(f"in their own document; questions per document: min {min(per_doc.values())}, max {max(per_doc.values())}")
    if missing := sorted(set(docs) - set(per_doc)):
        print(f"documents without a question: {', '.join(missing)}")
    for problem in problems:
        print(f"PROBLEM {problem}")
    print("ok" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
