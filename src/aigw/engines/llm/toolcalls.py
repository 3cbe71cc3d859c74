"""Tool calls in generated text: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Qwen/Hermes style).

`ToolCallScanner` splits a token stream into text that can be shown at once and tool-call bodies,
holding back only what could still turn into the opening tag. `validate_call` checks a parsed call
against the tool's JSON schema; `call_grammar_schema` is the schema that constrains a retry.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from aigw.engines.llm.base import FunctionCall, Tool

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class ToolCallScanner:
    """Small models often skip the tags and answer with a bare JSON call; a reply that opens with `{`
    is therefore held whole and, at the end, read as calls if it parses as such, else as text."""

    def __init__(self) -> None:
        self._pending = ""
        self._inside = False
        self._mode: str | None = None  # "bare" or "tags", decided by the first non-blank character
        self.bodies: list[str] = []

    def feed(self, piece: str) -> str:
        """Consume generated text; return the part that is plain text and safe to stream now."""
        self._pending += piece
        if self._mode is None:
            if not self._pending.strip():
                return ""
            self._mode = "bare" if self._pending.lstrip().startswith("{") else "tags"
        if self._mode == "bare":
            return ""
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
        if self._mode == "bare":
            rest, self._pending = self._pending, ""
            objects = _json_objects(rest)
            if objects is None or not all(isinstance(o, dict) and "name" in o for o in objects):
                return rest
            self.bodies.extend(orjson.dumps(o).decode() for o in objects)
            return ""
        if self._inside:
            self.bodies.append(self._pending)
            self._pending, self._inside = "", False
            return ""
        rest, self._pending = self._pending, ""
        return rest


def _json_objects(text: str) -> list[Any] | None:
    """The JSON values written one after another in `text`, or None if it is not only that."""
    decoder, values, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    while pos < len(text):
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
        values.append(value)
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
    return values


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


def call_grammar_schema(tools: list[Tool]) -> dict[str, Any]:
    """A JSON schema whose instances are exactly the valid calls of `tools`, for constrained decoding."""
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool.function.name},
                "arguments": tool.function.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for tool in tools
    ]
    return variants[0] if len(variants) == 1 else {"oneOf": variants}
