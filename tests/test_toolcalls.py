"""Reading tool calls out of generated text (engines/llm/toolcalls.py)."""

from __future__ import annotations

import pytest

from aigw.engines.llm.base import Tool, ToolFunction
from aigw.engines.llm.toolcalls import InvalidToolCall, ToolCallScanner, call_grammar_schema, parse_call

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


def test_bare_json_call_is_held_whole_and_read_as_calls() -> None:
    shown, bodies = scan(
        [
            '{"name": "get_weather",',
            ' "arguments": {"city": "Oslo"}}\n{"name": "get_weather", ',
            '"arguments": {"city": "Rome"}}',
        ]
    )
    assert shown == "" and len(bodies) == 2
    assert [parse_call(b, [WEATHER]).arguments["city"] for b in bodies] == ["Oslo", "Rome"]


def test_text_that_only_starts_with_a_brace_stays_text() -> None:
    assert scan(["{not json at all"]) == ("{not json at all", [])
    assert scan(['{"a": 1}']) == ('{"a": 1}', [])  # JSON, but not a call


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


def test_grammar_schema_names_each_tool() -> None:
    other = Tool(function=ToolFunction(name="get_time"))
    schema = call_grammar_schema([WEATHER, other])
    assert [v["properties"]["name"]["const"] for v in schema["oneOf"]] == ["get_weather", "get_time"]
    assert call_grammar_schema([WEATHER])["properties"]["arguments"] == WEATHER.function.parameters
