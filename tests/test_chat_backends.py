"""Chat models backed by remote engines, through aigw's HTTP API: fallback chains, Ollama, OpenAI-compatible."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Gateway, LlamaServer, free_port, start_gateway
from doubles.ollama import OllamaProtocolDouble
from test_chat import chat, sse_events, text_of

GREEDY = {"temperature": 0, "seed": 1, "num_predict": 12}


@pytest.fixture(scope="module")
def backends_gateway(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    llama_server: LlamaServer,
    ollama_double: OllamaProtocolDouble,
) -> Iterator[Gateway]:
    ollama = {"engine": "ollama", "base_url": ollama_double.url, "model": "double-model"}
    local = {"engine": "llama", "n_ctx": 2048}
    proxied = {"engine": "openai", "base_url": llama_server.base_url, "model": "qwen", "api_key": llama_server.api_key}
    dead = {"engine": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "gone", "timeout": 5}
    models = [
        {"name": "chain", "backends": [ollama, local]},
        {"name": "proxied", "backends": [proxied]},
        {"name": "dead-then-local", "backends": [dead, local]},
        {"name": "dead", "backends": [dead]},
    ]
    gw = start_gateway(
        tmp_path_factory.mktemp("gw-backends"),
        AIGW_MODELS_DIR=str(models_dir),
        AIGW_CHAT_MODELS=json.dumps(models),
        AIGW_DEFAULT_CHAT_MODEL="chain",
    )
    yield gw
    gw.stop()


def test_ollama_backend_answers_through_api_chat(
    backends_gateway: Gateway, ollama_double: OllamaProtocolDouble
) -> None:
    ollama_double.reply_text(["Bonjour", " from", " Ollama"], eval_count=3, total_duration=42_000_000)
    events = sse_events(
        chat(
            backends_gateway,
            backends_gateway.new_user().key,
            {"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": 0.2, "num_predict": 9}},
        )
    )
    assert text_of(events) == "Bonjour from Ollama"
    assert events[-1][1]["eval_count"] == 3 and events[-1][1]["total_duration"] == 42_000_000
    sent = ollama_double.last_request
    assert sent["model"] == "double-model" and sent["options"] == {"temperature": 0.2, "num_predict": 9}


def test_ollama_tool_call_reaches_the_client(backends_gateway: Gateway, ollama_double: OllamaProtocolDouble) -> None:
    ollama_double.reply_tool_call("get_weather", {"city": "Oslo"})
    events = sse_events(
        chat(
            backends_gateway,
            backends_gateway.new_user().key,
            {"messages": [{"role": "user", "content": "weather in Oslo?"}]},
        )
    )
    calls = [data for kind, data in events if kind == "tool_call"]
    assert calls[0]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}


def test_5xx_falls_back_to_the_next_backend_but_4xx_does_not(
    backends_gateway: Gateway, ollama_double: OllamaProtocolDouble
) -> None:
    key = backends_gateway.new_user().key
    body = {"messages": [{"role": "user", "content": "Name the capital of France in one word."}], "options": GREEDY}
    ollama_double.reply_status(500, "model crashed")
    events = sse_events(chat(backends_gateway, key, body))
    assert "Paris" in text_of(events)  # answered by the embedded model
    ollama_double.reply_status(400, "invalid options")
    resp = chat(backends_gateway, key, body)
    assert resp.status_code == 400
    assert resp.json()["code"] == "engine_rejected" and "invalid options" in resp.json()["error"]


def test_stopped_backend_falls_back(backends_gateway: Gateway, ollama_double: OllamaProtocolDouble) -> None:
    key = backends_gateway.new_user().key
    body = {"messages": [{"role": "user", "content": "Name the capital of France in one word."}], "options": GREEDY}
    ollama_double.reply_text(["from the double"])
    assert text_of(sse_events(chat(backends_gateway, key, body))) == "from the double"
    name = f"ollama@127.0.0.1:{ollama_double.url.rsplit(':', 1)[1]}/double-model"
    assert backends_gateway.client().get("/health").json()["services"][name] is True
    ollama_double.stop()
    try:
        assert "Paris" in text_of(sse_events(chat(backends_gateway, key, body)))
        health = backends_gateway.client().get("/health").json()
        assert health["services"][name] is False and health["status"] == "degraded"
    finally:
        ollama_double.start()
    ollama_double.reply_text(["back again"])
    assert text_of(sse_events(chat(backends_gateway, key, body))) == "back again"


def test_unreachable_openai_backend_falls_back_and_alone_is_503(backends_gateway: Gateway) -> None:
    key = backends_gateway.new_user().key
    body = {"messages": [{"role": "user", "content": "Name the capital of France in one word."}], "options": GREEDY}
    assert "Paris" in text_of(sse_events(chat(backends_gateway, key, {**body, "model": "dead-then-local"})))
    resp = chat(backends_gateway, key, {**body, "model": "dead"})
    assert resp.status_code == 503 and resp.json()["code"] == "engine_unavailable"


def test_openai_backend_proxies_a_real_llama_cpp_server(backends_gateway: Gateway) -> None:
    events = sse_events(
        chat(
            backends_gateway,
            backends_gateway.new_user().key,
            {
                "model": "proxied",
                "messages": [{"role": "user", "content": "Name the capital of France in one word."}],
                "options": GREEDY,
            },
        )
    )
    assert "Paris" in text_of(events)
    assert events[-1][0] == "done" and events[-1][1]["model"] == "proxied" and events[-1][1]["eval_count"] > 0


def test_models_are_listed_for_openai_clients(backends_gateway: Gateway) -> None:
    listed = backends_gateway.client(backends_gateway.new_user().key).get("/v1/models").json()
    assert [m["id"] for m in listed["data"]] == ["chain", "proxied", "dead-then-local", "dead", "all-minilm-l6-v2"]


def test_non_streaming_client_gets_the_upstreams_usage(backends_gateway: Gateway) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{backends_gateway.url}/v1", api_key=backends_gateway.new_user().key, max_retries=0)
    # A client that reads the answer whole is served by one non-streaming upstream call, which (unlike
    # llama_cpp.server's stream) reports exact token usage.
    completion = client.chat.completions.create(
        model="proxied",
        temperature=0,
        max_tokens=12,
        messages=[{"role": "user", "content": "Name the capital of France in one word."}],
    )
    assert "Paris" in completion.choices[0].message.content
    assert completion.usage.prompt_tokens > 5 and 0 < completion.usage.completion_tokens <= 12
