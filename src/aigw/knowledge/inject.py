"""RAG for chat: find the user's most relevant passages for the last question and put them before the conversation.

Only chunks whose cosine similarity to the question reaches `kb_min_similarity` are used, so "hello" or a
question about something the KBs do not cover gets no context at all (and no `sources` in `done`).

Every injected token costs prompt time (the embedded model reads ~150 tokens/s on two cores), so only what
the question needs goes in: chunks within `kb_context_margin` of the best one, at most `kb_context_chunks`,
each cut to the window of sentences around its sentence closest to the question, all within
`kb_context_chars` (bench/kb_ttft.py measured the budget).
"""

from __future__ import annotations

import logging
import re

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.chat.service import InjectedContext
from aigw.engines.embed.base import EmbeddingEngine
from aigw.engines.llm.base import ChatMessage
from aigw.errors import AigwError
from aigw.knowledge.index import Scope
from aigw.knowledge.retrieve import Hit
from aigw.knowledge.service import KnowledgeService
from aigw.store.models import KnowledgeBase

log = logging.getLogger("aigw.knowledge")

PREAMBLE = (
    "Excerpts from the user's knowledge base follow. Answer from them when relevant, citing them as [1]. "
    "If they do not contain the answer, say so."
)
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")


def question_of(messages: list[ChatMessage]) -> str | None:
    for message in reversed(messages):
        if message.role == "user":
            return message.content.strip() or None
    return None


def label(hit: Hit) -> str:
    where = f", page {hit.page}" if hit.page else f", row {hit.row}" if hit.row else ""
    return f"{hit.source}{where}"


def sentences(text: str) -> list[str]:
    return [part for part in (p.strip() for p in _SENTENCE_END.split(text)) if part]


def window(parts: list[str], best: int, max_chars: int) -> str:
    """The sentences around `parts[best]`, growing after it first, up to `max_chars` (the best one cut if longer)."""
    first = last = best
    used = len(parts[best])
    grew = True
    while grew:
        grew = False
        for candidate in (last + 1, first - 1):
            if 0 <= candidate < len(parts) and used + 1 + len(parts[candidate]) <= max_chars:
                used += 1 + len(parts[candidate])
                first, last = min(first, candidate), max(last, candidate)
                grew = True
    return " ".join(parts[first : last + 1])[:max_chars]


class KnowledgeContext:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], service: KnowledgeService) -> None:
        self.sessions = sessions
        self.service = service
        settings = service.settings
        self.embedder: EmbeddingEngine = service.retriever.embedder
        self.max_chunks = settings.kb_context_chunks
        self.max_chars = settings.kb_context_chars
        self.window_chars = settings.kb_context_window_chars
        self.margin = settings.kb_context_margin
        self.min_similarity = settings.kb_min_similarity

    async def context_for(
        self, user_id: int, messages: list[ChatMessage], kb_ids: list[int] | None = None
    ) -> InjectedContext | None:
        """Context from the user's knowledge bases (those of `kb_ids` only, when given) for the last question."""
        question = question_of(messages)
        if not question or self.max_chunks == 0:
            return None
        question = question[:2000]
        async with self.sessions() as db:
            owned = list(await db.scalars(select(KnowledgeBase.id).where(KnowledgeBase.user_id == user_id)))
            kb_ids = owned if kb_ids is None else [kb_id for kb_id in owned if kb_id in set(kb_ids)]
            if not kb_ids:
                return None
            try:
                hits = await self.service.query(db, user_id, kb_ids, question, top_k=self.max_chunks * 2)
            except AigwError as exc:
                # Chat still answers without context when retrieval cannot run (e.g. a remote embedder is down).
                log.warning("knowledge-base retrieval failed; answering without it", extra={"error": exc.message})
                return None
        chosen = self.choose(hits)
        if not chosen:
            return None
        excerpts = await self.excerpts(Scope(kb_ids), question, chosen)
        blocks = [f"[{n}] {label(hit)}\n{text}" for n, (hit, text) in enumerate(zip(chosen, excerpts, strict=True), 1)]
        sources = [
            {
                "id": n,
                "source": hit.source,
                "kb_id": hit.kb_id,
                "document_id": hit.document_id,
                "chunk_id": hit.chunk_id,
                "page": hit.page,
                "row": hit.row,
                "score": hit.score,
                "similarity": hit.similarity,
                "excerpt": text,
            }
            for n, (hit, text) in enumerate(zip(chosen, excerpts, strict=True), 1)
        ]
        return InjectedContext(text=PREAMBLE + "\n\n" + "\n\n".join(blocks), sources=sources)

    def choose(self, hits: list[Hit]) -> list[Hit]:
        """The hits worth their prompt time: similar enough, close to the best, no repeats, within the chunk cap."""
        relevant = [h for h in hits if h.similarity is not None and h.similarity >= self.min_similarity]
        if not relevant:
            return []
        best = max(h.similarity or 0.0 for h in relevant)
        chosen: list[Hit] = []
        seen: set[str] = set()
        for hit in relevant:
            key = " ".join(hit.content.split())
            if (hit.similarity or 0.0) < best - self.margin or key in seen:
                continue
            seen.add(key)
            chosen.append(hit)
            if len(chosen) == self.max_chunks:
                break
        return chosen

    async def excerpts(self, scope: Scope, question: str, hits: list[Hit]) -> list[str]:
        """Each hit cut to the sentences around the one closest to the question, within the character budget."""
        per_hit = max(80, min(self.window_chars, self.max_chars // len(hits)))
        split = [sentences(hit.content) or [hit.content] for hit in hits]
        if all(len(hit.content) <= per_hit for hit in hits):
            return [hit.content for hit in hits]
        flat = [part for parts in split for part in parts]
        try:
            # The search just embedded the question for this scope: its vector comes from the retriever's cache.
            asked = await self.service.retriever.query_vector(scope, question)
            scores = await self.embedder.embed(flat, purpose="query") @ asked
        except AigwError as exc:
            log.warning("sentence scoring failed; using chunk openings", extra={"error": exc.message})
            return [window(parts, 0, per_hit) for parts in split]
        out, start = [], 0
        for parts in split:
            best = int(np.argmax(scores[start : start + len(parts)]))
            out.append(window(parts, best, per_hit))
            start += len(parts)
        return out
