from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atom_actors.catalog import ModelSpec
from atom_actors.cost import (
    PICO_PER_USD,
    cost_pico,
    estimate_message_tokens,
    estimate_tokens,
    format_usd,
    from_usd,
    price_pico,
    reservation_pico,
    to_usd,
)
from tests.atom_actors.conftest import DEFAULT_CATALOG, prices, spec

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
