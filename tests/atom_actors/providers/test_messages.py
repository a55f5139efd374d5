"""Message translation between OpenAI's shape and Anthropic's, both ways."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atom_actors.providers._messages import to_anthropic, to_openai

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


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
        [{"role": "tool", "content": "42", "tool_call_id": "c1"}],
        [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}],
        [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,x"}}]}],
        [{"role": "user", "content": [{"type": "text"}]}],
        [{"role": "user", "content": 42}],
        [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    ],
    ids=["tool", "tool-calls", "audio", "not-base64", "no-text", "number", "system-image"],
)
def test_what_anthropic_cannot_express_is_a_value_error(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError):
        to_anthropic(messages)


@pytest.mark.parametrize(
    ("system", "messages"),
    [
        (None, [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]),
        (None, [{"role": "system", "content": "x"}]),
        ([{"type": "image"}], []),
        (None, [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]),
    ],
    ids=["tool-result", "system-role", "system-image", "file-source"],
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
