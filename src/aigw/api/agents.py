"""Agent routes: CRUD and chat, with the seed's fields (API.md rows 25-30)."""

from __future__ import annotations

import json
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from aigw.agents.service import AgentFields
from aigw.api.chat import ChatBody, chat_request, open_stream, stream_chat
from aigw.deps import CurrentPrincipal, DbSession, RowId, RuntimeDep
from aigw.store.models import Agent

router = APIRouter(prefix="/api/agents", tags=["agents"])
Color = Field(default=None, pattern=r"^#[0-9A-Fa-f]{6}$", description="Hex colour, default #6366f1")


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    system_prompt: str = Field(min_length=1, max_length=20_000)
    description: str | None = Field(default=None, max_length=2000)
    icon: str | None = Field(default=None, description="bot, chat, mic, chart, pen, code or globe")
    color: str | None = Color
    capabilities: str | None = Field(default=None, max_length=2000, description="A JSON array string: '[\"KB\"]'")
    is_public: bool | None = Field(default=None, description="Visible to every user (admins only)")
    model: str | None = Field(default=None, max_length=100, description="A configured chat model")
    kb_ids: list[int] | None = Field(default=None, max_length=100, description="The owner's knowledge bases to draw on")


class AgentUpdate(AgentIn):
    name: str | None = Field(default=None, min_length=1, max_length=200)  # type: ignore[assignment]
    system_prompt: str | None = Field(default=None, min_length=1, max_length=20_000)  # type: ignore[assignment]


class AgentOut(BaseModel):
    id: int
    name: str
    description: str
    system_prompt: str
    icon: str
    color: str
    capabilities: str
    is_public: bool
    model: str | None
    kb_ids: list[int] | None
    owner_id: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, agent: Agent) -> AgentOut:
        return cls(
            id=agent.id,
            name=agent.name,
            description=agent.description,
            system_prompt=agent.system_prompt,
            icon=agent.icon,
            color=agent.color,
            capabilities=agent.capabilities,
            is_public=agent.is_public,
            model=agent.model,
            kb_ids=json.loads(agent.kb_ids) if agent.kb_ids else None,
            owner_id=agent.user_id,
            created_at=agent.created_at,
            updated_at=agent.updated_at,
        )


def fields(body: AgentIn) -> AgentFields:
    return AgentFields(**body.model_dump(exclude_unset=True))


@router.get("", summary="Agents you can use: the public ones and your own")
async def list_agents(principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep) -> list[AgentOut]:
    return [AgentOut.of(agent) for agent in await runtime.agents.list(db, principal)]


@router.get("/{agent_id}", summary="One agent")
async def get_agent(agent_id: RowId, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep) -> AgentOut:
    return AgentOut.of(await runtime.agents.get(db, principal, agent_id))


@router.post("", status_code=201, summary="Create an agent (only an admin may make it public)")
async def create_agent(body: AgentIn, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep) -> AgentOut:
    return AgentOut.of(await runtime.agents.create(db, principal, fields(body)))


@router.put("/{agent_id}", summary="Change an agent (its owner or an admin)")
async def update_agent(
    agent_id: RowId, body: AgentUpdate, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep
) -> AgentOut:
    return AgentOut.of(await runtime.agents.update(db, principal, agent_id, fields(body)))


@router.delete("/{agent_id}", summary="Delete an agent (its owner or an admin)")
async def delete_agent(
    agent_id: RowId, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep
) -> dict[str, bool]:
    await runtime.agents.delete(db, principal, agent_id)
    return {"success": True}


@router.post("/{agent_id}/chat", summary="Chat with an agent (SSE exactly as /api/chat)")
async def chat_with_agent(
    agent_id: RowId, body: ChatBody, request: Request, principal: CurrentPrincipal, runtime: RuntimeDep
) -> StreamingResponse:
    session = await runtime.agents.start_chat(principal, agent_id, body.model, chat_request(body))
    first, events = await open_stream(session)
    return stream_chat(session, first, events, request)
