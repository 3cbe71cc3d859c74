"""The embedded chat engine: llama.cpp (llama-cpp-python) on a GGUF file, in one worker thread per model.

One model instance serves one generation at a time, so requests queue (bounded: past `max_queue`
they get 503 with Retry-After). Generation runs in the worker thread and streams back to the event
loop token by token; closing the stream (the client left) stops it at the next token. llama.cpp
keeps the evaluated tokens of the previous request and re-evaluates only what differs, so the next
turn of the same conversation does not re-read its history.

Tool calls: the model is prompted with the tools through its own chat template. A call it emits
(`<tool_call>{...}</tool_call>` or a bare JSON object) is parsed and validated against the tool's
schema; an invalid one is generated again once, constrained by a grammar built from the schemas.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from aigw.engines.llm.base import (
    ChatDone,
    ChatEvent,
    ChatMessage,
    ChatOptions,
    ChatRequest,
    EngineRejected,
    TextDelta,
    ToolCall,
    ToolCalls,
)
from aigw.engines.llm.toolcalls import InvalidToolCall, ToolCallScanner, call_grammar_schema, parse_call
from aigw.engines.packaged import QWEN_CODER_05B, assemble
from aigw.errors import EngineBusy, EngineUnavailable

log = logging.getLogger("aigw.engines.llama")

# Ollama's defaults, so a request without options behaves as it would there.
DEFAULTS = {"temperature": 0.8, "top_p": 0.9, "top_k": 40, "min_p": 0.0, "repeat_penalty": 1.1}
_RETRY_TOKENS = 384
_SECONDS_PER_QUEUED_REQUEST = 5


@dataclass
class _Generation:
    """What one request produced, accumulated in the worker thread."""

    request: ChatRequest
    emit: Callable[[ChatEvent | BaseException], None]
    cancel: threading.Event
    started_ns: int
    text: list[str] = field(default_factory=list)
    eval_count: int = 0


class LlamaChatEngine:
    modality = "chat"

    def __init__(
        self,
        *,
        name: str,
        model_path: Path | None,
        models_dir: Path,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        max_queue: int = 16,
    ) -> None:
        self.name = name
        self._model_path = model_path
        self._models_dir = models_dir
        self._n_ctx = n_ctx
        self._n_threads = n_threads or os.cpu_count() or 1
        self._max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{name}")
        self._load_lock = threading.Lock()
        self._llm: Any = None
        self._template: Any = None
        self._stop_tokens: set[int] = set()
        self._in_flight = 0

    async def ready(self) -> bool:
        if self._model_path is not None:
            return self._model_path.is_file()
        return QWEN_CODER_05B.installed()

    async def warm(self) -> None:
        """Load the model now rather than on the first request."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._ensure_loaded)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatEvent]:
        if self._in_flight > self._max_queue:
            raise EngineBusy(
                f"The embedded model has {self._in_flight} requests in hand; try again shortly",
                headers={"Retry-After": str(self._in_flight * _SECONDS_PER_QUEUED_REQUEST)},
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ChatEvent | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def emit(event: ChatEvent | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        job = _Generation(request, emit, cancel, time.perf_counter_ns())
        self._in_flight += 1
        future = loop.run_in_executor(self._executor, self._run, job)
        future.add_done_callback(lambda _: self._release())
        try:
            while True:
                event = await queue.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, ChatDone):
                    return
        finally:
            cancel.set()  # no-op when finished; otherwise the worker stops at its next token

    def _release(self) -> None:
        self._in_flight -= 1

    # ---- worker thread ----

    def _ensure_loaded(self) -> Any:
        with self._load_lock:
            if self._llm is None:
                from jinja2.sandbox import ImmutableSandboxedEnvironment
                from llama_cpp import Llama

                path = self._model_path or assemble(QWEN_CODER_05B, self._models_dir)
                started = time.perf_counter()
                llm = Llama(
                    model_path=str(path), n_ctx=self._n_ctx, n_threads=self._n_threads, n_batch=512, verbose=False
                )
                template = llm.metadata.get("tokenizer.chat_template")
                if not template:
                    raise EngineUnavailable(f"{path.name} has no chat template")
                env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
                self._template = env.from_string(template)
                self._stop_tokens = {llm.token_eos(), *llm.tokenize(b"<|im_end|>", add_bos=False, special=True)[:1]}
                self._llm = llm
                log.info(
                    "model loaded",
                    extra={"engine": self.name, "path": str(path), "seconds": round(time.perf_counter() - started, 2)},
                )
            return self._llm

    def _run(self, job: _Generation) -> None:
        try:
            if job.cancel.is_set():
                return
            llm = self._ensure_loaded()
            self._generate(llm, job)
        except EngineRejected as exc:
            job.emit(exc)
        except EngineUnavailable as exc:
            job.emit(exc)
        except Exception as exc:  # the engine boundary: anything llama.cpp raises becomes one typed error
            log.exception("generation failed", extra={"engine": self.name})
            job.emit(EngineUnavailable(f"The embedded model failed: {exc}"))

    def _generate(self, llm: Any, job: _Generation) -> None:
        request = job.request
        tools = request.tools
        if request.messages and request.messages[-1].role == "tool":
            # Measured on Qwen2.5-Coder-0.5B: shown its own call and the native <tool_response>, it repeats
            # the call instead of answering. Shown the result as plain conversation, it answers.
            messages, tools = inline_tool_results(request.messages), []
        else:
            messages = [render_message(m) for m in request.messages]
        prompt = self._template.render(
            messages=messages, tools=[t.model_dump() for t in tools] or None, add_generation_prompt=True
        )
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        room = self._n_ctx - len(tokens)
        if room < 16:
            raise EngineRejected(
                f"The conversation is {len(tokens)} tokens; the model's context holds {self._n_ctx}",
                code="context_length_exceeded",
            )
        cached = _common_prefix(llm.input_ids[: llm.n_tokens], tokens)
        options = request.options
        limit = min(options.num_predict or room, room)
        scanner = ToolCallScanner() if tools else None
        stops = options.stop or []
        finish = self._sample(llm, job, tokens, limit, scanner, stops)
        calls: list[ToolCall] = []
        if scanner is not None:
            leftover = scanner.finish()
            bodies = scanner.bodies
            if bodies:
                calls = self._parse_or_retry(llm, job, tokens, bodies)
            if leftover and not calls:
                job.emit(TextDelta(leftover))
        if calls:
            job.emit(ToolCalls(calls))
            finish = "tool_calls"
        job.emit(
            ChatDone(
                prompt_tokens=len(tokens),
                eval_count=job.eval_count,
                cached_tokens=cached,
                total_duration_ns=time.perf_counter_ns() - job.started_ns,
                finish_reason=finish,
            )
        )

    def _sample(
        self,
        llm: Any,
        job: _Generation,
        tokens: list[int],
        limit: int,
        scanner: ToolCallScanner | None,
        stops: list[str],
    ) -> Any:
        options = job.request.options
        if options.seed is not None:
            llm.set_seed(options.seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        held = ""  # text that might still become a stop string
        hold = max((len(s) for s in stops), default=1) - 1
        for token in self._tokens(llm, tokens, options):
            if job.cancel.is_set():
                return "stop"
            if token in self._stop_tokens:
                break
            job.eval_count += 1
            piece = decoder.decode(llm.detokenize([token], special=True))
            held += scanner.feed(piece) if scanner is not None else piece
            stop_at = min((i for i in (held.find(s) for s in stops) if i >= 0), default=-1)
            if stop_at >= 0:
                if stop_at:
                    job.emit(TextDelta(held[:stop_at]))
                return "stop"
            if len(held) > hold:
                job.emit(TextDelta(held[: len(held) - hold] if hold else held))
                held = held[len(held) - hold :] if hold else ""
            if job.eval_count >= limit:
                if held:
                    job.emit(TextDelta(held))
                return "length"
        tail = held + decoder.decode(b"", final=True)
        if tail:
            job.emit(TextDelta(tail))
        return "stop"

    def _tokens(self, llm: Any, tokens: list[int], options: ChatOptions, grammar: Any = None) -> Iterator[int]:
        values = {k: v for k, v in options.model_dump().items() if v is not None}
        params = {**DEFAULTS, **{k: values[k] for k in DEFAULTS if k in values}}
        return llm.generate(  # type: ignore[no-any-return]
            tokens,
            temp=params["temperature"],
            top_p=params["top_p"],
            top_k=params["top_k"],
            min_p=params["min_p"],
            repeat_penalty=params["repeat_penalty"],
            presence_penalty=values.get("presence_penalty", 0.0),
            frequency_penalty=values.get("frequency_penalty", 0.0),
            grammar=grammar,
        )

    def _parse_or_retry(self, llm: Any, job: _Generation, tokens: list[int], bodies: list[str]) -> list[ToolCall]:
        tools = job.request.tools
        try:
            return [ToolCall(id=f"call_{os.urandom(6).hex()}", function=parse_call(b, tools)) for b in bodies]
        except InvalidToolCall as exc:
            log.info("tool call invalid; retrying under a grammar", extra={"engine": self.name, "reason": str(exc)})
        from llama_cpp.llama_grammar import LlamaGrammar

        grammar = LlamaGrammar.from_json_schema(orjson.dumps(call_grammar_schema(tools)).decode(), verbose=False)
        prefix = tokens + llm.tokenize(b"<tool_call>\n", add_bos=False, special=True)
        out: list[int] = []
        for token in self._tokens(llm, prefix, ChatOptions(temperature=0.0), grammar=grammar):
            if job.cancel.is_set() or token in self._stop_tokens or len(out) >= _RETRY_TOKENS:
                break
            out.append(token)
        job.eval_count += len(out)
        body = llm.detokenize(out, special=True).decode(errors="replace").split("</tool_call>")[0]
        try:
            return [ToolCall(id=f"call_{os.urandom(6).hex()}", function=parse_call(body, tools))]
        except InvalidToolCall as exc:
            raise EngineUnavailable(f"The model produced no valid tool call: {exc}", code="invalid_tool_call") from exc


def _common_prefix(previous: Any, tokens: list[int]) -> int:
    count = 0
    for a, b in zip(previous, tokens, strict=False):
        if a != b:
            break
        count += 1
    # llama.cpp re-evaluates the last prompt token to get fresh logits when the whole prompt matched.
    return min(count, len(tokens) - 1)


def render_message(message: ChatMessage) -> dict[str, Any]:
    rendered: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        rendered["tool_calls"] = [{"function": c.function.model_dump()} for c in message.tool_calls]
    return rendered


def inline_tool_results(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Render tool calls and results as plain turns, for models that answer better that way."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            calls = ", ".join(
                f"{c.function.name}({orjson.dumps(c.function.arguments).decode()})" for c in message.tool_calls
            )
            out.append({"role": "assistant", "content": (message.content + "\n").lstrip() + f"I called {calls}."})
        elif message.role == "tool":
            label = f"{message.name} returned" if message.name else "The tool returned"
            out.append({"role": "user", "content": f"{label}: {message.content}"})
        else:
            out.append(render_message(message))
    out[-1]["content"] += "\nNow answer my question using this result."
    return out
