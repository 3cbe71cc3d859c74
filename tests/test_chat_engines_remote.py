"""The remote chat engines, called directly: Ollama against a protocol double, OpenAI-compatible against
a real llama_cpp.server (and a scripted SSE double for what that server cannot be made to send)."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from aigw.chat.service import build_engine
from aigw.engines.llm.base import (
    ChatDone,
    ChatEngine,
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
    ToolFunction,
)
from aigw.engines.llm.ollama import OllamaChatEngine
from aigw.engines.llm.openai_compat import OpenAIChatEngine
from aigw.errors import EngineUnavailable
from aigw.settings import ChatBackend
from conftest import LlamaServer
from doubles.ollama import OllamaProtocolDouble, ServerThread

WEATHER = Tool(
    function=ToolFunction(
        name="get_weather",
        description="Current weather for a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def user(text: str) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text)])


async def collect(engine: ChatEngine, request: ChatRequest) -> list[ChatEvent]:
    return [event async for event in engine.stream(request)]


def text_of(events: list[ChatEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def done_of(events: list[ChatEvent]) -> ChatDone:
    assert isinstance(events[-1], ChatDone), events
    assert sum(isinstance(event, ChatDone) for event in events) == 1
    return events[-1]


# -- Ollama, against the protocol double -------------------------------------------------------------------


@pytest.fixture
async def ollama(ollama_double: OllamaProtocolDouble) -> AsyncIterator[OllamaChatEngine]:
    engine = OllamaChatEngine(name="ollama-test", base_url=ollama_double.url, model="qwen2.5-coder:0.5b")
    yield engine
    await engine.close()


async def test_an_ollama_backend_sends_its_configured_api_key(ollama_double: OllamaProtocolDouble) -> None:
    backend = ChatBackend(engine="ollama", base_url=ollama_double.url, model="m", api_key=SecretStr("ollama-token"))
    engine = build_engine(backend, "ollama-keyed", Path("/nonexistent"))
    try:
        ollama_double.reply_text(["ok"])
        await collect(engine, user("hi"))
    finally:
        await engine.close()
    assert ollama_double.authorizations[-1] == "Bearer ollama-token"


def test_ollama_engine_satisfies_the_chat_engine_protocol() -> None:
    engine = OllamaChatEngine(name="o", base_url="http://127.0.0.1:1", model="m")
    assert isinstance(engine, ChatEngine)
    assert engine.modality == "chat"


async def test_ollama_streams_text_deltas_in_order_then_done(
    ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble
) -> None:
    ollama_double.reply_text(["Hel", "lo", ", world"], prompt_eval_count=17, eval_count=3, total_duration=987_654_321)

    events = await collect(ollama, user("hi"))

    assert events[:3] == [TextDelta("Hel"), TextDelta("lo"), TextDelta(", world")]
    assert done_of(events) == ChatDone(prompt_tokens=17, eval_count=3, total_duration_ns=987_654_321)
    body = ollama_double.last_request
    assert body["model"] == "qwen2.5-coder:0.5b"
    assert body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert "tools" not in body


async def test_ollama_passes_set_options_through_by_their_own_names(
    ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble
) -> None:
    options = ChatOptions(temperature=0, top_k=20, seed=7, stop=["\n\n"], num_predict=64, repeat_penalty=1.1)

    await collect(ollama, ChatRequest(messages=[ChatMessage(role="user", content="hi")], options=options))

    assert ollama_double.last_request["options"] == {
        "temperature": 0,
        "top_k": 20,
        "seed": 7,
        "stop": ["\n\n"],
        "num_predict": 64,
        "repeat_penalty": 1.1,
    }


async def test_ollama_done_reason_length_is_finish_reason_length(
    ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble
) -> None:
    ollama_double.reply_text(["a", "b"], done_reason="length")

    events = await collect(ollama, user("hi"))

    assert done_of(events).finish_reason == "length"


async def test_ollama_tool_call_arrives_as_tool_calls_with_dict_arguments(
    ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble
) -> None:
    ollama_double.reply_tool_call("get_weather", {"city": "Paris", "days": 2})
    request = ChatRequest(messages=[ChatMessage(role="user", content="Weather in Paris?")], tools=[WEATHER])

    events = await collect(ollama, request)

    assert events[0] == ToolCalls(
        [ToolCall(function=FunctionCall(name="get_weather", arguments={"city": "Paris", "days": 2}))]
    )
    assert done_of(events).finish_reason == "tool_calls"
    assert ollama_double.last_request["tools"] == [WEATHER.model_dump()]


async def test_ollama_tool_result_round_trips_in_ollama_format(
    ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble
) -> None:
    call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments={"city": "Paris"}))
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Weather in Paris?"),
        ChatMessage(role="assistant", content="", tool_calls=[call]),
        ChatMessage(role="tool", content='{"temp_c": 21}', tool_call_id="call_1", name="get_weather"),
    ]

    await collect(ollama, ChatRequest(messages=messages, tools=[WEATHER]))

    assert ollama_double.last_request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": '{"temp_c": 21}', "tool_name": "get_weather"},
    ]


async def test_ollama_server_error_is_engine_unavailable(
    ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble
) -> None:
    ollama_double.reply_status(500, "llama runner process has terminated")

    with pytest.raises(EngineUnavailable, match="llama runner process has terminated"):
        await collect(ollama, user("hi"))


async def test_ollama_bad_request_is_rejected_with_the_upstream_message(
    ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble
) -> None:
    ollama_double.reply_status(400, "invalid options: foo")

    with pytest.raises(EngineRejected, match="invalid options: foo"):
        await collect(ollama, user("hi"))


async def test_ollama_unknown_model_is_rejected(ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble) -> None:
    ollama_double.reply_status(404, "model 'qwen2.5-coder:0.5b' not found, try pulling it first")

    with pytest.raises(EngineRejected, match="not found"):
        await collect(ollama, user("hi"))


async def test_ollama_error_line_mid_stream_is_engine_unavailable(
    ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble
) -> None:
    ollama_double.reply_error_midstream(["partial "], "an error was encountered while running the model")
    seen: list[ChatEvent] = []

    with pytest.raises(EngineUnavailable, match="error was encountered"):
        async for event in ollama.stream(user("hi")):
            seen.append(event)

    assert seen == [TextDelta("partial ")]


async def test_ollama_connection_refused_is_engine_unavailable() -> None:
    engine = OllamaChatEngine(name="gone", base_url=closed_port_url(), model="m")
    try:
        with pytest.raises(EngineUnavailable):
            await collect(engine, user("hi"))
        assert await engine.ready() is False
    finally:
        await engine.close()


async def test_ollama_ready_follows_api_tags(ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble) -> None:
    assert await ollama.ready() is True
    ollama_double.tags_status = 503
    try:
        assert await ollama.ready() is False
    finally:
        ollama_double.tags_status = 200


async def test_ollama_connection_is_reused_across_requests(
    ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble
) -> None:
    for _ in range(3):
        await collect(ollama, user("hi"))

    assert len(set(ollama_double.client_ports[-3:])) == 1


async def test_ollama_closing_the_stream_early_closes_the_upstream_response(
    ollama: OllamaChatEngine, ollama_double: OllamaProtocolDouble
) -> None:
    abandoned = ollama_double.streams_abandoned
    ollama_double.reply_text([f"t{i} " for i in range(200)], delay=0.02)

    stream = ollama.stream(user("count"))
    assert await anext(stream) == TextDelta("t0 ")
    await stream.aclose()

    for _ in range(100):
        if ollama_double.streams_abandoned > abandoned:
            break
        await asyncio.sleep(0.02)
    assert ollama_double.streams_abandoned == abandoned + 1


# -- OpenAI-compatible, against a real llama_cpp.server ----------------------------------------------------


@pytest.fixture
async def llama(llama_server: LlamaServer) -> AsyncIterator[OpenAIChatEngine]:
    engine = OpenAIChatEngine(
        name="llama-test", base_url=llama_server.base_url, model="qwen2.5-coder", api_key=llama_server.api_key
    )
    yield engine
    await engine.close()


GREEDY = ChatOptions(temperature=0, seed=1, num_predict=12)


def test_openai_engine_satisfies_the_chat_engine_protocol() -> None:
    engine = OpenAIChatEngine(name="o", base_url="http://127.0.0.1:1/v1", model="m")
    assert isinstance(engine, ChatEngine)
    assert engine.modality == "chat"


async def test_openai_streams_text_from_llama_cpp_server(llama: OpenAIChatEngine) -> None:
    request = ChatRequest(messages=[ChatMessage(role="user", content="Say hello.")], options=GREEDY)

    events = await collect(llama, request)

    deltas = [event for event in events if isinstance(event, TextDelta)]
    assert len(deltas) > 1
    assert all(delta.text for delta in deltas)
    assert text_of(events).strip()
    done = done_of(events)
    assert 0 < done.eval_count <= 12
    # llama_cpp.server ignores stream_options.include_usage: the prompt size is unknown, and reported as 0
    # rather than guessed. The whole reply (stream=False) carries usage, and it is passed on.
    assert done.prompt_tokens == 0
    assert done.total_duration_ns > 0
    assert done.finish_reason in ("stop", "length")
    whole = done_of(await collect(llama, replace(request, stream=False)))
    assert 5 < whole.prompt_tokens < 60 and 0 < whole.eval_count <= 12


async def test_openai_greedy_options_make_llama_cpp_server_deterministic(llama: OpenAIChatEngine) -> None:
    request = ChatRequest(messages=[ChatMessage(role="user", content="Name three colours.")], options=GREEDY)

    first = text_of(await collect(llama, request))
    second = text_of(await collect(llama, request))

    assert first == second


async def test_openai_num_predict_caps_generation_at_length(llama: OpenAIChatEngine) -> None:
    options = ChatOptions(temperature=0, seed=1, num_predict=3)
    request = ChatRequest(
        messages=[ChatMessage(role="user", content="Write a long story about a dragon.")], options=options
    )

    events = await collect(llama, request)

    done = done_of(events)
    assert done.finish_reason == "length"
    assert 0 < done.eval_count <= 3


async def test_openai_stop_sequence_ends_generation(llama: OpenAIChatEngine) -> None:
    options = ChatOptions(temperature=0, seed=1, num_predict=40, stop=[","])
    request = ChatRequest(
        messages=[ChatMessage(role="user", content="List the numbers one to ten, separated by commas.")],
        options=options,
    )

    events = await collect(llama, request)

    assert "," not in text_of(events)
    assert done_of(events).finish_reason == "stop"


async def test_openai_tool_conversation_is_accepted_by_llama_cpp_server(llama: OpenAIChatEngine) -> None:
    messages = [
        ChatMessage(role="user", content="What is the weather in Paris?"),
        ChatMessage(
            role="assistant",
            tool_calls=[ToolCall(function=FunctionCall(name="get_weather", arguments={"city": "Paris"}))],
        ),
        ChatMessage(role="tool", content='{"temp_c": 21, "sky": "clear"}', name="get_weather"),
    ]

    events = await collect(llama, ChatRequest(messages=messages, tools=[WEATHER], options=GREEDY))

    assert done_of(events).eval_count > 0


async def test_openai_wrong_api_key_is_rejected(llama_server: LlamaServer) -> None:
    engine = OpenAIChatEngine(name="llama-bad-key", base_url=llama_server.base_url, model="m", api_key="wrong")
    try:
        with pytest.raises(EngineRejected, match="Invalid API key"):
            await collect(engine, user("hi"))
        assert await engine.ready() is False
    finally:
        await engine.close()


async def test_openai_unknown_route_is_rejected(llama_server: LlamaServer) -> None:
    base_url = llama_server.base_url.removesuffix("/v1") + "/v2"
    engine = OpenAIChatEngine(name="llama-v2", base_url=base_url, model="m", api_key=llama_server.api_key)
    try:
        with pytest.raises(EngineRejected, match="404"):
            await collect(engine, user("hi"))
    finally:
        await engine.close()


async def test_openai_prompt_beyond_the_context_is_engine_unavailable(llama: OpenAIChatEngine) -> None:
    # llama_cpp.server answers a streamed over-long prompt with 200 and an empty body.
    with pytest.raises(EngineUnavailable, match="ended before"):
        await collect(llama, user("word " * 3000))


async def test_openai_ready_against_llama_cpp_server(llama: OpenAIChatEngine) -> None:
    assert await llama.ready() is True


async def test_openai_stopped_server_is_engine_unavailable() -> None:
    engine = OpenAIChatEngine(name="gone", base_url=closed_port_url() + "/v1", model="m")
    try:
        with pytest.raises(EngineUnavailable):
            await collect(engine, user("hi"))
        assert await engine.ready() is False
    finally:
        await engine.close()


# -- OpenAI-compatible, against a scripted SSE double (what llama_cpp.server cannot be made to send) -------


class OpenAIStreamDouble:
    """A test double of an OpenAI-compatible server: answers `/chat/completions` with scripted raw bytes."""

    def __init__(self) -> None:
        self._replies: deque[tuple[int, list[bytes]]] = deque()
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.client_ports: list[int] = []
        self._server = ServerThread(self._app)
        self.url = self._server.url + "/v1"

    def reply(self, chunks: list[bytes], *, status: int = 200) -> None:
        self._replies.append((status, chunks))

    def reply_events(self, events: list[dict[str, Any]], *, done: bool = True, piece: int = 0) -> None:
        raw = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events)
        raw += b"data: [DONE]\n\n" if done else b""
        self.reply([raw[i : i + piece] for i in range(0, len(raw), piece)] if piece else [raw])

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"].endswith("/models"):
            status, chunks = 200, [b'{"object": "list", "data": []}']
        else:
            headers = {key.decode(): value.decode() for key, value in scope["headers"]}
            self.requests.append((headers, orjson.loads(body)))
            self.client_ports.append(scope["client"][1])
            status, chunks = self._replies.popleft() if self._replies else (500, [b'{"error": "nothing scripted"}'])
        content_type = b"text/event-stream" if status == 200 else b"application/json"
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m", "choices": choices, **extra}


@pytest.fixture(scope="session")
def sse_double() -> Iterator[OpenAIStreamDouble]:
    double = OpenAIStreamDouble()
    double._server.start()
    yield double
    double._server.stop()


@pytest.fixture
async def openai(sse_double: OpenAIStreamDouble) -> AsyncIterator[OpenAIChatEngine]:
    engine = OpenAIChatEngine(name="openai-test", base_url=sse_double.url, model="gpt-test", api_key="sk-test")
    yield engine
    await engine.close()


async def test_openai_assembles_tool_calls_streamed_in_fragments(
    openai: OpenAIChatEngine, sse_double: OpenAIStreamDouble
) -> None:
    def call(index: int, arguments: str, **head: Any) -> dict[str, Any]:
        function = {"arguments": arguments} | ({"name": head.pop("name")} if "name" in head else {})
        return chunk({"tool_calls": [{"index": index, **head, "function": function}]})

    sse_double.reply_events(
        [
            chunk({"role": "assistant", "content": None}),
            call(0, "", id="call_a", type="function", name="get_weather"),
            call(0, '{"ci'),
            call(1, '{"city": ', id="call_b", type="function", name="get_time"),
            call(0, 'ty": "Par'),
            call(1, '"Oslo"}'),
            call(0, 'is"}'),
            chunk({}, finish_reason="tool_calls"),
            chunk(usage={"prompt_tokens": 40, "completion_tokens": 22, "total_tokens": 62}),
        ],
        piece=7,  # and the SSE lines themselves split across reads
    )

    events = await collect(openai, ChatRequest(messages=[ChatMessage(role="user", content="?")], tools=[WEATHER]))

    assert events[0] == ToolCalls(
        [
            ToolCall(id="call_a", function=FunctionCall(name="get_weather", arguments={"city": "Paris"})),
            ToolCall(id="call_b", function=FunctionCall(name="get_time", arguments={"city": "Oslo"})),
        ]
    )
    done = done_of(events)
    assert (done.prompt_tokens, done.eval_count, done.finish_reason) == (40, 22, "tool_calls")


async def test_openai_name_repeated_in_every_fragment_is_not_doubled(
    openai: OpenAIChatEngine, sse_double: OpenAIStreamDouble
) -> None:
    # llama_cpp.server's forced-tool streaming repeats the whole name (and id) with each arguments piece.
    pieces = ['{"city"', ': "Rome"', "}"]
    fragment = {"index": 0, "id": "call_x", "type": "function"}
    sse_double.reply_events(
        [chunk({"tool_calls": [{**fragment, "function": {"name": "get_weather", "arguments": p}}]}) for p in pieces]
        + [chunk({}, finish_reason="tool_calls")]
    )

    events = await collect(openai, user("?"))

    assert events[0] == ToolCalls(
        [ToolCall(id="call_x", function=FunctionCall(name="get_weather", arguments={"city": "Rome"}))]
    )


async def test_openai_tool_arguments_that_are_not_json_are_rejected(
    openai: OpenAIChatEngine, sse_double: OpenAIStreamDouble
) -> None:
    head = {"index": 0, "id": "c", "type": "function"}
    sse_double.reply_events(
        [
            chunk({"tool_calls": [{**head, "function": {"name": "get_weather", "arguments": "{city: Paris"}}]}),
            chunk({}, finish_reason="tool_calls"),
        ]
    )

    with pytest.raises(EngineRejected, match=r"get_weather.*not valid JSON"):
        await collect(openai, user("?"))


async def test_openai_request_carries_openai_shapes_and_mapped_options(
    openai: OpenAIChatEngine, sse_double: OpenAIStreamDouble
) -> None:
    sse_double.reply_events([chunk({"content": "ok"}), chunk({}, finish_reason="stop")])
    messages = [
        ChatMessage(role="user", content="Weather in Paris?"),
        ChatMessage(
            role="assistant",
            tool_calls=[ToolCall(function=FunctionCall(name="get_weather", arguments={"city": "Paris"}))],
        ),
        ChatMessage(role="tool", content='{"temp_c": 21}', name="get_weather"),
    ]
    options = ChatOptions(temperature=0.2, top_p=0.9, top_k=40, seed=3, stop=["END"], num_predict=99, min_p=0.05)

    events = await collect(openai, ChatRequest(messages=messages, tools=[WEATHER], options=options))

    headers, body = sse_double.requests[-1]
    assert headers["authorization"] == "Bearer sk-test"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["tools"] == [WEATHER.model_dump()]
    assert {k: body[k] for k in ("temperature", "top_p", "top_k", "seed", "stop", "max_tokens", "min_p")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 3,
        "stop": ["END"],
        "max_tokens": 99,
        "min_p": 0.05,
    }
    assert "num_predict" not in body
    assistant, tool = body["messages"][1], body["messages"][2]
    call = assistant["tool_calls"][0]
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert tool == {"role": "tool", "content": '{"temp_c": 21}', "tool_call_id": call["id"]}
    # No usage chunk: one token per content delta, prompt unknown.
    done = done_of(events)
    assert (done.prompt_tokens, done.eval_count) == (0, 1)


async def test_openai_upstream_4xx_is_rejected_with_its_message(
    openai: OpenAIChatEngine, sse_double: OpenAIStreamDouble
) -> None:
    sse_double.reply(
        [b'{"error": {"message": "The model `gpt-test` does not exist", "type": "invalid_request_error"}}'], status=404
    )
    with pytest.raises(EngineRejected, match="does not exist"):
        await collect(openai, user("hi"))

    sse_double.reply([b'{"error": "max_tokens is too large"}'], status=400)
    with pytest.raises(EngineRejected, match="max_tokens is too large"):
        await collect(openai, user("hi"))


async def test_openai_upstream_5xx_is_engine_unavailable(
    openai: OpenAIChatEngine, sse_double: OpenAIStreamDouble
) -> None:
    sse_double.reply([b'{"error": {"message": "CUDA out of memory"}}'], status=503)

    with pytest.raises(EngineUnavailable, match="CUDA out of memory"):
        await collect(openai, user("hi"))


async def test_openai_error_event_mid_stream_is_engine_unavailable(
    openai: OpenAIChatEngine, sse_double: OpenAIStreamDouble
) -> None:
    sse_double.reply_events([chunk({"content": "par"}), {"error": {"message": "engine died"}}], done=False)

    with pytest.raises(EngineUnavailable, match="engine died"):
        await collect(openai, user("hi"))


async def test_openai_stream_cut_short_is_engine_unavailable(
    openai: OpenAIChatEngine, sse_double: OpenAIStreamDouble
) -> None:
    sse_double.reply_events([chunk({"content": "par"})], done=False)

    with pytest.raises(EngineUnavailable, match="ended before"):
        await collect(openai, user("hi"))


async def test_openai_connection_is_reused_across_requests(
    openai: OpenAIChatEngine, sse_double: OpenAIStreamDouble
) -> None:
    for _ in range(3):
        sse_double.reply_events([chunk({"content": "x"}), chunk({}, finish_reason="stop")])
        await collect(openai, user("hi"))

    assert len(set(sse_double.client_ports[-3:])) == 1
