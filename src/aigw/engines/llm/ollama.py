"""A chat engine that streams from an Ollama server's `/api/chat` (newline-delimited JSON)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Literal

import orjson

from aigw.engines.llm.base import (
    ChatDone,
    ChatEvent,
    ChatMessage,
    ChatRequest,
    EngineRejected,
    FunctionCall,
    TextDelta,
    ToolCall,
    ToolCalls,
)
from aigw.engines.llm.upstream import UpstreamClient
from aigw.errors import EngineUnavailable

_READY_TIMEOUT = 3.0
FinishReason = Literal["stop", "length", "tool_calls"]


class OllamaChatEngine:
    modality = "chat"

    def __init__(
        self, *, name: str, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0
    ) -> None:
        self.name = name
        self.model = model
        base_url = base_url.rstrip("/")
        self._chat_url = f"{base_url}/api/chat"
        self._tags_url = f"{base_url}/api/tags"
        # An Ollama behind an authenticating proxy (or ollama.com) takes a bearer token.
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = UpstreamClient(name, headers=headers, timeout=timeout)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatEvent]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_ollama_message(m) for m in request.messages],
            "stream": True,
            "options": request.options.model_dump(exclude_none=True),
        }
        if request.tools:
            body["tools"] = [tool.model_dump() for tool in request.tools]
        calls: list[ToolCall] = []
        final: dict[str, Any] | None = None
        async with self._client.post_lines(self._chat_url, orjson.dumps(body)) as lines:
            async for line in lines:
                # Read to the end of the body after the final record, so the connection goes back to the pool.
                if not line or final is not None:
                    continue
                chunk = orjson.loads(line)
                if "error" in chunk:
                    raise EngineUnavailable(f"{self.name}: {chunk['error']}")
                message = chunk.get("message") or {}
                if content := message.get("content"):
                    yield TextDelta(content)
                if tool_calls := message.get("tool_calls"):
                    calls.extend(_tool_call(call) for call in tool_calls)
                if chunk.get("done"):
                    final = chunk
        if final is None:
            raise EngineUnavailable(f"{self.name}: the stream ended before its final record")
        if calls:
            yield ToolCalls(calls)
        yield _chat_done(final, tool_calls=bool(calls))

    async def ready(self) -> bool:
        return await self._client.ok(self._tags_url, _READY_TIMEOUT)

    async def close(self) -> None:
        await self._client.close()


def _ollama_message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": call.function.name, "arguments": call.function.arguments}}
            for call in message.tool_calls
        ]
    if message.role == "tool" and message.name:
        out["tool_name"] = message.name
    if message.images:
        out["images"] = message.images
    return out


def _tool_call(call: dict[str, Any]) -> ToolCall:
    function = call.get("function") or {}
    arguments = function.get("arguments") or {}
    if isinstance(arguments, str):  # some models' templates hand back the JSON text
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError as exc:
            raise EngineRejected(f"Tool call arguments are not valid JSON: {arguments[:200]!r}") from exc
    if not isinstance(arguments, dict):
        raise EngineRejected(f"Tool call arguments are not a JSON object: {arguments!r:.200}")
    return ToolCall(id=call.get("id"), function=FunctionCall(name=function.get("name", ""), arguments=arguments))


def _chat_done(final: dict[str, Any], *, tool_calls: bool) -> ChatDone:
    finish_reason: FinishReason
    if tool_calls:
        finish_reason = "tool_calls"
    elif final.get("done_reason") == "length":
        finish_reason = "length"
    else:
        finish_reason = "stop"
    return ChatDone(
        prompt_tokens=int(final.get("prompt_eval_count") or 0),
        eval_count=int(final.get("eval_count") or 0),
        total_duration_ns=int(final.get("total_duration") or 0),
        finish_reason=finish_reason,
    )
