"""Reading tool calls out of generated text (engines/llm/toolcalls.py)."""

from __future__ import annotations

import pytest

from aigw.engines.llm.base import Tool, ToolFunction
from aigw.engines.llm.toolcalls import (
    InvalidToolCall,
    Opening,
    ToolCallScanner,
    arguments_schema,
    parse_call,
    read_opening,
)

WEATHER = Tool(
    function=ToolFunction(
        name="get_weather",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
)


def scan(pieces: list[str]) -> tuple[str, list[str]]:
    scanner = ToolCallScanner()
    shown = "".join(scanner.feed(p) for p in pieces) + scanner.finish()
    return shown, scanner.bodies


def test_plain_text_streams_through_unchanged() -> None:
    assert scan(["Hel", "lo <b>", " world"]) == ("Hello <b> world", [])


def test_tagged_call_is_taken_out_of_the_text_even_when_split() -> None:
    shown, bodies = scan(
        ["Let me check. <tool", '_call>\n{"name": "get_weather", ', '"arguments": {}}\n</tool_', "call> done"]
    )
    assert shown == "Let me check.  done"
    assert bodies == ['\n{"name": "get_weather", "arguments": {}}\n']


def test_a_partial_tag_is_held_back_not_shown() -> None:
    scanner = ToolCallScanner()
    assert scanner.feed("Hi <tool_ca") == "Hi "
    assert scanner.feed("t and more") == "<tool_cat and more"


@pytest.mark.parametrize(
    "reply",
    [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '```\n{ "name" : "get_weather", "parameters": {"city": "Paris"}}\n```',
        '  \n{"name": "get_weather"',
    ],
)
def test_every_form_of_call_is_read_as_a_call_of_the_tool(reply: str) -> None:
    assert read_opening(reply, [WEATHER]) == (Opening.CALL, "get_weather")


@pytest.mark.parametrize(
    "reply",
    ["<tool_call>\n{", '{"name": "get_wea', "```js", '```json\n{"na', "<tool_", "   ", '{"name": "hello"'],
)
def test_an_opening_that_could_still_be_a_call_waits_for_more(reply: str) -> None:
    assert read_opening(reply, [WEATHER]) == (Opening.PENDING, None)


@pytest.mark.parametrize(
    "reply",
    [
        "Hello! How can I help?",
        '{"name": "Ada", "age": 36}',  # JSON data, not a call
        '{"city": "Paris"}',
        "```python\nprint('hi')\n```",
        "`x` is a variable",
        "<b>bold</b>",
    ],
)
def test_answers_that_merely_contain_json_or_code_are_text(reply: str) -> None:
    assert read_opening(reply, [WEATHER])[0] is Opening.TEXT


@pytest.mark.parametrize(
    "reply",
    [
        '<tool_call>\n{"name": "hello", "arguments": {}}',
        '{"name": "hello", "arguments": {}}',
        '```json\n{"name": "greet", "parameters": {"to": "you"}}',
        "<tool_call>\nI will check",
    ],
)
def test_a_call_of_a_tool_not_offered_is_recognised_as_invented(reply: str) -> None:
    assert read_opening(reply, [WEATHER])[0] is Opening.INVENTED


def test_an_opening_that_never_decides_becomes_text() -> None:
    assert read_opening("{" + " " * 200, [WEATHER])[0] is Opening.TEXT


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"name": "get_weather", "arguments": {}}', "schema"),
        ('{"name": "get_weather", "arguments": {"city": 5}}', "schema"),
        ('{"name": "get_time", "arguments": {}}', "unknown tool"),
        ('{"name": "get_weather", "arguments": "{\\"city\\": 1}"}', "schema"),
        ('{"arguments": {}}', "name"),
        ("not json", "not JSON"),
    ],
)
def test_invalid_calls_are_refused_with_a_reason(body: str, reason: str) -> None:
    with pytest.raises(InvalidToolCall, match=reason):
        parse_call(body, [WEATHER])


def test_arguments_given_as_a_json_string_are_accepted() -> None:
    assert parse_call('{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}', [WEATHER]).arguments == {
        "city": "Oslo"
    }


def test_arguments_are_generated_under_the_tools_object_schema() -> None:
    assert arguments_schema(WEATHER) == WEATHER.function.parameters
    assert arguments_schema(Tool(function=ToolFunction(name="now", parameters={})))["type"] == "object"
