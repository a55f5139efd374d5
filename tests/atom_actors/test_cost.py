from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atom_actors.catalog import ModelSpec
from atom_actors.cost import (
    BOUND_MESSAGE_TOKENS,
    BOUND_PRIMING_TOKENS,
    BOUND_TOOL_USE_TOKENS,
    PICO_PER_USD,
    SettleRule,
    call_reservation,
    cost_pico,
    estimate_message_tokens,
    estimate_tokens,
    format_usd,
    from_usd,
    output_bound,
    price_pico,
    prompt_bound,
    prompt_size,
    reservation_pico,
    settle,
    to_usd,
)
from tests.atom_actors.conftest import DEFAULT_CATALOG, prices, spec
from tests.fakes.text import count_prompt_tokens

tokens = st.integers(0, 1_000_000)


@given(st.text(max_size=400))
def test_a_token_is_about_four_characters(text: str) -> None:
    estimate = estimate_tokens(text)
    assert 4 * estimate >= len(text) > 4 * (estimate - 1)


def test_message_tokens_count_text_parts_and_an_overhead_per_message() -> None:
    plain = [{"role": "user", "content": "What is two plus two?"}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is two plus two?"}]}]
    assert estimate_message_tokens(plain) == estimate_message_tokens(parts)
    assert estimate_message_tokens(plain) > estimate_tokens("What is two plus two?")
    two = [*plain, {"role": "assistant", "content": ""}]
    assert estimate_message_tokens(two) > estimate_message_tokens(plain)


def test_prices_quoted_in_decimals_are_taken_exactly() -> None:
    assert price_pico(0.1) * 10 == price_pico(1.0)
    assert price_pico(0.25) * 4 == price_pico(1.0)
    assert price_pico(1.0) * 10**6 == PICO_PER_USD


def test_a_price_finer_than_a_pico_dollar_per_token_rounds_up() -> None:
    assert price_pico(1e-7) == 1
    assert price_pico(0.0) == 0


@pytest.mark.parametrize("bad", [-0.01, math.nan, math.inf])
def test_prices_must_be_finite_and_non_negative(bad: float) -> None:
    with pytest.raises(ValueError):
        price_pico(bad)


@pytest.mark.parametrize("model", DEFAULT_CATALOG, ids=lambda m: m.name)
def test_costs_agree_with_the_catalog_list_price(model: ModelSpec) -> None:
    assert math.isclose(to_usd(cost_pico(model, 1234, 567)), model.cost_usd(1234, 567))


@settings(max_examples=200)
@given(prices, prices, tokens, tokens, st.data())
def test_a_reservation_covers_any_usage_within_max_tokens(
    input_usd: float, output_usd: float, prompt: int, max_tokens: int, data: st.DataObject
) -> None:
    model = spec("m", input_usd, output_usd)
    completion = data.draw(st.integers(0, max_tokens))
    reserved = reservation_pico(model, prompt, max_tokens)
    actual = cost_pico(model, prompt, completion)
    assert reserved >= actual
    assert to_usd(reserved) >= to_usd(actual)


@given(prices, prices, tokens, tokens, tokens, tokens)
def test_costs_add_up_exactly(
    input_usd: float, output_usd: float, p1: int, c1: int, p2: int, c2: int
) -> None:
    model = spec("m", input_usd, output_usd)
    assert cost_pico(model, p1 + p2, c1 + c2) == cost_pico(model, p1, c1) + cost_pico(model, p2, c2)


def test_negative_usage_is_refused() -> None:
    with pytest.raises(ValueError):
        cost_pico(DEFAULT_CATALOG[0], -1, 0)


@given(st.floats(0, 1e6, allow_nan=False))
def test_a_usd_amount_is_never_overstated_in_pico_dollars(amount: float) -> None:
    assert to_usd(from_usd(amount)) <= amount


@given(st.integers(0, 10**15))
def test_pico_dollars_survive_a_round_trip_through_usd(pico: int) -> None:
    assert from_usd(to_usd(pico)) == pico


def test_usd_amounts_print_without_trailing_zeros() -> None:
    assert format_usd(0.12) == "0.12"
    assert format_usd(to_usd(from_usd(0.05))) == "0.05"


# A prompt's bound, and what a call reserves and settles.

texts = st.text(st.characters(codec="utf-8"), max_size=300)
message_lists = st.lists(
    st.builds(
        lambda role, text, as_parts: {
            "role": role,
            "content": [{"type": "text", "text": text}] if as_parts else text,
        },
        st.sampled_from(["system", "user", "assistant"]),
        texts,
        st.booleans(),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200)
@given(message_lists)
def test_a_prompts_bound_covers_any_byte_level_tokenizer(messages: list[dict[str, Any]]) -> None:
    size = prompt_size(messages)
    texts_ = [_text(m) for m in messages]
    utf8 = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts_)
    # No token of a byte-level tokenizer covers less than a byte; chat formats add at most
    # BOUND_MESSAGE_TOKENS a message and BOUND_PRIMING_TOKENS for the reply.
    assert size.bound == utf8 + BOUND_MESSAGE_TOKENS * len(messages) + BOUND_PRIMING_TOKENS
    # The fake upstreams' word tokenizer, with its overheads, counts no more.
    assert size.bound >= count_prompt_tokens(texts_, len(messages), 0)
    assert size.bound >= size.estimate


def _text(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


def test_a_response_formats_schema_is_part_of_the_prompt() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    plain = prompt_size([{"role": "user", "content": "Hi"}])
    shaped = prompt_size([{"role": "user", "content": "Hi"}], schema)
    assert shaped.bound - plain.bound == len(orjson.dumps(schema))


def test_tool_definitions_calls_and_results_are_part_of_the_prompt() -> None:
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ask = [{"role": "user", "content": "Hi"}]
    turn: list[dict[str, Any]] = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "14 C"},
    ]  # fmt: skip
    plain, offered = prompt_size(ask), prompt_size(ask, tools=[tool])
    assert offered.bound - plain.bound == len(orjson.dumps([tool])) + BOUND_TOOL_USE_TOKENS
    assert offered.estimate > plain.estimate
    # The call's id, name and arguments, and the result's call id, are text like any other.
    texts = ["c1", "weather", '{"city":"Paris"}', "c1", "14 C"]
    extra = sum(len(t) for t in texts) + 2 * BOUND_MESSAGE_TOKENS
    assert prompt_size(turn).bound - plain.bound == extra


@pytest.mark.parametrize(("provider", "per_image"), [("openai", 1_445), ("anthropic", 1_600)])
def test_each_image_is_reserved_at_the_providers_documented_maximum(
    provider: str, per_image: int
) -> None:
    picture = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 4000}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What?"}, picture, picture]}]
    size = prompt_size(messages)
    # The image's data is not text: it costs its tokens, not its bytes.
    assert (size.images, size.bound) == (2, 5 + BOUND_MESSAGE_TOKENS + BOUND_PRIMING_TOKENS)
    model = spec("m", 1.0, 1.0, provider=provider)
    assert prompt_bound(model, size) == size.bound + 2 * per_image
    assert prompt_bound(replace(model, max_image_tokens=48_169), size) == size.bound + 2 * 48_169


def test_without_max_tokens_a_call_is_bounded_by_the_models_max_output_tokens() -> None:
    model = replace(spec("m", 1.0, 2.0), max_output_tokens=300)
    size = prompt_size([{"role": "user", "content": "Hi"}])
    assert output_bound(model, None) == 300 and output_bound(model, 7) == 7
    assert call_reservation(model, size, None) == reservation_pico(model, size.bound, 300)


@settings(max_examples=300)
@given(
    prices,
    prices,
    st.integers(0, 5_000),
    st.integers(1, 5_000),
    st.booleans(),
    st.none() | st.tuples(st.integers(0, 5_000), st.integers(0, 5_000)),
    st.integers(0, 10_000),
)
def test_a_settlement_never_exceeds_its_reservation_unless_the_provider_says_so(
    input_usd: float,
    output_usd: float,
    bound: int,
    max_tokens: int,
    completed: bool,
    reported: tuple[int, int] | None,
    streamed: int,
) -> None:
    model = spec("m", input_usd, output_usd)
    cost = settle(
        model,
        completed=completed,
        reported=reported,
        prompt_tokens_bound=bound,
        streamed_tokens=streamed,
        max_tokens=max_tokens,
    )
    assert cost.cost_pico == cost_pico(model, cost.prompt_tokens, cost.completion_tokens)
    if completed and reported is not None:
        assert cost.rule is SettleRule.USAGE
        assert (cost.prompt_tokens, cost.completion_tokens) == reported
        return
    assert cost.cost_pico <= reservation_pico(model, bound, max_tokens)
    if streamed == 0 and not completed:
        assert (cost.rule, cost.cost_pico) == (SettleRule.NOTHING, 0)
    else:
        assert cost.rule is (SettleRule.COUNTED if completed else SettleRule.CUT)
        assert (cost.prompt_tokens, cost.completion_tokens) == (bound, min(streamed, max_tokens))
