"""/api/agents through real HTTP on SQLite and PostgreSQL: the built-in public agents, ownership and visibility
for two customers and an admin, the public-flag rules, validation, and agent chat streaming as /api/chat does,
with the agent's prompt first, the caller's system message next and the agent's knowledge-base context last."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Gateway, gateway_on, start_gateway
from doubles.ollama import OllamaProtocolDouble
from test_kb import upload, wait_ready

BUILT_IN = {"Customer Service", "Writer", "Coder", "Analyst"}


def sse_events(resp: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in resp.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path
) -> Iterator[Gateway]:
    gw = gateway_on(request, tmp_path_factory, "gw-agents", AIGW_MODELS_DIR=str(models_dir))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def double_gateway(tmp_path_factory: pytest.TempPathFactory, ollama_double: OllamaProtocolDouble) -> Iterator[Gateway]:
    backend = {"engine": "ollama", "base_url": ollama_double.url, "model": "double-model"}
    gw = start_gateway(
        tmp_path_factory.mktemp("gw-agents-double"),
        AIGW_CHAT_MODELS=json.dumps([{"name": "double", "backends": [backend]}]),
        AIGW_DEFAULT_CHAT_MODEL="double",
    )
    yield gw
    gw.stop()


def create(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post("/api/agents", json={"name": "Helper", "system_prompt": "You help.", **fields})


def test_built_in_public_agents_exist_after_the_first_start(gateway: Gateway) -> None:
    agents = gateway.client(gateway.new_user().key).get("/api/agents").json()
    built_in = [agent for agent in agents if agent["name"] in BUILT_IN]
    assert {agent["name"] for agent in built_in} == BUILT_IN
    for agent in built_in:
        assert agent["is_public"] is True and agent["owner_id"] is None and agent["system_prompt"]
        assert agent["icon"] in ("bot", "chat", "mic", "chart", "pen", "code", "globe")
        assert isinstance(agent["capabilities"], str) and isinstance(json.loads(agent["capabilities"]), list)


def test_ownership_and_visibility_for_two_customers_and_an_admin(gateway: Gateway) -> None:
    alice, bob, admin = gateway.client(gateway.new_user().key), gateway.client(gateway.new_user().key), gateway.admin()
    resp = create(alice, name="Alice's helper", description="mine", icon="code", capabilities='["Code"]')
    assert resp.status_code == 201, resp.text
    agent = resp.json()
    assert agent["color"] == "#6366f1" and agent["is_public"] is False and agent["capabilities"] == '["Code"]'
    path = f"/api/agents/{agent['id']}"

    assert agent["id"] in [a["id"] for a in alice.get("/api/agents").json()]
    assert agent["id"] not in [a["id"] for a in bob.get("/api/agents").json()]
    assert bob.get(path).status_code == 404
    assert bob.put(path, json={"name": "Taken"}).status_code == 404
    assert bob.delete(path).status_code == 404
    assert bob.post(f"{path}/chat", json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 404

    resp = alice.put(path, json={"name": "Renamed", "color": "#112233"})
    assert resp.status_code == 200 and resp.json()["name"] == "Renamed" and resp.json()["color"] == "#112233"
    assert resp.json()["system_prompt"] == "You help."  # fields not sent stay as they were
    assert admin.get(path).status_code == 200
    assert admin.put(path, json={"description": "checked by admin"}).status_code == 200
    assert admin.delete(path).json() == {"success": True}
    assert alice.get(path).status_code == 404


def test_only_an_admin_makes_an_agent_public(gateway: Gateway) -> None:
    alice, bob, admin = gateway.client(gateway.new_user().key), gateway.client(gateway.new_user().key), gateway.admin()
    resp = create(alice, is_public=True)
    assert resp.status_code == 403 and resp.json()["code"] == "admin_only"
    agent = create(alice).json()
    path = f"/api/agents/{agent['id']}"
    assert alice.put(path, json={"is_public": True}).status_code == 403
    assert admin.put(path, json={"is_public": True}).json()["is_public"] is True
    assert bob.get(path).status_code == 200  # public now: visible to all
    resp = bob.put(path, json={"name": "Mine now"})
    assert resp.status_code == 403 and resp.json()["code"] == "not_owner"
    assert bob.delete(path).status_code == 403
    built_in = next(a for a in bob.get("/api/agents").json() if a["name"] == "Writer")
    assert bob.put(f"/api/agents/{built_in['id']}", json={"name": "Scribe"}).status_code == 403
    public = create(admin, name="Team agent", is_public=True)
    assert public.status_code == 201 and public.json()["is_public"] is True


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"icon": "rocket"}, "invalid_icon"),
        ({"color": "blue"}, "invalid"),
        ({"capabilities": "not json"}, "invalid_capabilities"),
        ({"capabilities": '{"KB": true}'}, "invalid_capabilities"),
        ({"model": "no-such-model"}, "unknown_model"),
        ({"system_prompt": ""}, "invalid"),
    ],
)
def test_invalid_fields_are_422(gateway: Gateway, fields: dict[str, Any], code: str) -> None:
    resp = create(gateway.client(gateway.new_user().key), **fields)
    assert resp.status_code == 422 and resp.json()["code"] == code, resp.text


def test_an_agent_draws_only_on_its_owners_knowledge_bases(gateway: Gateway) -> None:
    alice, bob = gateway.client(gateway.new_user().key), gateway.client(gateway.new_user().key)
    bobs_kb = bob.post("/api/kb", json={"name": "bob's"}).json()["id"]
    resp = create(alice, kb_ids=[bobs_kb])
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_kb_ids"
    alices_kb = alice.post("/api/kb", json={"name": "alice's"}).json()["id"]
    assert create(alice, kb_ids=[alices_kb]).json()["kb_ids"] == [alices_kb]


def test_agent_chat_streams_with_the_agent_prompt_first_and_the_kb_context_last(
    double_gateway: Gateway, ollama_double: OllamaProtocolDouble
) -> None:
    client = double_gateway.client(double_gateway.new_user().key, timeout=180)
    kb = client.post("/api/kb", json={"name": "facts"}).json()["id"]
    fact = "The office parrot is called Captain Flint and eats sunflower seeds."
    doc = upload(client, kb, "parrot.txt", fact.encode()).json()
    assert wait_ready(client, kb, doc["id"])["status"] == "ready"
    agent = create(client, name="Pirate", system_prompt="You are a pirate. Talk like one.", kb_ids=[kb]).json()

    ollama_double.reply_text(["Arr", ", Captain Flint!"])
    messages = [
        {"role": "system", "content": "Keep it short."},
        {"role": "user", "content": "What is the office parrot called?"},
    ]
    resp = client.post(f"/api/agents/{agent['id']}/chat", json={"messages": messages})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp)
    assert [kind for kind, _ in events] == ["token", "token", "done"]
    assert events[-1][1]["sources"][0]["source"] == "parrot.txt"
    sent = ollama_double.last_request["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    system = sent[0]["content"]
    assert system.startswith("You are a pirate. Talk like one.\n\nKeep it short.")
    assert system.index("Keep it short.") < system.index("Captain Flint")


def test_agent_chat_on_the_embedded_model_obeys_the_agent(gateway: Gateway) -> None:
    client = gateway.client(gateway.new_user().key, timeout=180)
    agent = create(
        client, name="Echo", system_prompt="Whatever the user writes, reply with exactly one word: BANANA."
    ).json()
    body = {"messages": [{"role": "user", "content": "Hello there!"}], "options": {"temperature": 0}}
    resp = client.post(f"/api/agents/{agent['id']}/chat", json=body)
    events = sse_events(resp)
    assert events[-1][0] == "done", events
    text = "".join(data["content"] for kind, data in events if kind == "token")
    assert "BANANA" in text.upper(), text
