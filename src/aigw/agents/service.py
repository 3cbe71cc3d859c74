"""Agents: named system prompts with an icon and a colour, private to their owner or public to everyone, and a chat
that runs through the same chat service as /api/chat. Knows nothing of HTTP.

Who may do what: everyone sees public agents and their own; an admin sees and manages all; only an admin makes an
agent public; the built-in agents (no owner) are managed by admins. Another user's private agent is "not found",
so its existence does not leak.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.auth.principal import Principal
from aigw.chat.service import ChatService, ChatSession
from aigw.engines.llm.base import ChatMessage, ChatRequest
from aigw.errors import Forbidden, InvalidField, NotFound
from aigw.store.models import Agent, KnowledgeBase, utcnow

ICONS = ("bot", "chat", "mic", "chart", "pen", "code", "globe")


@dataclass
class AgentFields:
    """What a client sets; None leaves a field as it is on update (and takes the default on create)."""

    name: str | None = None
    system_prompt: str | None = None
    description: str | None = None
    icon: str | None = None
    color: str | None = None
    capabilities: str | None = None
    is_public: bool | None = None
    model: str | None = None
    kb_ids: list[int] | None = None


class AgentService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], chat: ChatService) -> None:
        self.sessions = sessions
        self.chat = chat

    async def list(self, db: AsyncSession, principal: Principal) -> list[Agent]:
        query = select(Agent).order_by(Agent.id)
        if not principal.is_admin:
            query = query.where(or_(Agent.is_public.is_(True), Agent.user_id == principal.user_id))
        return list(await db.scalars(query))

    async def get(self, db: AsyncSession, principal: Principal, agent_id: int) -> Agent:
        agent = await db.get(Agent, agent_id)
        if agent is None or not (agent.is_public or principal.is_admin or agent.user_id == principal.user_id):
            raise NotFound("Agent not found", code="agent_not_found")
        return agent

    async def create(self, db: AsyncSession, principal: Principal, fields: AgentFields) -> Agent:
        if not fields.name or not fields.system_prompt:
            raise InvalidField("An agent needs a name and a system_prompt", code="invalid_agent")
        agent = Agent(user_id=principal.user_id, created_at=utcnow())
        await self._apply(db, principal, agent, fields)
        db.add(agent)
        await db.commit()
        return agent

    async def update(self, db: AsyncSession, principal: Principal, agent_id: int, fields: AgentFields) -> Agent:
        agent = await self._owned(db, principal, agent_id)
        await self._apply(db, principal, agent, fields)
        await db.commit()
        return agent

    async def delete(self, db: AsyncSession, principal: Principal, agent_id: int) -> None:
        agent = await self._owned(db, principal, agent_id)
        await db.delete(agent)
        await db.commit()

    async def start_chat(
        self, principal: Principal, agent_id: int, model: str | None, request: ChatRequest
    ) -> ChatSession:
        """The agent's system prompt first, then the caller's system message, then (added by the chat service) the
        knowledge-base context from the agent's knowledge bases, or all of the caller's. The database connection is
        given back before the model runs."""
        async with self.sessions() as db:
            agent = await self.get(db, principal, agent_id)
        messages = request.messages
        prompt = agent.system_prompt
        if messages and messages[0].role == "system":
            prompt = f"{prompt}\n\n{messages[0].content}"
            messages = messages[1:]
        request.messages = [ChatMessage(role="system", content=prompt), *messages]
        kb_ids = json.loads(agent.kb_ids) if agent.kb_ids else None
        if kb_ids is not None and agent.user_id != principal.user_id:
            kb_ids = None  # another owner's knowledge bases are not the caller's to read: the caller's own are used
        return await self.chat.start(principal.user_id, agent.model or model, request, kb_ids=kb_ids)

    async def _owned(self, db: AsyncSession, principal: Principal, agent_id: int) -> Agent:
        agent = await self.get(db, principal, agent_id)
        if not principal.is_admin and agent.user_id != principal.user_id:
            raise Forbidden("Only the agent's owner or an admin may change it", code="not_owner")
        return agent

    async def _apply(self, db: AsyncSession, principal: Principal, agent: Agent, fields: AgentFields) -> None:
        if fields.is_public and not principal.is_admin:
            raise Forbidden("Only an admin may make an agent public", code="admin_only")
        if fields.icon is not None and fields.icon not in ICONS:
            raise InvalidField(f"icon must be one of: {', '.join(ICONS)}", code="invalid_icon")
        if fields.capabilities is not None:
            _check_capabilities(fields.capabilities)
        if fields.model is not None and fields.model not in self.chat.models:
            raise InvalidField(f"Unknown model {fields.model!r}; GET /v1/models lists them", code="unknown_model")
        if fields.kb_ids is not None:
            owner = agent.user_id if agent.user_id is not None else principal.user_id
            owned = set(await db.scalars(select(KnowledgeBase.id).where(KnowledgeBase.user_id == owner)))
            if not set(fields.kb_ids) <= owned:
                raise InvalidField("kb_ids must be knowledge bases of the agent's owner", code="invalid_kb_ids")
        values: dict[str, Any] = {
            "name": fields.name,
            "system_prompt": fields.system_prompt,
            "description": fields.description,
            "icon": fields.icon,
            "color": fields.color,
            "capabilities": fields.capabilities,
            "is_public": fields.is_public,
            "model": fields.model,
            "kb_ids": json.dumps(fields.kb_ids) if fields.kb_ids is not None else None,
        }
        for name, value in values.items():
            if value is not None:
                setattr(agent, name, value)
        agent.updated_at = utcnow()


def _check_capabilities(text: str) -> None:
    try:
        value = json.loads(text)
    except ValueError as exc:
        message = "capabilities must be a JSON array string, e.g. '[\"KB\"]'"
        raise InvalidField(message, code="invalid_capabilities") from exc
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidField("capabilities must be a JSON array of strings", code="invalid_capabilities")
