"""How reliably the embedded model's tool calls arrive as calls, and only when a tool fits.

Runs the embedded engine (Qwen2.5-Coder-0.5B, llama.cpp) in this process on prompts that need an offered
tool and prompts that do not, each with many seeds at the default sampling settings (temperature 0.8, as
in Ollama), and counts the outcomes. Two designs are measured on the same prompts and seeds:

- `engine`: what aigw does (engines/llm/llama.py): the reply's opening is decoded greedily until it shows
  a call of an offered tool, an answer, or a call of a tool not offered; a call's arguments are generated
  under the tool's schema grammar; an answer goes on at the requested settings.
- `text`: the reply sampled freely at the requested settings and then read as a call if its opening is one
  (`<tool_call>` tags, bare or fenced JSON) with valid arguments: the best a text parser can do.

    .venv/bin/python bench/tool_calls.py [--seeds 20] [--designs engine,text]

Prints a markdown table (rate of the expected outcome per prompt and design), the command, the machine
and the date; writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aigw.engines.llm.base import ChatMessage, ChatOptions, ChatRequest, TextDelta, Tool, ToolCalls
from aigw.engines.llm.llama import LlamaChatEngine, render_message
from aigw.engines.llm.toolcalls import InvalidToolCall, Opening, parse_call, read_opening

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEM = "You are a helpful assistant."
WEATHER = Tool.model_validate(
    {
        "function": {
            "name": "get_weather",
            "description": "Get weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    }
)
TIME = Tool.model_validate(
    {
        "function": {
            "name": "get_time",
            "description": "Get the current local time in a timezone",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string", "description": "IANA name, e.g. Europe/Paris"}},
                "required": ["timezone"],
            },
        }
    }
)
# (question, tools offered, the tool a call must name, or None when the answer must be text)
CASES: list[tuple[str, list[Tool], str | None]] = [
    ("What is the weather like in Paris today?", [WEATHER], "get_weather"),  # the seed's example
    ("Is it raining in London right now?", [WEATHER], "get_weather"),
    ("Do I need an umbrella in Berlin today?", [WEATHER], "get_weather"),
    ("weather tokyo", [WEATHER], "get_weather"),
    ("What time is it in Tokyo?", [WEATHER, TIME], "get_time"),
    ("How warm is it in Madrid?", [WEATHER, TIME], "get_weather"),
    ("Hello!", [WEATHER], None),
    ("Write a haiku about the sea.", [WEATHER], None),
    ("What is 17 times 3?", [WEATHER, TIME], None),
    ("Give me a JSON object describing a cat, with name and age.", [WEATHER], None),
    ("Write a Python function that reverses a string.", [WEATHER], None),
]


def request(question: str, tools: list[Tool], seed: int) -> ChatRequest:
    messages = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=question)]
    return ChatRequest(messages=messages, tools=tools, options=ChatOptions(seed=seed, num_predict=48))


async def engine_outcome(engine: LlamaChatEngine, question: str, tools: list[Tool], seed: int) -> dict[str, Any]:
    text, calls = "", []
    async for event in engine.stream(request(question, tools, seed)):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, ToolCalls):
            calls += [c.function.name for c in event.calls]
    return {"calls": calls, "text": text}


async def text_outcome(engine: LlamaChatEngine, question: str, tools: list[Tool], seed: int) -> dict[str, Any]:
    """The free reply read by a text parser: sampled with no tools in the engine's hands, tools in the prompt."""
    req = request(question, tools, seed)
    llm = engine._ensure_loaded()
    prompt = engine._template.render(
        messages=[render_message(m) for m in req.messages],
        tools=[t.model_dump() for t in tools],
        add_generation_prompt=True,
    )
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    llm.set_seed(seed)
    out: list[int] = []
    for token in engine._tokens(llm, tokens, req.options):
        if token in engine._stop_tokens or len(out) >= 48:
            break
        out.append(token)
    reply = llm.detokenize(out, special=False).decode(errors="replace")
    kind, name = read_opening(reply, tools)
    if kind is Opening.CALL and name is not None:
        body = reply.strip().removeprefix("<tool_call>").strip().removeprefix("```json").strip("`\n ")
        body = body.split("</tool_call>")[0].strip()
        try:
            return {"calls": [parse_call(body, tools).name], "text": ""}
        except InvalidToolCall:
            return {"calls": [], "text": reply}
    return {"calls": [], "text": reply}


def expected(outcome: dict[str, Any], tool: str | None) -> bool:
    if tool is None:
        return not outcome["calls"] and bool(outcome["text"].strip())
    return bool(outcome["calls"]) and outcome["calls"][0] == tool


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--designs", default="engine,text")
    args = parser.parse_args()
    designs = args.designs.split(",")
    models_dir = Path(os.environ.get("AIGW_MODELS_DIR", tempfile.gettempdir() + "/aigw-bench-models"))
    engine = LlamaChatEngine(name="bench", model_path=None, models_dir=models_dir, n_ctx=4096)
    await engine.warm()
    rows, started = [], time.perf_counter()
    for question, tools, tool in CASES:
        row: dict[str, Any] = {"question": question, "tools": [t.function.name for t in tools], "expect": tool}
        for design in designs:
            run = engine_outcome if design == "engine" else text_outcome
            outcomes = [await run(engine, question, tools, seed) for seed in range(args.seeds)]
            row[design] = sum(expected(o, tool) for o in outcomes) / len(outcomes)
            row[f"{design}_misses"] = [o for o in outcomes if not expected(o, tool)][:3]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("misses")}), file=sys.stderr)
    await engine.close()
    header = "| question | tools | expected | " + " | ".join(designs) + " |"
    print(header)
    print("|" + "---|" * (3 + len(designs)))
    for row in rows:
        cells = " | ".join(f"{row[d]:.0%}" for d in designs)
        print(f"| {row['question']} | {', '.join(row['tools'])} | {row['expect'] or 'text'} | {cells} |")
    for design in designs:
        calls = [r[design] for r in rows if r["expect"]]
        texts = [r[design] for r in rows if not r["expect"]]
        print(
            f"\n{design}: call when a tool fits {sum(calls) / len(calls):.1%}, text when none does "
            f"{sum(texts) / len(texts):.1%} ({args.seeds} seeds each)"
        )
    command = " ".join([Path(sys.executable).name, *sys.argv])
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    print(
        f"\ncommand: {command}\nmachine: {machine}\ndate: {datetime.now(UTC):%Y-%m-%d}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tool_calls.json").write_text(
        json.dumps({"rows": rows, "command": command, "machine": machine}, indent=1)
    )


if __name__ == "__main__":
    asyncio.run(main())
