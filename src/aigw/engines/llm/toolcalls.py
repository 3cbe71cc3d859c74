"""Tool calls in generated text: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Qwen/Hermes style).

`read_opening` decides from the first characters of a reply whether it is a call and of which tool;
`ToolCallScanner` finds `<tool_call>` tags later in a text answer; `parse_call` checks a call against
the tool's JSON schema; `arguments_grammar_schema` is the schema arguments are generated under.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from aigw.engines.llm.base import FunctionCall, Tool

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class ToolCallScanner:
    """Splits text generated after an answer has begun into text to show and `<tool_call>` bodies, holding
    back only what could still become the opening tag. (How a reply *opens* is decided by `read_opening`.)"""

    def __init__(self) -> None:
        self._pending = ""
        self._inside = False
        self.bodies: list[str] = []

    def feed(self, piece: str) -> str:
        """Consume generated text; return the part that is plain text and safe to stream now."""
        self._pending += piece
        shown: list[str] = []
        while True:
            if self._inside:
                end = self._pending.find(CLOSE)
                if end < 0:
                    return "".join(shown)
                self.bodies.append(self._pending[:end])
                self._pending = self._pending[end + len(CLOSE) :]
                self._inside = False
                continue
            start = self._pending.find(OPEN)
            if start >= 0:
                shown.append(self._pending[:start])
                self._pending = self._pending[start + len(OPEN) :]
                self._inside = True
                continue
            keep = _partial_tag_suffix(self._pending)
            shown.append(self._pending[: len(self._pending) - keep])
            self._pending = self._pending[len(self._pending) - keep :]
            return "".join(shown)

    def finish(self) -> str:
        """End of generation: an unclosed call body still counts; leftover text is returned."""
        if self._inside:
            self.bodies.append(self._pending)
            self._pending, self._inside = "", False
            return ""
        rest, self._pending = self._pending, ""
        return rest


class Opening(Enum):
    PENDING = "pending"  # not enough text yet to tell
    TEXT = "text"  # an ordinary answer (which may still contain JSON)
    CALL = "call"  # a call of an offered tool; `name` says which
    INVENTED = "invented"  # a call of a tool the request did not offer


_NAME = re.compile(r'\{\s*"name"\s*:\s*"([^"\\]*)"')
_NEXT_KEY = re.compile(r'\{\s*"name"\s*:\s*"[^"\\]*"\s*,\s*"([^"\\]*)"')
_PARTIAL_NAME = re.compile(r'\{\s*(?:"(?:n|na|nam|name|name"\s*(?::\s*(?:"[^"\\]*)?)?)?)?')
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n")
MAX_OPENING_CHARS = 160


def read_opening(text: str, tools: list[Tool]) -> tuple[Opening, str | None]:
    """Tell from how a reply opens whether it is a tool call, and of which tool.

    Small models write calls as `<tool_call>{...}`, bare JSON or a fenced JSON block. Only the name is
    read from the text; the engine then generates the arguments under the tool's schema grammar. JSON that
    is not a call (no `"name"` first, or a name of no offered tool without `"arguments"` after it) is text.
    """
    head = text.lstrip()
    if not head:
        return Opening.PENDING, None
    tagged = head.startswith(OPEN)
    if tagged:
        body = head[len(OPEN) :].lstrip()
    elif OPEN.startswith(head):
        return Opening.PENDING, None
    elif head.startswith("```"):
        fence = _FENCE.match(head)
        if fence is None:
            return (Opening.PENDING, None) if "\n" not in head and len(head) < 24 else (Opening.TEXT, None)
        body = head[fence.end() :].lstrip()
    elif "```".startswith(head):
        return Opening.PENDING, None
    else:
        body = head
    if not body:
        return Opening.PENDING, None
    if not body.startswith("{"):
        return (Opening.INVENTED, None) if tagged else (Opening.TEXT, None)
    return _read_call(body, tools, tagged=tagged, pending_ok=len(head) < MAX_OPENING_CHARS)


def _read_call(body: str, tools: list[Tool], *, tagged: bool, pending_ok: bool) -> tuple[Opening, str | None]:
    not_call = (Opening.INVENTED, None) if tagged else (Opening.TEXT, None)
    undecided = (Opening.PENDING, None) if pending_ok else not_call
    named = _NAME.match(body)
    if named is None:
        # Still possibly on the way to `{"name": "...`; anything else after the brace is not a call.
        return undecided if _PARTIAL_NAME.fullmatch(body) else not_call
    name = named.group(1)
    if any(t.function.name == name for t in tools):
        return Opening.CALL, name
    if tagged:
        return Opening.INVENTED, name
    following = _NEXT_KEY.match(body)
    if following is None:
        return undecided if re.fullmatch(r'\s*(,\s*("[^"\\]*)?)?', body[named.end() :]) else (Opening.TEXT, None)
    key = following.group(1)
    return (Opening.INVENTED, name) if key in ("arguments", "parameters") else (Opening.TEXT, None)


def _partial_tag_suffix(text: str) -> int:
    for size in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-size:]):
            return size
    return 0


class InvalidToolCall(ValueError):
    pass


def parse_call(body: str, tools: list[Tool]) -> FunctionCall:
    """Parse one call body and check it names a known tool with arguments matching its schema."""
    try:
        data = orjson.loads(body.strip())
    except orjson.JSONDecodeError as exc:
        raise InvalidToolCall(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise InvalidToolCall("a tool call needs a string 'name'")
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError as exc:
            raise InvalidToolCall("arguments are not JSON") from exc
    if not isinstance(arguments, dict):
        raise InvalidToolCall("arguments must be an object")
    tool = next((t for t in tools if t.function.name == data["name"]), None)
    if tool is None:
        raise InvalidToolCall(f"unknown tool {data['name']!r}")
    try:
        errors = list(Draft202012Validator(tool.function.parameters).iter_errors(arguments))
    except SchemaError:
        errors = []  # a tool with a broken schema can only be checked for JSON well-formedness
    if errors:
        raise InvalidToolCall(f"arguments do not match the schema: {errors[0].message}")
    return FunctionCall(name=data["name"], arguments=arguments)


def arguments_schema(tool: Tool) -> dict[str, Any]:
    """The JSON schema a call's arguments are generated under: the tool's parameters, always an object."""
    parameters = tool.function.parameters or {}
    if parameters.get("type") in (None, "object"):
        return {"type": "object", **parameters}
    return {"type": "object"}
