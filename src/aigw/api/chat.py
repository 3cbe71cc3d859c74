"""POST /api/chat: streaming chat with tool calling, as Server-Sent Events (API.md row 5)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import StreamingResponse

from aigw.api.sse import coalesced
from aigw.chat.service import ChatSession
from aigw.deps import CurrentPrincipal, RuntimeDep
from aigw.engines.llm.base import ChatEvent, ChatMessage, ChatOptions, ChatRequest, TextDelta, Tool, ToolCalls
from aigw.errors import AigwError, EngineUnavailable, InvalidField

router = APIRouter(tags=["chat"])
log = logging.getLogger("aigw.chat")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    tools: list[Tool] = Field(default_factory=list, max_length=128)
    model: str | None = None
    options: ChatOptions = Field(default_factory=ChatOptions)
    stream: bool = Field(default=True, description="Accepted for Ollama clients; /api/chat always streams")


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def chat_event_frame(event: ChatEvent, session: ChatSession, done_extra: dict[str, Any] | None = None) -> bytes:
    if isinstance(event, TextDelta):
        return sse("token", {"content": event.text, "done": False})
    if isinstance(event, ToolCalls):
        calls = [
            {"id": c.id, "function": {"name": c.function.name, "arguments": c.function.arguments}} for c in event.calls
        ]
        return sse("tool_call", {"tool_calls": calls})
    done: dict[str, Any] = {
        "content": "",
        "done": True,
        "total_duration": event.total_duration_ns,
        "eval_count": event.eval_count,
        "prompt_eval_count": event.prompt_tokens,
        "prompt_cached_count": event.cached_tokens,
        "done_reason": event.finish_reason,
        "model": session.model.name,
    }
    if session.sources:
        done["sources"] = session.sources
    if done_extra:
        done.update(done_extra)
    return sse("done", done)


async def open_stream(session: ChatSession) -> tuple[ChatEvent, AsyncGenerator[ChatEvent]]:
    """Start the engine and wait for its first event, so a busy or unreachable engine is an HTTP error
    (503 with Retry-After) rather than an error event inside a 200 stream."""
    events = session.events()
    try:
        first = await anext(events)
    except StopAsyncIteration as exc:
        raise EngineUnavailable("The engine ended without an answer") from exc
    except BaseException:
        await events.aclose()
        raise
    return first, events


def stream_chat(
    session: ChatSession,
    first: ChatEvent,
    events: AsyncGenerator[ChatEvent],
    request: Request,
    done_extra: dict[str, Any] | None = None,
) -> StreamingResponse:
    meter = request.state.usage

    async def frames() -> AsyncGenerator[bytes]:
        try:
            yield chat_event_frame(first, session, done_extra)
            async with aclosing(events) as rest:
                async for event in rest:
                    yield chat_event_frame(event, session, done_extra)
        except AigwError as exc:
            yield sse("error", {"error": exc.message, "code": exc.code})
        except Exception:  # a stream that already started reports failure in-band, then ends
            log.exception("chat stream failed")
            yield sse("error", {"error": "Internal error while generating", "code": "internal"})
        finally:
            meter.prompt_tokens, meter.completion_tokens = session.prompt_tokens, session.eval_count

    return StreamingResponse(coalesced(frames()), media_type="text/event-stream", headers=SSE_HEADERS)


def chat_request(body: ChatBody) -> ChatRequest:
    if body.messages[-1].role == "assistant" and not body.messages[-1].tool_calls:
        raise InvalidField("The last message must come from the user or a tool", code="invalid_messages")
    return ChatRequest(messages=body.messages, tools=body.tools, options=body.options)


@router.post("/api/chat", summary="Streaming chat with tool calling (SSE: token, tool_call, done, error)")
async def chat(body: ChatBody, request: Request, principal: CurrentPrincipal, runtime: RuntimeDep) -> StreamingResponse:
    session = await runtime.chat.start(principal.user_id, body.model, chat_request(body))
    first, events = await open_stream(session)
    return stream_chat(session, first, events, request)
