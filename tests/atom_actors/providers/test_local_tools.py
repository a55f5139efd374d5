"""Tool calling for a local model without the model: the prompt, the grammar, reading calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from atom_actors.providers._base import (
    CallParams,
    Delta,
    Event,
    Finish,
    Tool,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from atom_actors.providers._errors import ProviderError
from atom_actors.providers._local_tools import grammar, offered, plain_messages, read_calls
from atom_actors.providers._prompt import transcript

WEATHER = Tool(
    "weather",
    "The weather in a city now.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
NOW = Tool("now")
AGENT: list[dict[str, Any]] = [
    {"role": "user", "content": "Warm in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "14 C"},
]  # fmt: skip


def test_the_transcript_offers_the_tools_and_tells_the_calls_and_results() -> None:
    text = transcript(plain_messages(AGENT, CallParams(tools=(WEATHER, NOW))))

    system, user, assistant, tool, cue = text.split("\n")[-5:]
    assert system.startswith("- now") and '"type":"object"' in system
    assert user == "User: Warm in Paris?"
    assert assistant == 'Assistant: [{"name":"weather","arguments":{"city":"Paris"}}]'
    assert tool == "Tool: 14 C"
    assert cue == "Assistant:"
    assert text.startswith("System: You can call these tools.")
    assert "- weather: The weather in a city now." in text


@pytest.mark.parametrize(
    ("choice", "names"),
    [
        (None, ["weather", "now"]),
        (ToolChoice("required"), ["weather", "now"]),
        (ToolChoice("function", "now"), ["now"]),
        (ToolChoice("none"), []),
    ],
)
def test_the_tools_offered_follow_tool_choice(choice: ToolChoice | None, names: list[str]) -> None:
    params = CallParams(tools=(WEATHER, NOW), tool_choice=choice)

    assert [tool.name for tool in offered(params)] == names
    assert (grammar(params) is None) == (not names)
    if choice is not None and choice.mode == "none":
        assert plain_messages(AGENT[:1], params) == AGENT[:1]


def test_a_schema_the_grammar_cannot_hold_is_a_bad_request() -> None:
    odd = Tool("odd", None, {"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}})
    with pytest.raises(ProviderError, match="unsupported tool schema"):
        grammar(CallParams(tools=(odd,), tool_choice=ToolChoice("required")))


def _answer(*texts: str, reason: str = "stop") -> Iterator[Event]:
    yield from (Delta(text) for text in texts)
    yield Finish(Usage(10, len(texts)), reason)


def test_an_answer_that_opens_a_call_becomes_its_calls() -> None:
    pieces = ('[{"name": "now", "arguments": {}}, ', '{"name": "weather", "arguments": ',
              '{"city": "Pa\\nris"}}]')  # fmt: skip
    events = list(read_calls(_answer("", *pieces)))

    *calls, finish = events
    assert [(c.index, c.name, c.arguments) for c in calls if isinstance(c, ToolCallDelta)] == [
        (0, "now", "{}"),
        (1, "weather", '{"city":"Pa\\nris"}'),
    ]
    assert len(calls) == 2 and isinstance(finish, Finish)
    assert finish.finish_reason == "tool_calls" and finish.usage == Usage(10, 4)


def test_words_stream_through_and_a_cut_call_stays_text() -> None:
    assert list(read_calls(_answer(" ", "Mild", " today"))) == [
        Delta(" "),
        Delta("Mild"),
        Delta(" today"),
        Finish(Usage(10, 3), "stop"),
    ]
    cut = list(read_calls(_answer('[{"name": ', '"weather"', reason="length")))
    assert cut == [Delta('[{"name": "weather"', tokens=2), Finish(Usage(10, 2), "length")]
