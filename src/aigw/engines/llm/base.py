"""The chat-engine protocol: messages and tools in, a stream of text deltas, tool calls and a final record out.

Every chat engine (embedded llama.cpp, Ollama, any OpenAI-compatible server) implements `stream`.
It is an async generator: closing it (the client went away) must stop the generation. Engines
raise `EngineUnavailable` for what another backend might serve (connection refused, timeout, 5xx)
and `EngineRejected` for what none would (the upstream said 4xx); a fallback chain moves on only
for the first.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from aigw.errors import AigwError


class EngineRejected(AigwError):
    """The engine refused the request itself (an upstream 4xx): retrying elsewhere would not help."""

    status = 400
    code = "engine_rejected"


class FunctionCall(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(BaseModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None  # for role "tool": which tool answered
    # Base64 images (Ollama's field); engines that read images send them, the others refuse the request.
    images: list[str] | None = Field(default=None, max_length=8)


class ToolFunction(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: ToolFunction


class ChatOptions(BaseModel):
    """Sampling options, named as Ollama's API names them; an unknown name is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    stop: list[str] | None = Field(default=None, max_length=16)
    num_predict: int | None = Field(default=None, ge=1, le=32768, description="Maximum tokens to generate")
    repeat_penalty: float | None = Field(default=None, ge=0)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)


@dataclass
class ChatRequest:
    messages: list[ChatMessage]
    tools: list[Tool] = field(default_factory=list)
    options: ChatOptions = field(default_factory=ChatOptions)
    # False when the client takes the answer whole: an engine may then fetch it in one piece.
    stream: bool = True
    # Whose prompt this is. An engine that keeps an evaluated prompt between requests reuses it only for the same
    # owner: otherwise how much was reused (and how fast the first token came) tells one user what another sent.
    owner: str | None = None


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCalls:
    calls: list[ToolCall]


@dataclass(slots=True)
class ChatDone:
    prompt_tokens: int
    eval_count: int
    total_duration_ns: int
    finish_reason: Literal["stop", "length", "tool_calls"] = "stop"
    cached_tokens: int = 0  # prompt tokens reused from the engine's cache instead of evaluated again


ChatEvent = TextDelta | ToolCalls | ChatDone


@runtime_checkable
class ChatEngine(Protocol):
    name: str
    modality: str  # "chat"

    def stream(self, request: ChatRequest) -> AsyncGenerator[ChatEvent]:
        """Yield TextDelta and ToolCalls events, then exactly one ChatDone."""
        ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...
