"""Chat: pick the engines for a model, inject knowledge-base context, and fall back along the chain.

Routes call `ChatService.start()`; it resolves the model, lets the context provider (the
knowledge-base issue fills it in) add context, and returns a `ChatSession` whose `events()` streams
from the first backend that answers. A backend that fails before producing anything with
`EngineUnavailable` (connection refused, timeout, 5xx) hands over to the next; `EngineRejected`
(the upstream said the request itself is wrong) does not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aigw.engines.base import EngineRegistry
from aigw.engines.llm.base import ChatDone, ChatEngine, ChatEvent, ChatMessage, ChatRequest, TextDelta
from aigw.errors import EngineUnavailable, NotFound
from aigw.settings import ChatBackend, Settings

log = logging.getLogger("aigw.chat")


@dataclass
class InjectedContext:
    """Text to put before the conversation, and the sources it came from (reported in `done`)."""

    text: str
    sources: list[dict[str, Any]] = field(default_factory=list)


class ContextProvider(Protocol):
    async def context_for(
        self, user_id: int, messages: list[ChatMessage], kb_ids: list[int] | None = None
    ) -> InjectedContext | None: ...


@dataclass
class ChatModel:
    name: str
    engines: list[ChatEngine]


@dataclass
class ChatSession:
    model: ChatModel
    request: ChatRequest
    sources: list[dict[str, Any]] = field(default_factory=list)
    engine_name: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    eval_count: int = 0
    engine_ns: int = 0  # time spent waiting on the engine, for Server-Timing

    async def events(self) -> AsyncGenerator[ChatEvent]:
        """Stream from the first engine of the chain that answers; see the module docstring."""
        failure: EngineUnavailable | None = None
        for engine in self.model.engines:
            produced = False
            try:
                async with aclosing(engine.stream(self.request)) as stream:
                    while True:
                        started = time.perf_counter_ns()
                        try:
                            event = await anext(stream)
                        except StopAsyncIteration:
                            return
                        finally:
                            self.engine_ns += time.perf_counter_ns() - started
                        produced = True
                        self.engine_name = engine.name
                        self._count(event)
                        yield event
            except EngineUnavailable as exc:
                if produced:
                    raise
                log.warning("chat backend failed; trying the next", extra={"engine": engine.name, "error": exc.message})
                failure = exc
        assert failure is not None
        raise failure

    def _count(self, event: ChatEvent) -> None:
        if isinstance(event, TextDelta):
            self.eval_count += 1  # a stand-in until the engine's exact count arrives with ChatDone
        elif isinstance(event, ChatDone):
            self.prompt_tokens, self.eval_count = event.prompt_tokens, event.eval_count
            self.cached_tokens = event.cached_tokens


class ChatService:
    def __init__(
        self, models: dict[str, ChatModel], default_model: str, context: ContextProvider | None = None
    ) -> None:
        self.models = models
        self.default_model = default_model if default_model in models else next(iter(models))
        self.context = context

    @classmethod
    def from_settings(cls, settings: Settings, registry: EngineRegistry) -> ChatService:
        built: dict[str, ChatEngine] = {}
        models = {}
        for config in settings.chat_models:
            engines = []
            for backend in config.backends:
                key = engine_key(backend)
                if key not in built:
                    built[key] = build_engine(backend, key, settings.resolved_models_dir)
                    registry.register(built[key])
                engines.append(built[key])
            models[config.name] = ChatModel(config.name, engines)
        return cls(models, settings.default_chat_model)

    def model(self, name: str | None) -> ChatModel:
        chosen = self.models.get(name or self.default_model)
        if chosen is None:
            raise NotFound(f"Unknown model {name!r}; GET /v1/models lists them", code="model_not_found")
        return chosen

    async def start(
        self,
        user_id: int,
        model: str | None,
        request: ChatRequest,
        *,
        inject: bool = True,
        kb_ids: list[int] | None = None,
    ) -> ChatSession:
        """Resolve the model and, when `inject`, add the user's knowledge-base context to the conversation (from
        `kb_ids` of theirs only, when given)."""
        chosen = self.model(model)
        request.owner = f"user:{user_id}"
        session = ChatSession(chosen, request)
        if inject and self.context is not None:
            injected = await self.context.context_for(user_id, request.messages, kb_ids)
            if injected is not None:
                request.messages = with_context(request.messages, injected.text)
                session.sources = injected.sources
        return session


def with_context(messages: list[ChatMessage], context: str) -> list[ChatMessage]:
    """The context joins the caller's system prompt (chat templates expect at most one, first)."""
    first = messages[0] if messages else None
    if first is not None and first.role == "system" and isinstance(first.content, str):
        merged = first.model_copy(update={"content": f"{first.content}\n\n{context}"})
        return [merged, *messages[1:]]
    return [ChatMessage(role="system", content=context), *messages]


def engine_key(backend: ChatBackend) -> str:
    if backend.engine == "llama":
        return f"llama.cpp/{backend.path.name if backend.path else 'qwen2.5-coder-0.5b'}"
    host = (backend.base_url or "").split("://", 1)[-1].split("/", 1)[0]
    return f"{backend.engine}@{host}/{backend.model}"


def build_engine(backend: ChatBackend, name: str, models_dir: Path) -> ChatEngine:
    if backend.engine == "llama":
        from aigw.engines.llm.llama import LlamaChatEngine

        return LlamaChatEngine(
            name=name,
            model_path=backend.path,
            models_dir=models_dir,
            n_ctx=backend.n_ctx,
            n_threads=backend.n_threads,
            max_queue=backend.max_queue,
        )
    api_key = backend.api_key.get_secret_value() if backend.api_key else None
    assert backend.base_url and backend.model  # checked by ChatBackend
    if backend.engine == "ollama":
        from aigw.engines.llm.ollama import OllamaChatEngine

        return OllamaChatEngine(
            name=name, base_url=backend.base_url, model=backend.model, api_key=api_key, timeout=backend.timeout
        )
    from aigw.engines.llm.openai_compat import OpenAIChatEngine

    return OpenAIChatEngine(
        name=name, base_url=backend.base_url, model=backend.model, api_key=api_key, timeout=backend.timeout
    )
