"""RAG for chat: find the user's most relevant chunks for the last question and put them before the conversation.

Only chunks whose cosine similarity to the question reaches `kb_min_similarity` are used, so "hello" or a
question about something the KBs do not cover gets no context at all (and no `sources` in `done`).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.chat.service import InjectedContext
from aigw.engines.llm.base import ChatMessage
from aigw.errors import AigwError
from aigw.knowledge.retrieve import Hit
from aigw.knowledge.service import KnowledgeService
from aigw.store.models import KnowledgeBase

log = logging.getLogger("aigw.knowledge")

PREAMBLE = (
    "Excerpts from the user's knowledge base follow. Use them to answer when they are relevant, and cite them "
    "by their number in brackets, e.g. [1]. If they do not contain the answer, say so rather than guessing."
)


def question_of(messages: list[ChatMessage]) -> str | None:
    for message in reversed(messages):
        if message.role == "user":
            return message.content.strip() or None
    return None


def label(hit: Hit) -> str:
    where = f", page {hit.page}" if hit.page else f", row {hit.row}" if hit.row else ""
    return f"{hit.source}{where}"


class KnowledgeContext:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], service: KnowledgeService) -> None:
        self.sessions = sessions
        self.service = service
        settings = service.settings
        self.max_chunks = settings.kb_context_chunks
        self.max_chars = settings.kb_context_chars
        self.min_similarity = settings.kb_min_similarity

    async def context_for(self, user_id: int, messages: list[ChatMessage]) -> InjectedContext | None:
        question = question_of(messages)
        if not question or self.max_chunks == 0:
            return None
        async with self.sessions() as db:
            if await db.scalar(select(KnowledgeBase.id).where(KnowledgeBase.user_id == user_id).limit(1)) is None:
                return None
            try:
                hits = await self.service.query(db, user_id, None, question[:2000], top_k=self.max_chunks * 2)
            except AigwError as exc:
                # Chat still answers without context when retrieval cannot run (e.g. a remote embedder is down).
                log.warning("knowledge-base retrieval failed; answering without it", extra={"error": exc.message})
                return None
        relevant = [h for h in hits if h.similarity is not None and h.similarity >= self.min_similarity]
        chosen: list[Hit] = []
        used = 0
        for hit in relevant[: self.max_chunks]:
            if chosen and used + len(hit.content) > self.max_chars:
                break
            chosen.append(hit)
            used += len(hit.content)
        if not chosen:
            return None
        blocks = [f"[{n}] {label(hit)}\n{hit.content[: self.max_chars]}" for n, hit in enumerate(chosen, 1)]
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
            }
            for n, hit in enumerate(chosen, 1)
        ]
        return InjectedContext(text=PREAMBLE + "\n\n" + "\n\n".join(blocks), sources=sources)
