"""Token estimates and the money arithmetic of reservations and settlements.

Money is an integer count of pico-dollars (1e-12 USD). A price quoted to six decimals per
million tokens is a whole number of pico-dollars per token, so costs are exact integers and a
budget ledger that adds and subtracts them never drifts. USD floats are for display only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Final

from atom_actors.catalog import ModelSpec

PICO_PER_USD: Final = 10**12
# BPE tokenizers average about four characters of English per token.
CHARS_PER_TOKEN: Final = 4
# OpenAI's accounting for chat messages: each costs a few tokens of role and separators, and
# the reply is primed with three more.
MESSAGE_OVERHEAD_TOKENS: Final = 4
REPLY_PRIMING_TOKENS: Final = 3


def estimate_tokens(text: str) -> int:
    """Tokens in `text` when no tokenizer is at hand: ceil(characters / 4)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_message_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Prompt tokens of chat messages: the estimate of their text plus a fixed overhead each."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS + estimate_tokens(_text_of(message.get("content")))
    return total


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


@functools.lru_cache(maxsize=1024)
def price_pico(usd_per_mtok: float) -> int:
    """Pico-dollars per token: exact to six decimals per million tokens, rounded up beyond."""
    if not math.isfinite(usd_per_mtok) or usd_per_mtok < 0:
        raise ValueError(f"price must be finite and non-negative, got {usd_per_mtok}")
    # repr() is the shortest decimal that reads back as this float: 0.1 is taken as 1/10.
    return int((Decimal(repr(usd_per_mtok)) * 10**6).to_integral_value(ROUND_CEILING))


def cost_pico(spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> int:
    """The exact cost of a call with this usage: what a settlement charges."""
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError("token counts must be non-negative")
    return prompt_tokens * price_pico(spec.input_usd_per_mtok) + completion_tokens * price_pico(
        spec.output_usd_per_mtok
    )


def reservation_pico(spec: ModelSpec, prompt_tokens: int, max_tokens: int) -> int:
    """The most a call can cost: prompt_tokens at the input price, max_tokens at the output."""
    return cost_pico(spec, prompt_tokens, max_tokens)


def to_usd(pico: int) -> float:
    """Pico-dollars as a USD float, for display and JSON."""
    return pico / PICO_PER_USD


def from_usd(amount: float) -> int:
    """A USD limit or headroom in pico-dollars, rounded down so it is never overstated."""
    if not math.isfinite(amount):
        raise ValueError(f"amount must be finite, got {amount}")
    return int((Decimal(repr(amount)) * PICO_PER_USD).to_integral_value(ROUND_FLOOR))


def format_usd(amount: float) -> str:
    """A USD amount as reasons print it: six significant digits, no trailing zeros."""
    return f"{amount:.6g}"
