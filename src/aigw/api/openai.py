"""The OpenAI-compatible surface: GET /v1/models, POST /v1/chat/completions and POST /v1/embeddings, on the same keys
and limits."""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from starlette.responses import Response, StreamingResponse

from aigw.api.chat import SSE_HEADERS, open_stream
from aigw.api.sse import coalesced
from aigw.chat.service import ChatSession
from aigw.deps import CurrentPrincipal, RuntimeDep
from aigw.embeddings.service import Embeddings
from aigw.engines.llm.base import (
    ChatDone,
    ChatEvent,
    ChatMessage,
    ChatOptions,
    ChatRequest,
    FunctionCall,
    TextDelta,
    Tool,
    ToolCall,
    ToolCalls,
)
from aigw.errors import AigwError, InvalidField

router = APIRouter(prefix="/v1", tags=["openai"])
log = logging.getLogger("aigw.openai")


class OpenAIFunctionCall(BaseModel):
    name: str
    arguments: str = "{}"


class OpenAIToolCall(BaseModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: OpenAIFunctionCall


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[OpenAIToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionBody(BaseModel):
    # OpenAI's request has many fields; the ones we do not use are ignored, as other servers do.
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=1000)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    n: int = Field(default=1, ge=1, le=1, description="Only one choice is generated")


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") != "text":
            raise InvalidField(
                f"Message parts of type {part.get('type')!r} are not supported here", code="unsupported_content"
            )
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def _arguments(call: OpenAIToolCall) -> dict[str, Any]:
    try:
        value = orjson.loads(call.function.arguments or "{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidField(f"tool_calls[].function.arguments of {call.function.name!r} is not JSON") from exc
    if not isinstance(value, dict):
        raise InvalidField(f"tool_calls[].function.arguments of {call.function.name!r} is not a JSON object")
    return value


def to_chat_request(body: ChatCompletionBody) -> ChatRequest:
    messages = [
        ChatMessage(
            role="system" if m.role == "developer" else m.role,
            content=_text(m.content),
            name=m.name,
            tool_call_id=m.tool_call_id,
            tool_calls=[
                ToolCall(id=c.id, function=FunctionCall(name=c.function.name, arguments=_arguments(c)))
                for c in m.tool_calls
            ]
            if m.tool_calls
            else None,
        )
        for m in body.messages
    ]
    tools = body.tools or []
    if body.tool_choice == "none":
        tools = []
    elif isinstance(body.tool_choice, dict):
        wanted = body.tool_choice.get("function", {}).get("name")
        tools = [t for t in tools if t.function.name == wanted]
        if not tools:
            raise InvalidField(f"tool_choice names {wanted!r}, which is not among the tools")
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    options = ChatOptions(
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop,
        num_predict=body.max_completion_tokens or body.max_tokens,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
    )
    return ChatRequest(messages=messages, tools=tools, options=options, stream=body.stream)


def _openai_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id or f"call_{os.urandom(6).hex()}",
            "type": "function",
            "function": {"name": c.function.name, "arguments": orjson.dumps(c.function.arguments).decode()},
        }
        for c in calls
    ]


def _usage(session: ChatSession) -> dict[str, Any]:
    return {
        "prompt_tokens": session.prompt_tokens,
        "completion_tokens": session.eval_count,
        "total_tokens": session.prompt_tokens + session.eval_count,
        "prompt_tokens_details": {"cached_tokens": session.cached_tokens},
    }


@router.get("/models", summary="The chat and embedding models this gateway serves")
async def list_models(_: CurrentPrincipal, runtime: RuntimeDep) -> dict[str, Any]:
    names = [*runtime.chat.models, *(n for n in runtime.embeddings.models if n not in runtime.chat.models)]
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "aigw"} for name in names],
    }


class EmbeddingsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. `user`, as for chat completions
    model: str
    input: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    @field_validator("input", mode="wrap")
    @classmethod
    def _one_of_the_input_shapes(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:  # the union's four error lists say less than one sentence
            raise ValueError(
                "must be a string, a list of strings, a list of token ids or a list of lists of token ids"
            ) from None


def _embedding_payload(result: Embeddings, encoding: Literal["float", "base64"]) -> dict[str, Any]:
    rows = result.vectors.astype("<f4", copy=False)
    data: list[dict[str, Any]] = [
        # OpenAI's base64 is the vector's little-endian float32 bytes; a float list is serialised by orjson.
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(row.tobytes()).decode() if encoding == "base64" else row,
        }
        for i, row in enumerate(rows)
    ]
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return {"object": "list", "data": data, "model": result.model, "usage": usage}


@router.post("/embeddings", summary="OpenAI-compatible embeddings (float or base64, usage)")
async def embeddings(body: EmbeddingsBody, request: Request, _: CurrentPrincipal, runtime: RuntimeDep) -> Response:
    result = await runtime.embeddings.embed(body.model, body.input, dimensions=body.dimensions)
    meter = request.state.usage
    meter.prompt_tokens, meter.completion_tokens = result.prompt_tokens, 0
    payload = _embedding_payload(result, body.encoding_format)
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


@router.post("/chat/completions", summary="OpenAI-compatible chat completions (stream or not, tools, usage)")
async def chat_completions(
    body: ChatCompletionBody, request: Request, principal: CurrentPrincipal, runtime: RuntimeDep
) -> Response:
    # The OpenAI-compatible API is a plain model endpoint: clients bring their own context (no KB injection).
    session = await runtime.chat.start(principal.user_id, body.model, to_chat_request(body), inject=False)
    first, events = await open_stream(session)
    completion_id = f"chatcmpl-{os.urandom(12).hex()}"
    meta = {"id": completion_id, "created": int(time.time()), "model": session.model.name}
    meter = request.state.usage
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            coalesced(_chunks(session, first, events, meta, include_usage, meter)),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    text: list[str] = []
    calls: list[ToolCall] = []
    finish = "stop"
    try:
        async with aclosing(events) as rest:
            event: ChatEvent | None = first
            while event is not None:
                if isinstance(event, TextDelta):
                    text.append(event.text)
                elif isinstance(event, ToolCalls):
                    calls.extend(event.calls)
                elif isinstance(event, ChatDone):
                    finish = event.finish_reason
                event = await anext(rest, None)
    finally:
        meter.prompt_tokens, meter.completion_tokens = session.prompt_tokens, session.eval_count
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = _openai_calls(calls)
    payload = {
        **meta,
        "object": "chat.completion",
        "system_fingerprint": session.engine_name,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _usage(session),
    }
    total_ms = (time.perf_counter() - request.state.started) * 1000
    engine_ms = session.engine_ns / 1e6
    timing = f"gateway;dur={max(0.0, total_ms - engine_ms):.3f}, engine;dur={engine_ms:.3f}"
    return Response(orjson.dumps(payload), media_type="application/json", headers={"Server-Timing": timing})


async def _chunks(
    session: ChatSession,
    first: ChatEvent,
    events: AsyncGenerator[ChatEvent],
    meta: dict[str, Any],
    include_usage: bool,
    meter: Any,
) -> AsyncGenerator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {
            **meta,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        event: ChatEvent | None = first
        async with aclosing(events) as rest:
            while event is not None:
                if isinstance(event, TextDelta):
                    yield chunk({"content": event.text})
                elif isinstance(event, ToolCalls):
                    calls = [{"index": i, **c} for i, c in enumerate(_openai_calls(event.calls))]
                    yield chunk({"tool_calls": calls})
                elif isinstance(event, ChatDone):
                    yield chunk({}, event.finish_reason)
                event = await anext(rest, None)
        if include_usage:
            yield (
                b"data: "
                + orjson.dumps({**meta, "object": "chat.completion.chunk", "choices": [], "usage": _usage(session)})
                + b"\n\n"
            )
    except AigwError as exc:
        yield (
            b"data: " + orjson.dumps({"error": {"message": exc.message, "type": exc.code, "code": exc.code}}) + b"\n\n"
        )
    except Exception:  # a stream that already started reports failure in-band, then ends
        log.exception("completion stream failed")
        yield b'data: {"error": {"message": "Internal error while generating", "type": "internal"}}\n\n'
    finally:
        meter.prompt_tokens, meter.completion_tokens = session.prompt_tokens, session.eval_count
    yield b"data: [DONE]\n\n"
