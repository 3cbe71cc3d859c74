"""POST /api/chat and the OpenAI-compatible API on the real embedded model (Qwen2.5-Coder-0.5B, llama.cpp)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import validate

from conftest import Gateway, start_gateway

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
GREEDY = {"temperature": 0, "seed": 1}


@pytest.fixture(scope="module")
def chat_gateway(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Gateway]:
    models = [{"name": "qwen2.5-coder-0.5b", "backends": [{"engine": "llama", "n_ctx": 4096, "max_queue": 2}]}]
    gw = start_gateway(
        tmp_path_factory.mktemp("gw-chat"),
        AIGW_MODELS_DIR=str(models_dir),
        AIGW_CHAT_MODELS=json.dumps(models),
        AIGW_PRELOAD_MODELS="true",
    )
    yield gw
    gw.stop()


def sse_events(resp: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in resp.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def chat(gw: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return gw.client(key, timeout=300).post("/api/chat", json=body)


def test_chat_streams_tokens_then_done_with_counts(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()
    resp = chat(
        chat_gateway,
        user.key,
        {
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Name the capital of France in one word."},
            ],
            "options": GREEDY,
        },
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"token"}
    tokens = [data for kind, data in events if kind == "token"]
    assert all(t["done"] is False and isinstance(t["content"], str) for t in tokens)
    assert "Paris" in "".join(t["content"] for t in tokens)
    done = events[-1][1]
    assert done["done"] is True and done["content"] == ""
    assert isinstance(done["total_duration"], int) and done["total_duration"] > 1_000_000  # ns
    assert done["eval_count"] >= len(tokens) > 0
    assert done["prompt_eval_count"] > 10


def test_temperature_zero_repeats_and_sampling_varies(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()

    def text(options: dict[str, Any]) -> str:
        body = {
            "messages": [{"role": "user", "content": "Write one sentence about the sea."}],
            "options": {**options, "num_predict": 24},
        }
        return "".join(d["content"] for k, d in sse_events(chat(chat_gateway, user.key, body)) if k == "token")

    # A repeated request reuses the evaluated prompt and still gives the same answer: greedily, and when
    # sampled with the same seed; other seeds give other answers.
    assert text({"temperature": 0}) == text({"temperature": 0})
    sampled = [text({"temperature": 1.5, "seed": s}) for s in (1, 1, 2, 3)]
    assert sampled[0] == sampled[1]
    assert len(set(sampled)) > 1


def test_follow_up_turn_reuses_the_evaluated_history(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()
    history = [
        {"role": "system", "content": "You are a terse assistant. " * 20},
        {"role": "user", "content": "Name a color."},
    ]
    first = sse_events(chat(chat_gateway, user.key, {"messages": history, "options": {**GREEDY, "num_predict": 8}}))
    answer = "".join(d["content"] for k, d in first if k == "token")
    follow = [*history, {"role": "assistant", "content": answer}, {"role": "user", "content": "Another one."}]
    done = sse_events(chat(chat_gateway, user.key, {"messages": follow, "options": {**GREEDY, "num_predict": 8}}))[-1][
        1
    ]
    # Everything up to the new turn was already evaluated: only the new tokens are read.
    assert done["prompt_cached_count"] >= first[-1][1]["prompt_eval_count"] > 100
    assert done["prompt_eval_count"] - done["prompt_cached_count"] < 30


def test_one_users_prompt_is_not_reused_for_another(chat_gateway: Gateway) -> None:
    """The engine keeps the last prompt evaluated; if another user's request reused it, `prompt_cached_count`
    (and the time to the first token) would tell that user how much of a guessed prefix someone else sent."""
    alice, mallory = chat_gateway.new_user(), chat_gateway.new_user()

    def send(key: str, content: str) -> dict[str, Any]:
        body = {"messages": [{"role": "user", "content": content}], "options": {**GREEDY, "num_predict": 2}}
        return sse_events(chat(chat_gateway, key, body))[-1][1]

    secret = "The vault code is 4417 and the spare key is under the third flowerpot. " * 3
    send(alice.key, secret)
    guess = send(mallory.key, secret[:120] + "guessing the rest?")
    assert guess["prompt_cached_count"] == 0
    # A user's own follow-up still reuses their prompt.
    send(mallory.key, "Tell me a colour. " * 8)
    again = send(mallory.key, "Tell me a colour. " * 8 + "A warm one.")
    assert again["prompt_cached_count"] > 30


def test_num_predict_caps_the_answer(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()
    events = sse_events(
        chat(
            chat_gateway,
            user.key,
            {
                "messages": [{"role": "user", "content": "Count from 1 to 100, separated by spaces."}],
                "options": {**GREEDY, "num_predict": 5},
            },
        )
    )
    assert events[-1][1]["eval_count"] == 5
    assert events[-1][1]["done_reason"] == "length"


def test_stop_sequence_ends_the_answer(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()
    events = sse_events(
        chat(
            chat_gateway,
            user.key,
            {
                "messages": [{"role": "user", "content": "Count from 1 to 10, separated by spaces."}],
                "options": {**GREEDY, "stop": ["5"]},
            },
        )
    )
    text = "".join(d["content"] for k, d in events if k == "token")
    assert "4" in text and "5" not in text and "6" not in text


def test_tool_call_parses_and_matches_the_schema(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()
    events = sse_events(
        chat(
            chat_gateway,
            user.key,
            {
                "messages": [{"role": "user", "content": "What is the weather in Paris right now?"}],
                "tools": [WEATHER],
                "options": GREEDY,
            },
        )
    )
    calls = [data for kind, data in events if kind == "tool_call"]
    assert len(calls) == 1, events
    call = calls[0]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather"
    assert isinstance(call["arguments"], dict)
    validate(call["arguments"], WEATHER["function"]["parameters"])
    assert call["arguments"]["city"].lower() == "paris"
    assert events[-1][0] == "done" and events[-1][1]["done_reason"] == "tool_calls"
    assert not [kind for kind, _ in events if kind == "token"]  # the call is not also shown as text


def test_tool_result_is_answered(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()
    events = sse_events(
        chat(
            chat_gateway,
            user.key,
            {
                "tools": [WEATHER],
                "options": GREEDY,
                "messages": [
                    {"role": "user", "content": "What is the weather in Paris right now?"},
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
                    },
                    {"role": "tool", "name": "get_weather", "content": '{"temp_c": 18, "sky": "sunny"}'},
                ],
            },
        )
    )
    text = "".join(d["content"] for k, d in events if k == "token")
    assert "18" in text and "sunny" in text.lower(), text
    assert not [kind for kind, _ in events if kind == "tool_call"]


def usage_row(gw: Gateway, user_id: int, endpoint: str) -> dict[str, Any]:
    rows = gw.admin().get("/api/admin/usage").json()
    return next((r for r in rows if r["user_id"] == user_id and r["endpoint"] == endpoint), {})


def test_client_disconnect_stops_generation(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()
    body = {
        "messages": [{"role": "user", "content": "Write a very long story about a dragon and a knight."}],
        "options": {**GREEDY, "num_predict": 2000},
    }
    with httpx.Client(base_url=chat_gateway.url, headers={"Authorization": f"Bearer {user.key}"}, timeout=60) as c:
        with c.stream("POST", "/api/chat", json=body) as resp:
            seen = 0
            for line in resp.iter_lines():
                seen += line.startswith("event: token")
                if seen >= 3:
                    break
    started = time.monotonic()
    # The engine is free again at once: the next request is not queued behind 2000 tokens.
    quick = chat(
        chat_gateway,
        user.key,
        {"messages": [{"role": "user", "content": "Say OK."}], "options": {**GREEDY, "num_predict": 3}},
    )
    assert quick.status_code == 200 and time.monotonic() - started < 30
    deadline = time.monotonic() + 10
    while not usage_row(chat_gateway, user.id, "/api/chat").get("count") == 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    row = usage_row(chat_gateway, user.id, "/api/chat")
    assert row["count"] == 2
    assert 3 <= row["completion_tokens"] < 200, row  # tokens recorded, and far fewer than 2000


def test_full_queue_gets_503_with_retry_after(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()
    body = {"messages": [{"role": "user", "content": "Count from 1 to 50."}], "options": {**GREEDY, "num_predict": 60}}
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: chat(chat_gateway, user.key, body), range(6)))
    busy = [r for r in responses if r.status_code == 503]
    assert busy, [r.status_code for r in responses]
    assert all(r.json()["code"] == "engine_busy" and int(r.headers["retry-after"]) >= 1 for r in busy)
    assert sum(r.status_code == 200 for r in responses) >= 3  # one running and max_queue=2 waiting


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"messages": [{"role": "user", "content": "hi"}], "options": {"temprature": 0}}, 422, "invalid"),
        ({"messages": [{"role": "user", "content": "hi"}], "model": "no-such-model"}, 404, "model_not_found"),
        ({"messages": []}, 422, "invalid"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 422, "invalid"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 422, "invalid_messages"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {}}]},
            422,
            "invalid",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": 9}}, 422, "invalid"),
    ],
)
def test_bad_chat_requests_are_4xx(chat_gateway: Gateway, body: dict[str, Any], status: int, code: str) -> None:
    resp = chat(chat_gateway, chat_gateway.new_user().key, body)
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code


def test_too_long_conversation_is_rejected_not_crashed(chat_gateway: Gateway) -> None:
    long_text = "word " * 6000  # well past the 4096-token context of this test server
    resp = chat(chat_gateway, chat_gateway.new_user().key, {"messages": [{"role": "user", "content": long_text}]})
    assert resp.status_code == 400 and resp.json()["code"] == "context_length_exceeded"


def test_chat_needs_credentials(chat_gateway: Gateway) -> None:
    resp = chat_gateway.client().post("/api/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 401


def test_health_lists_the_embedded_engine(chat_gateway: Gateway) -> None:
    services = chat_gateway.client().get("/health").json()["services"]
    assert services["llama.cpp/qwen2.5-coder-0.5b"] is True


def openai_client(gw: Gateway, key: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=300)


def test_openai_sdk_lists_models_and_completes(chat_gateway: Gateway) -> None:
    client = openai_client(chat_gateway, chat_gateway.new_user().key)
    assert [m.id for m in client.models.list()] == ["qwen2.5-coder-0.5b", "all-minilm-l6-v2"]
    raw = client.chat.completions.with_raw_response.create(
        model="qwen2.5-coder-0.5b",
        temperature=0,
        max_tokens=16,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name the capital of France in one word."},
        ],
    )
    completion = raw.parse()
    assert "Paris" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 10 and 0 < completion.usage.completion_tokens <= 16
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    timing = dict(part.strip().split(";dur=") for part in raw.headers["server-timing"].split(","))
    assert set(timing) == {"gateway", "engine"}
    assert 0 <= float(timing["gateway"]) < float(timing["engine"])


def test_openai_sdk_streams_with_usage(chat_gateway: Gateway) -> None:
    client = openai_client(chat_gateway, chat_gateway.new_user().key)
    chunks = list(
        client.chat.completions.create(
            model="qwen2.5-coder-0.5b",
            temperature=0,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Name the capital of France in one word."}],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_sdk_tool_call_round_trip(chat_gateway: Gateway) -> None:
    client = openai_client(chat_gateway, chat_gateway.new_user().key)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris right now?"}]
    first = client.chat.completions.create(
        model="qwen2.5-coder-0.5b", temperature=0, messages=messages, tools=[WEATHER]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"].lower() == "paris"
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18, "sky": "sunny"}'},
    ]
    answer = client.chat.completions.create(
        model="qwen2.5-coder-0.5b", temperature=0, messages=messages, tools=[WEATHER]
    )
    assert "18" in answer.choices[0].message.content


def test_openai_sdk_errors_are_status_errors(chat_gateway: Gateway) -> None:
    import openai

    client = openai_client(chat_gateway, chat_gateway.new_user().key)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai_client(chat_gateway, "aigw_" + "0" * 43).models.list()


def test_arguments_always_match_the_schema_they_are_generated_under(chat_gateway: Gateway) -> None:
    # The model naturally writes {"city": "Paris"}; this schema admits at most 3 characters. Arguments are
    # generated under a grammar built from the schema, so the call still validates.
    params = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 3}}, "required": ["city"]}
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": params}}
    events = sse_events(
        chat(
            chat_gateway,
            chat_gateway.new_user().key,
            {
                "messages": [{"role": "user", "content": "What is the weather in Paris right now?"}],
                "tools": [tool],
                "options": GREEDY,
            },
        )
    )
    calls = [data for kind, data in events if kind == "tool_call"]
    assert len(calls) == 1, events
    validate(calls[0]["tool_calls"][0]["function"]["arguments"], params)


SEED_SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def ask(gw: Gateway, key: str, question: str, options: dict[str, Any], *, tools: bool = True) -> list[Any]:
    """The events of one question, asked after the seed's system prompt with the weather tool (or no tools)."""
    body: dict[str, Any] = {"messages": [SEED_SYSTEM, {"role": "user", "content": question}], "options": options}
    if tools:
        body["tools"] = [WEATHER]
    return sse_events(chat(gw, key, body))


def text_of(events: list[Any]) -> str:
    return "".join(d["content"] for k, d in events if k == "token")


def test_the_seed_example_yields_a_tool_call_at_the_default_temperature_for_every_seed(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()
    for seed in range(6):
        events = ask(chat_gateway, user.key, "What is the weather like in Paris today?", {"seed": seed})
        assert [kind for kind, _ in events] == ["tool_call", "done"], (seed, events)
        call = events[0][1]["tool_calls"][0]["function"]
        assert call["name"] == "get_weather" and call["arguments"]["city"].lower() == "paris", (seed, call)
        assert events[-1][1]["done_reason"] == "tool_calls"


def test_a_greeting_with_tools_offered_is_answered_in_text_not_an_invented_call(chat_gateway: Gateway) -> None:
    # Qwen2.5-Coder-0.5B greets back with a call of a "hello" tool that nobody offered: it must come out as text.
    user = chat_gateway.new_user()
    for seed in range(4):
        events = ask(chat_gateway, user.key, "Hello!", {"seed": seed, "num_predict": 24})
        text = text_of(events)
        assert "tool_call" not in [k for k, _ in events], (seed, events)
        assert text.strip() and "{" not in text[:1] and "<|" not in text, (seed, text)


def test_an_answer_that_is_json_data_streams_as_text(chat_gateway: Gateway) -> None:
    question = "Reply with only a JSON object describing a cat, with name and age."
    events = ask(chat_gateway, chat_gateway.new_user().key, question, {**GREEDY, "num_predict": 48})
    assert "tool_call" not in [k for k, _ in events], events
    assert '"name"' in text_of(events) and "{" in text_of(events), events


def test_no_end_or_control_token_ever_reaches_the_text(chat_gateway: Gateway) -> None:
    user = chat_gateway.new_user()
    for seed in range(3):
        options = {"seed": seed, "temperature": 1.2, "num_predict": 64}
        text = text_of(ask(chat_gateway, user.key, "Say hi, then stop.", options, tools=False))
        assert "<|" not in text and "|>" not in text, (seed, text)
