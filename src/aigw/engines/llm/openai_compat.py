"""A chat engine that streams from any OpenAI-compatible `/v1/chat/completions` (vLLM, llama.cpp, OpenAI).

This sits on the gateway's hot path: one pooled client per engine, orjson both ways, and plain dict
access per chunk rather than model validation.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any, Literal

import orjson

from aigw.engines.llm.base import (
    ChatDone,
    ChatEvent,
    ChatMessage,
    ChatOptions,
    ChatRequest,
    EngineRejected,
    FunctionCall,
    TextDelta,
    ToolCall,
    ToolCalls,
)
from aigw.engines.llm.upstream import UpstreamClient, error_text
from aigw.errors import EngineUnavailable

_READY_TIMEOUT = 3.0
# Ollama's option names (ours) to the request fields; top_k, min_p and repeat_penalty are not OpenAI's
# but vLLM and the llama.cpp servers accept them as extra body fields.
_OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "num_predict": "max_tokens",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


class OpenAIChatEngine:
    modality = "chat"

    def __init__(
        self, *, name: str, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0
    ) -> None:
        self.name = name
        self.model = model
        base_url = base_url.rstrip("/")
        self._chat_url = f"{base_url}/chat/completions"
        self._models_url = f"{base_url}/models"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = UpstreamClient(name, headers=headers, timeout=timeout)

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [tool.model_dump() for tool in request.tools]
        body.update(_option_fields(request.options))
        return body

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatEvent]:
        if not request.stream:
            async for event in self._complete(request):
                yield event
            return
        started = time.perf_counter_ns()
        content = orjson.dumps(self.request_body(request))
        calls = _ToolCallFragments()
        usage: dict[str, Any] | None = None
        finish: str | None = None
        deltas = 0
        done = False
        async with self._client.post_lines(self._chat_url, content) as lines:
            async for line in lines:
                # Keep reading past [DONE] to the end of the body, so the connection goes back to the pool.
                if done or not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                chunk = orjson.loads(data)
                if "error" in chunk:
                    raise EngineUnavailable(f"{self.name}: {error_text(chunk) or data[:500].decode(errors='replace')}")
                if chunk.get("usage"):
                    usage = chunk["usage"]
                choices = chunk.get("choices")
                if not choices:
                    continue
                choice = choices[0]
                delta = choice.get("delta")
                if delta:
                    if text := delta.get("content"):
                        deltas += 1
                        yield TextDelta(text)
                    if fragments := delta.get("tool_calls"):
                        calls.add(fragments)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        if not done and finish is None:
            raise EngineUnavailable(f"{self.name}: the stream ended before its last chunk")
        tool_calls = calls.build()
        if tool_calls:
            yield ToolCalls(tool_calls)
        finish_reason: Literal["stop", "length", "tool_calls"]
        finish_reason = "tool_calls" if tool_calls else "length" if finish == "length" else "stop"
        yield ChatDone(
            prompt_tokens=int(usage.get("prompt_tokens") or 0) if usage else 0,
            # Without usage in the stream each content delta is about one token.
            eval_count=int(usage.get("completion_tokens") or 0) if usage else deltas,
            total_duration_ns=time.perf_counter_ns() - started,
            finish_reason=finish_reason,
        )

    async def _complete(self, request: ChatRequest) -> AsyncGenerator[ChatEvent]:
        """One non-streaming call: for a client that reads the answer whole, one JSON body is far
        cheaper to relay than a stream of chunks."""
        started = time.perf_counter_ns()
        body = self.request_body(request)
        body["stream"] = False
        del body["stream_options"]
        reply = await self._client.post_json(self._chat_url, orjson.dumps(body))
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not choices:
            raise EngineUnavailable(f"{self.name}: a completion without choices")
        message = choices[0].get("message") or {}
        if text := message.get("content"):
            yield TextDelta(text)
        calls = _ToolCallFragments()
        calls.add([{**call, "index": i} for i, call in enumerate(message.get("tool_calls") or [])])
        tool_calls = calls.build()
        if tool_calls:
            yield ToolCalls(tool_calls)
        usage = reply.get("usage") or {}
        finish = choices[0].get("finish_reason")
        yield ChatDone(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            eval_count=int(usage.get("completion_tokens") or 0),
            total_duration_ns=time.perf_counter_ns() - started,
            finish_reason="tool_calls" if tool_calls else "length" if finish == "length" else "stop",
        )

    async def ready(self) -> bool:
        return await self._client.ok(self._models_url, _READY_TIMEOUT)

    async def close(self) -> None:
        await self._client.close()


def openai_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Our messages in OpenAI's shape.

    A tool result without a `tool_call_id` (Ollama's API has no ids) answers the oldest unanswered
    call of the assistant turn before it, whose id is made up when the call had none.
    """
    out: list[dict[str, Any]] = []
    unanswered: list[str] = []
    for message in messages:
        if message.role == "tool":
            call_id = message.tool_call_id
            if call_id is None and unanswered:
                call_id = unanswered[0]
            if call_id in unanswered:
                unanswered.remove(call_id)
            item: dict[str, Any] = {"role": "tool", "content": message.content}
            if call_id is not None:
                item["tool_call_id"] = call_id
            out.append(item)
            continue
        item = {"role": message.role, "content": message.content}
        if message.images:
            item["content"] = [
                {"type": "text", "text": message.content},
                *({"type": "image_url", "image_url": {"url": image_data_url(image)}} for image in message.images),
            ]
        if message.tool_calls:
            unanswered = [call.id or f"call_{len(out)}_{i}" for i, call in enumerate(message.tool_calls)]
            item["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": orjson.dumps(call.function.arguments).decode(),
                    },
                }
                for call_id, call in zip(unanswered, message.tool_calls, strict=True)
            ]
        out.append(item)
    return out


def image_data_url(image: str) -> str:
    """A data URL for a base64 image, its type read from its first bytes (JPEG unless PNG, GIF or WebP)."""
    kinds = {"iVBOR": "image/png", "R0lGO": "image/gif", "UklGR": "image/webp"}
    return f"data:{kinds.get(image[:5], 'image/jpeg')};base64,{image}"


def _option_fields(options: ChatOptions) -> dict[str, Any]:
    return {_OPTION_FIELDS[key]: value for key, value in options.model_dump(exclude_none=True).items()}


class _ToolCallFragments:
    """Tool calls streamed in pieces keyed by `index`: id and name once (some servers repeat them whole),
    the arguments as JSON text split anywhere."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, tuple[list[str | None], list[str]]] = {}

    def add(self, fragments: list[dict[str, Any]]) -> None:
        for fragment in fragments:
            index = fragment.get("index", len(self._calls) if fragment.get("id") else 0)
            head, pieces = self._calls.setdefault(index, ([None, None], []))
            if fragment.get("id"):
                head[0] = fragment["id"]
            function = fragment.get("function") or {}
            if function.get("name"):
                head[1] = function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                pieces.append(arguments)
            elif isinstance(arguments, dict):  # not OpenAI's wire format, but seen from some servers
                pieces.append(orjson.dumps(arguments).decode())

    def build(self) -> list[ToolCall]:
        calls = []
        for index in sorted(self._calls):
            (call_id, name), pieces = self._calls[index]
            if not name:
                raise EngineRejected(f"The upstream sent tool call {index} without a function name")
            text = "".join(pieces).strip()
            try:
                arguments = orjson.loads(text) if text else {}
            except orjson.JSONDecodeError as exc:
                raise EngineRejected(
                    f"The upstream's arguments for tool {name!r} are not valid JSON: {text[:200]!r}"
                ) from exc
            if not isinstance(arguments, dict):
                raise EngineRejected(
                    f"The upstream's arguments for tool {name!r} are not a JSON object: {text[:200]!r}"
                )
            calls.append(ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments)))
        return calls
