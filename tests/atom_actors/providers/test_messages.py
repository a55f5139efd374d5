"""Message translation between OpenAI's shape and Anthropic's, both ways."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atom_actors.providers._base import Tool, ToolChoice
from atom_actors.providers._messages import (
    to_anthropic,
    to_openai,
    tool_choice_to_anthropic,
    tool_choice_to_openai,
    tools_to_anthropic,
    tools_to_openai,
)

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _result(call_id: str, content: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content}


# One turn of an agent: a question, two calls in parallel, their results, the answer.
AGENT_OPENAI: list[dict[str, Any]] = [
    {"role": "system", "content": "You check the weather."},
    {"role": "user", "content": "Paris or Rome: which is warmer?"},
    {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            _call("toolu_1", "weather", '{"city":"Paris"}'),
            _call("toolu_2", "weather", '{"city":"Rome"}'),
        ],
    },
    {"role": "tool", "tool_call_id": "toolu_1", "content": "14 C"},
    {"role": "tool", "tool_call_id": "toolu_2", "content": "19 C"},
    {"role": "assistant", "content": "Rome, by five degrees."},
]
AGENT_ANTHROPIC: list[dict[str, Any]] = [
    {"role": "user", "content": "Paris or Rome: which is warmer?"},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
        ],
    },
    {"role": "user", "content": [_result("toolu_1", "14 C"), _result("toolu_2", "19 C")]},
    {"role": "assistant", "content": "Rome, by five degrees."},
]


def test_tool_calls_and_results_translate_both_ways() -> None:
    assert to_anthropic(AGENT_OPENAI) == ("You check the weather.", AGENT_ANTHROPIC)
    assert to_openai("You check the weather.", AGENT_ANTHROPIC) == AGENT_OPENAI


def test_a_tool_result_and_the_users_next_words_share_a_turn_results_first() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "tool_calls": [_call("c1", "now", "{}")]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "noon"}]},
        {"role": "user", "content": "Thanks; and tomorrow?"},
    ]

    _, turns = to_anthropic(messages)

    assert turns == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "now",
                                           "input": {}}]},
        {"role": "user", "content": [_result("c1", [{"type": "text", "text": "noon"}]),
                                     {"type": "text", "text": "Thanks; and tomorrow?"}]},
    ]  # fmt: skip
    assert to_openai(None, turns)[1:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "noon"},
        {"role": "user", "content": [{"type": "text", "text": "Thanks; and tomorrow?"}]},
    ]


def test_an_error_result_says_so_in_the_tool_message() -> None:
    turn = {"role": "user", "content": [{**_result("c1", "no such city"), "is_error": True}]}

    assert to_openai(None, [turn]) == [
        {"role": "tool", "tool_call_id": "c1", "content": "Error: no such city"}
    ]


WEATHER = Tool(
    "weather",
    "The weather in a city now.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def test_tools_become_input_schemas_and_back() -> None:
    translated = tools_to_anthropic([WEATHER, Tool("now")])

    assert translated == [
        {"name": "weather", "description": WEATHER.description, "input_schema": WEATHER.parameters},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert tools_to_openai(translated)[0] == WEATHER
    with pytest.raises(ValueError, match="only client tools"):
        tools_to_openai([{"type": "web_search_20250305", "name": "web_search"}])


@pytest.mark.parametrize(
    ("choice", "parallel", "anthropic"),
    [
        (None, None, None),
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("none"), None, {"type": "none"}),
        (ToolChoice("function", "weather"), None, {"type": "tool", "name": "weather"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice_translates_both_ways(
    choice: ToolChoice | None, parallel: bool | None, anthropic: dict[str, Any] | None
) -> None:
    assert tool_choice_to_anthropic(choice, parallel) == anthropic
    if anthropic is not None:
        assert tool_choice_to_openai(anthropic) == (choice or ToolChoice("auto"), parallel)


def test_system_messages_become_the_system_field() -> None:
    system, turns = to_anthropic(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )

    assert system == "Be brief."
    assert turns == [{"role": "user", "content": "Hi"}]


def test_several_system_messages_become_text_blocks_in_order() -> None:
    system, _ = to_anthropic(
        [
            {"role": "system", "content": "One."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
        ]
    )

    assert system == [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]


def test_consecutive_same_role_messages_merge_into_one_turn() -> None:
    _, turns = to_anthropic(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "system", "content": "hoisted"},
            {"role": "assistant", "content": "d"},
        ]
    )

    assert turns == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
        },
    ]


def test_images_translate_both_ways() -> None:
    openai_parts = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    anthropic_blocks = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]

    assert to_anthropic([{"role": "user", "content": openai_parts}]) == (
        None,
        [{"role": "user", "content": anthropic_blocks}],
    )
    assert to_openai(None, [{"role": "user", "content": anthropic_blocks}]) == [
        {"role": "user", "content": openai_parts}
    ]


def test_image_detail_has_no_counterpart_and_is_dropped() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}}

    _, turns = to_anthropic([{"role": "user", "content": [part]}])

    assert turns[0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
    ]


def test_system_blocks_become_one_system_message_each() -> None:
    system = [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]

    assert to_openai(system, [{"role": "user", "content": "Hi"}]) == [
        {"role": "system", "content": "One."},
        {"role": "system", "content": "Two."},
        {"role": "user", "content": "Hi"},
    ]


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "tool", "content": "42"}],
        [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}],
        [{"role": "assistant", "content": None, "tool_calls": [_call("c1", "f", "[1, 2]")]}],
        [{"role": "assistant", "content": None, "tool_calls": [_call("c1", "f", "{not json")]}],
        [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,x"}}]}],
        [{"role": "user", "content": [{"type": "text"}]}],
        [{"role": "user", "content": 42}],
        [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    ],
    ids=[
        "tool-without-id",
        "tool-calls",
        "arguments-not-an-object",
        "arguments-not-json",
        "audio",
        "not-base64",
        "no-text",
        "number",
        "system-image",
    ],
)
def test_what_anthropic_cannot_express_is_a_value_error(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError):
        to_anthropic(messages)


@pytest.mark.parametrize(
    ("system", "messages"),
    [
        (None, [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]),
        (None, [{"role": "user", "content": [_result("t", [{"type": "image"}])]}]),
        (None, [{"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"}]}]),
        (
            None,
            [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/a"}},
                        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                    ],
                }
            ],
        ),
        (None, [{"role": "system", "content": "x"}]),
        ([{"type": "image"}], []),
        (None, [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]),
    ],
    ids=[
        "tool-result-without-id",
        "tool-result-image",
        "thinking",
        "image-beside-a-tool-call",
        "system-role",
        "system-image",
        "file-source",
    ],
)
def test_what_openai_messages_cannot_express_is_a_value_error(
    system: Any, messages: list[dict[str, Any]]
) -> None:
    with pytest.raises(ValueError):
        to_openai(system, messages)


_ROLES = ("user", "assistant")
_text = st.text(max_size=20)
_media_type = st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"])
_base64 = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_url = st.builds("https://example.com/{}.png".format, st.integers(0, 999))

_openai_part = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, _text),
    st.builds(
        lambda m, d: {"type": "image_url", "image_url": {"url": f"data:{m};base64,{d}"}},
        _media_type,
        _base64,
    ),
    st.builds(lambda u: {"type": "image_url", "image_url": {"url": u}}, _url),
)
_anthropic_block = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, _text),
    st.builds(
        lambda m, d: {
            "type": "image",
            "source": {"type": "base64", "media_type": m, "data": d},
        },
        _media_type,
        _base64,
    ),
    st.builds(lambda u: {"type": "image", "source": {"type": "url", "url": u}}, _url),
)


def _alternating(content: st.SearchStrategy[Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Turns that alternate user/assistant from either role: what needs no merging."""
    return st.builds(
        lambda first, contents: [
            {"role": _ROLES[(first + i) % 2], "content": c} for i, c in enumerate(contents)
        ],
        st.integers(0, 1),
        st.lists(content, max_size=6),
    )


_openai_messages = st.builds(
    lambda system, turns: [{"role": "system", "content": s} for s in system] + turns,
    st.lists(_text, max_size=3),
    _alternating(st.one_of(_text, st.lists(_openai_part, min_size=1, max_size=4))),
)

_anthropic_system = st.one_of(
    st.none(),
    _text,
    st.lists(st.builds(lambda t: {"type": "text", "text": t}, _text), min_size=2, max_size=3),
)
_anthropic_turns = _alternating(
    st.one_of(_text, st.lists(_anthropic_block, min_size=1, max_size=4))
)


@given(_openai_messages)
def test_openai_to_anthropic_and_back_is_identity(messages: list[dict[str, Any]]) -> None:
    assert to_openai(*to_anthropic(messages)) == messages


@given(_anthropic_system, _anthropic_turns)
def test_anthropic_to_openai_and_back_is_identity(system: Any, turns: list[dict[str, Any]]) -> None:
    assert to_anthropic(to_openai(system, turns)) == (system, turns)


@given(st.lists(st.tuples(st.sampled_from(_ROLES), _text), max_size=8))
def test_merged_turns_alternate_and_keep_every_text_in_order(
    pairs: list[tuple[str, str]],
) -> None:
    _, turns = to_anthropic([{"role": role, "content": text} for role, text in pairs])

    roles = [turn["role"] for turn in turns]
    assert all(a != b for a, b in itertools.pairwise(roles))
    texts = [
        text
        for turn in turns
        for text in (
            [turn["content"]]
            if isinstance(turn["content"], str)
            else [block["text"] for block in turn["content"]]
        )
    ]
    assert texts == [text for _, text in pairs]
