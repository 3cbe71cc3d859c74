"""What a chat's knowledge-base context holds (knowledge/inject.py): few passages, cut to the sentences that matter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from aigw.engines.embed.base import Purpose
from aigw.engines.embed.local import SentenceTransformerEngine
from aigw.knowledge.index import Scope
from aigw.knowledge.inject import KnowledgeContext, sentences, window
from aigw.knowledge.retrieve import Hit, Retriever


def hit(content: str, similarity: float, chunk_id: int = 1) -> Hit:
    return Hit(chunk_id, 1, 1, content, "", "doc.txt", None, None, similarity, similarity)


def chooser(max_chunks: int = 2, margin: float = 0.1, min_similarity: float = 0.3) -> KnowledgeContext:
    context = KnowledgeContext.__new__(KnowledgeContext)
    context.max_chunks, context.margin, context.min_similarity = max_chunks, margin, min_similarity
    return context


def test_sentences_split_at_ends_and_line_breaks() -> None:
    assert sentences("One. Two? Three!\nFour: five") == ["One.", "Two?", "Three!", "Four:", "five"]


def test_a_window_grows_around_the_best_sentence_within_its_budget() -> None:
    parts = ["a" * 50, "b" * 50, "BEST" * 10, "c" * 50, "d" * 50]
    text = window(parts, 2, 145)
    assert text == " ".join(parts[1:4]) and len(text) <= 145  # one sentence after, one before, no more
    assert window(parts, 2, 20) == ("BEST" * 10)[:20]  # a best sentence longer than the budget is cut, not dropped


def test_only_passages_close_to_the_best_are_chosen_without_repeats() -> None:
    hits = [hit("alpha", 0.8, 1), hit("alpha", 0.78, 2), hit("beta", 0.75, 3), hit("gamma", 0.6, 4)]
    assert [h.chunk_id for h in chooser().choose(hits)] == [1, 3]  # the repeat and the distant one are left out
    assert [h.chunk_id for h in chooser(max_chunks=1).choose(hits)] == [1]
    assert chooser().choose([hit("weak", 0.2)]) == []  # below the similarity floor: no context at all


class CountingEngine:
    """The real embedded model, counting how often it is asked."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls = 0

    async def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Any:
        self.calls += 1
        return await self.engine.embed(texts, purpose=purpose)


async def test_a_repeated_query_is_embedded_once(tmp_path: Path) -> None:
    engine = SentenceTransformerEngine(name="minilm-cache", runtime="onnx", models_dir=tmp_path)
    counting = CountingEngine(engine)
    retriever = Retriever(cast(Any, None), cast(Any, counting), cache_size=2)
    try:
        mine, theirs = Scope([1, 2]), Scope([3])
        first = await retriever.query_vector(mine, "How do I rotate logs?")
        again = await retriever.query_vector(Scope([2, 1]), "How do I rotate logs?")
        assert counting.calls == 1 and np.array_equal(first, again)
        await retriever.query_vector(theirs, "How do I rotate logs?")  # another user's search is not served mine
        assert counting.calls == 2
        await retriever.query_vector(mine, "third")  # the cache holds two: the first question falls out
        await retriever.query_vector(mine, "How do I rotate logs?")
        assert counting.calls == 4
    finally:
        await engine.close()
