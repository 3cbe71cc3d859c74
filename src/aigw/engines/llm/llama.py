"""The embedded chat engine: llama.cpp (llama-cpp-python) on a GGUF file, in one worker thread per model.

One model instance serves one generation at a time, so requests queue (bounded: past `max_queue`
they get 503 with Retry-After). Generation runs in the worker thread and streams back to the event
loop token by token; closing the stream (the client left) stops it at the next token. llama.cpp
keeps the evaluated tokens of the previous request and re-evaluates only what differs, so the next
turn of the same conversation does not re-read its history.

Tool calls: the model is prompted with the tools through its own chat template. The opening of its
reply is decoded greedily until it shows whether it is a call (`<tool_call>`, bare or fenced JSON) and of
which offered tool; the arguments are then generated under a grammar built from that tool's schema, so
a call always parses and validates. An answer keeps its opening and is sampled as asked; a call of a tool
the request did not offer means none fits, and the reply is generated again without the tools.
Generation stops at every end-of-turn token, and control tokens are never rendered as text.
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
    Tool,
    ToolCall,
    ToolCalls,
)
from aigw.engines.llm.toolcalls import (
    CLOSE,
    OPEN,
    InvalidToolCall,
    Opening,
    ToolCallScanner,
    arguments_schema,
    parse_call,
    read_opening,
)
from aigw.engines.packaged import QWEN_CODER_05B, assemble
from aigw.errors import EngineBusy, EngineUnavailable

log = logging.getLogger("aigw.engines.llama")

# Ollama's defaults, so a request without options behaves as it would there.
DEFAULTS = {"temperature": 0.8, "top_p": 0.9, "top_k": 40, "min_p": 0.0, "repeat_penalty": 1.1}
_GREEDY = ChatOptions(temperature=0.0)
_OPENING_TOKENS = 48  # a call's name is known well within this; an answer's opening is kept, not wasted
_ARGUMENT_TOKENS = 512
_MAX_CALLS = 8
_GRAMMAR_CACHE = 64
FinishReason = Literal["stop", "length", "tool_calls"]
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
        self._grammars: dict[str, Any] = {}
        self._cache_owner: str | None = None  # whose prompt the model's evaluated tokens are
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
        if any(message.images for message in request.messages):
            raise EngineRejected(
                f"The model {self.name} reads no images; configure a vision model (README: Vision)",
                code="images_not_supported",
            )
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
                self._stop_tokens = _end_tokens(llm)
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
        tokens = self._prompt(llm, messages, tools)
        room = self._n_ctx - len(tokens)
        if room < 16:
            raise EngineRejected(
                f"The conversation is {len(tokens)} tokens; the model's context holds {self._n_ctx}",
                code="context_length_exceeded",
            )
        if request.owner != self._cache_owner:
            llm.reset()  # the evaluated prompt is another user's: it is not reused, and its length is not shown
            self._cache_owner = request.owner
        cached = _common_prefix(llm.input_ids[: llm.n_tokens], tokens)
        limit = min(request.options.num_predict or room, room)
        if request.options.seed is not None:
            llm.set_seed(request.options.seed)
        text = _TextStream(job, request.options.stop or [])
        finish = self._answer_with_tools(llm, job, tokens, limit, tools, text, messages) if tools else None
        if finish is None:
            finish = self._sample(llm, job, tokens, limit, text)
        job.emit(
            ChatDone(
                prompt_tokens=len(tokens),
                eval_count=job.eval_count,
                cached_tokens=cached,
                total_duration_ns=time.perf_counter_ns() - job.started_ns,
                finish_reason=finish,
            )
        )

    def _prompt(self, llm: Any, messages: list[dict[str, Any]], tools: list[Tool]) -> list[int]:
        prompt = self._template.render(
            messages=messages, tools=[t.model_dump() for t in tools] or None, add_generation_prompt=True
        )
        return llm.tokenize(prompt.encode(), add_bos=False, special=True)  # type: ignore[no-any-return]

    def _answer_with_tools(
        self,
        llm: Any,
        job: _Generation,
        tokens: list[int],
        limit: int,
        tools: list[Tool],
        text: _TextStream,
        messages: list[dict[str, Any]],
    ) -> FinishReason:
        """Decide, greedily, whether the reply is a call (and of which offered tool) or an answer.

        The opening of the reply is decoded at temperature 0 until `read_opening` can tell. A call then gets
        its arguments generated under the tool's schema grammar; an answer keeps its opening and goes on at
        the request's sampling settings; a call of a tool the request did not offer means no offered tool
        fits, so the reply is generated again from the conversation without the tools.
        """
        opening = self._opening(llm, job, tokens, tools)
        if opening.kind is Opening.CALL:
            assert opening.name is not None
            calls = self._calls(llm, job, tokens, tools, opening.name)
            job.emit(ToolCalls(calls))
            return "tool_calls"
        if opening.kind is Opening.INVENTED:
            log.info("the model called a tool it was not offered; answering", extra={"tool": opening.name})
            return self._sample(llm, job, self._prompt(llm, messages, []), limit, text)
        job.eval_count += len(opening.tokens)
        if text.push(opening.text, self._scanner_for(tools, text)):
            return "stop"
        if opening.ended:
            return self._finish_text(llm, job, tokens, tools, text)
        # The opening's decoder goes on: its last token may have ended inside a multi-byte character.
        return self._sample(llm, job, tokens + opening.tokens, limit, text, tools=tools, decoder=opening.decoder)

    def _opening(self, llm: Any, job: _Generation, tokens: list[int], tools: list[Tool]) -> _Opening:
        opening = _Opening()
        decoder = opening.decoder
        for token in self._tokens(llm, tokens, _GREEDY):
            if job.cancel.is_set():
                break
            if token in self._stop_tokens:
                opening.ended = True
                break
            opening.tokens.append(token)
            opening.text += decoder.decode(self._piece(llm, token))
            opening.kind, opening.name = read_opening(opening.text, tools)
            if opening.kind is not Opening.PENDING:
                return opening
            if len(opening.tokens) >= _OPENING_TOKENS:
                break
        if opening.ended:
            opening.text += decoder.decode(b"", final=True)
        opening.kind = Opening.TEXT
        return opening

    def _calls(self, llm: Any, job: _Generation, tokens: list[int], tools: list[Tool], name: str) -> list[ToolCall]:
        """Generate the arguments of a call to `name` under its schema, then of any further calls the model makes."""
        calls: list[ToolCall] = []
        context = list(tokens)
        next_name: str | None = name
        while next_name is not None and len(calls) < _MAX_CALLS:
            head = llm.tokenize(
                f'{OPEN}\n{{"name": {orjson.dumps(next_name).decode()}, "arguments": '.encode(),
                add_bos=False,
                special=True,
            )
            arguments = self._constrained_arguments(llm, job, context + head, tools, next_name)
            calls.append(ToolCall(id=f"call_{os.urandom(6).hex()}", function=arguments))
            tail = llm.tokenize(
                f"{orjson.dumps(arguments.arguments).decode()}}}\n{CLOSE}\n".encode(), add_bos=False, special=True
            )
            context = context + head + tail
            following = self._opening(llm, job, context, tools)
            next_name = following.name if following.kind is Opening.CALL else None
        return calls

    def _constrained_arguments(
        self, llm: Any, job: _Generation, prefix: list[int], tools: list[Tool], name: str
    ) -> FunctionCall:
        tool = next(t for t in tools if t.function.name == name)
        out: list[int] = []
        for token in self._tokens(llm, prefix, _GREEDY, grammar=self._grammar(tool)):
            if job.cancel.is_set() or token in self._stop_tokens or len(out) >= _ARGUMENT_TOKENS:
                break
            out.append(token)
        job.eval_count += len(out)
        body = llm.detokenize(out, special=False).decode(errors="replace")
        try:
            return parse_call(f'{{"name": {orjson.dumps(name).decode()}, "arguments": {body}}}', tools)
        except InvalidToolCall as exc:
            raise EngineUnavailable(f"The model produced no valid tool call: {exc}", code="invalid_tool_call") from exc

    def _grammar(self, tool: Tool) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar

        schema = orjson.dumps(arguments_schema(tool), option=orjson.OPT_SORT_KEYS).decode()
        grammar = self._grammars.get(schema)
        if grammar is None:
            try:
                grammar = LlamaGrammar.from_json_schema(schema, verbose=False)
            except Exception:  # a schema feature the converter lacks: any object, checked against the schema after
                log.info(
                    "tool schema not convertible to a grammar; using any object", extra={"tool": tool.function.name}
                )
                grammar = LlamaGrammar.from_json_schema('{"type": "object"}', verbose=False)
            if len(self._grammars) >= _GRAMMAR_CACHE:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[schema] = grammar
        return grammar

    def _scanner_for(self, tools: list[Tool], text: _TextStream) -> ToolCallScanner | None:
        if not tools:
            return None
        if text.scanner is None:
            text.scanner = ToolCallScanner()
        return text.scanner

    def _sample(
        self,
        llm: Any,
        job: _Generation,
        tokens: list[int],
        limit: int,
        text: _TextStream,
        *,
        tools: list[Tool] | None = None,
        decoder: codecs.IncrementalDecoder | None = None,
    ) -> FinishReason:
        tools = tools or []
        scanner = self._scanner_for(tools, text)
        decoder = decoder or _utf8()
        finish: FinishReason = "stop"
        for token in self._tokens(llm, tokens, job.request.options):
            if job.cancel.is_set():
                return "stop"
            if token in self._stop_tokens:
                break
            job.eval_count += 1
            if text.push(decoder.decode(self._piece(llm, token)), scanner):
                return "stop"
            if job.eval_count >= limit:
                finish = "length"
                break
        text.push(decoder.decode(b"", final=True), scanner)
        done = self._finish_text(llm, job, tokens, tools, text)
        return done if done == "tool_calls" else finish

    def _finish_text(
        self, llm: Any, job: _Generation, tokens: list[int], tools: list[Tool], text: _TextStream
    ) -> FinishReason:
        """Flush what was held back; `<tool_call>` tags found inside the answer become calls."""
        scanner = text.scanner
        leftover = scanner.finish() if scanner is not None else ""
        calls = self._calls_in_text(llm, job, tokens, tools, scanner.bodies) if scanner is not None else []
        text.flush(leftover if not calls else "")
        if calls:
            job.emit(ToolCalls(calls))
            return "tool_calls"
        return "stop"

    def _calls_in_text(
        self, llm: Any, job: _Generation, tokens: list[int], tools: list[Tool], bodies: list[str]
    ) -> list[ToolCall]:
        calls: list[ToolCall] = []
        for body in bodies:
            try:
                calls.append(ToolCall(id=f"call_{os.urandom(6).hex()}", function=parse_call(body, tools)))
                continue
            except InvalidToolCall as exc:
                log.info("tool call invalid; retrying under a grammar", extra={"engine": self.name, "reason": str(exc)})
            named = read_opening(body, tools)
            if named[0] is Opening.CALL and named[1] is not None:
                head = llm.tokenize(
                    f'{OPEN}\n{{"name": {orjson.dumps(named[1]).decode()}, "arguments": '.encode(),
                    add_bos=False,
                    special=True,
                )
                function = self._constrained_arguments(llm, job, tokens + head, tools, named[1])
                calls.append(ToolCall(id=f"call_{os.urandom(6).hex()}", function=function))
        return calls

    def _piece(self, llm: Any, token: int) -> bytes:
        # Control tokens (<|im_end|>, <|endoftext|>...) render as nothing: no special token reaches a user as text.
        return llm.detokenize([token], special=False)  # type: ignore[no-any-return]

    def _tokens(
        self,
        llm: Any,
        tokens: list[int],
        options: ChatOptions,
        grammar: Any = None,
    ) -> Iterator[int]:
        values = {k: v for k, v in options.model_dump().items() if v is not None}
        params = {**DEFAULTS, **{k: values[k] for k in DEFAULTS if k in values}}
        _hold_all_but_last(llm, tokens)
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


def _hold_all_but_last(llm: Any, tokens: list[int]) -> None:
    """Evaluate all of the prompt but its last token, reusing what the context already holds of it.

    `generate` then evaluates the last token alone, whether the rest was just evaluated or reused from the
    previous request. The first token's probabilities therefore come from the same computation both times: a
    batch of one token rather than the last row of a long batch, whose numbers differ in their last bits and
    sometimes flip a near tie. So a request repeated exactly gives the same answer at temperature 0, and at any
    temperature with the same `seed`.
    """
    rest = tokens[:-1]
    held = 0
    for cached, token in zip(llm.input_ids[: llm.n_tokens], rest, strict=False):
        if cached != token:
            break
        held += 1
    llm.n_tokens = held
    if held < len(tokens) - 1:
        llm.eval(tokens[held:-1])


def _utf8() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


@dataclass
class _Opening:
    decoder: codecs.IncrementalDecoder = field(default_factory=_utf8)
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    kind: Opening = Opening.PENDING
    name: str | None = None
    ended: bool = False  # the model ended its reply inside the opening


class _TextStream:
    """Text on its way to the client: held back while it could still become a stop string or a call tag."""

    def __init__(self, job: _Generation, stops: list[str]) -> None:
        self._job = job
        self._stops = stops
        self._hold = max((len(s) for s in stops), default=1) - 1
        self._held = ""
        self.scanner: ToolCallScanner | None = None

    def push(self, piece: str, scanner: ToolCallScanner | None) -> bool:
        """Add generated text; True when a stop string was reached (the answer ends there)."""
        self._held += scanner.feed(piece) if scanner is not None else piece
        stop_at = min((i for i in (self._held.find(s) for s in self._stops) if i >= 0), default=-1)
        if stop_at >= 0:
            if stop_at:
                self._job.emit(TextDelta(self._held[:stop_at]))
            self._held = ""
            return True
        if len(self._held) > self._hold:
            cut = len(self._held) - self._hold
            self._job.emit(TextDelta(self._held[:cut]))
            self._held = self._held[cut:]
        return False

    def flush(self, leftover: str) -> None:
        rest, self._held = self._held + leftover, ""
        if rest:
            self._job.emit(TextDelta(rest))


def _end_tokens(llm: Any) -> set[int]:
    """Every token llama.cpp's vocabulary marks as ending a turn (for Qwen <|im_end|> and <|endoftext|> among them)."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    ends = {token for token in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, token)}
    return ends | {llm.token_eos()}


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
