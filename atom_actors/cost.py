"""Token counts and the money arithmetic of reservations and settlements.

Money is an integer count of pico-dollars (1e-12 USD). A price quoted to six decimals per
million tokens is a whole number of pico-dollars per token, so costs are exact integers and a
budget ledger that adds and subtracts them never drifts. USD floats are for display only.

A prompt has two sizes: an estimate (about four characters a token), which routing uses to
judge context windows and speed, and a bound it cannot exceed, which money uses: no token of
a byte-level tokenizer covers less than one byte, so a text's UTF-8 length bounds its tokens.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Final

import orjson

from atom_actors.catalog import ModelSpec

PICO_PER_USD: Final = 10**12
# BPE tokenizers average about four characters of English per token.
CHARS_PER_TOKEN: Final = 4
# OpenAI's accounting for chat messages: each costs a few tokens of role and separators, and
# the reply is primed with three more.
MESSAGE_OVERHEAD_TOKENS: Final = 4
REPLY_PRIMING_TOKENS: Final = 3
# The bound's allowance for what a chat format adds: a role, separators, special tokens such
# as Gemma's <start_of_turn>, each at most this many tokens per message and for the reply.
BOUND_MESSAGE_TOKENS: Final = 8
BOUND_PRIMING_TOKENS: Final = 8
# The most one image can cost, in tokens, by each provider's documentation: OpenAI's high
# detail is 85 + 170 per 512-pixel tile, at most 8 tiles (768 x 2048); Anthropic scales down
# any image over about 1,600 tokens. A model's `max_image_tokens` overrides it (gpt-4o-mini
# counts 2,833 + 5,667 a tile).
IMAGE_TOKENS: Final = {"openai": 1_445, "anthropic": 1_600}
DEFAULT_IMAGE_TOKENS: Final = 1_600
# What offering tools adds to a prompt beyond their definitions: Anthropic documents a tool-use
# system prompt of up to 530 tokens (Claude 3 Opus, tool_choice auto); OpenAI's rendering of
# the definitions adds a namespace header of a few dozen. The bound allows 1,024.
BOUND_TOOL_USE_TOKENS: Final = 1_024


def estimate_tokens(text: str) -> int:
    """Tokens in `text` when no tokenizer is at hand: ceil(characters / 4)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_message_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Prompt tokens of chat messages: the estimate of their text plus a fixed overhead each."""
    return prompt_size(messages).estimate


@dataclass(frozen=True, slots=True)
class PromptSize:
    """A prompt's likely size in tokens, the most it can be (its text alone), and its images."""

    estimate: int
    bound: int
    images: int = 0

    @classmethod
    def of_tokens(cls, tokens: int) -> PromptSize:
        """A prompt whose token count is known (a recorded one, or a size a user states)."""
        return cls(tokens, tokens)


def prompt_size(
    messages: Iterable[Mapping[str, Any]],
    schema: Mapping[str, Any] | None = None,
    tools: Sequence[Mapping[str, Any]] = (),
) -> PromptSize:
    """The sizes of a chat prompt; a response format's schema and the tools offered (their
    definitions, as OpenAI's `tools` items) are part of what is billed."""
    estimate, bound, images = REPLY_PRIMING_TOKENS, BOUND_PRIMING_TOKENS, 0
    for message in messages:
        content = message.get("content")
        text = _text_of(content)
        name = message.get("name")
        named = name if isinstance(name, str) else ""
        # An assistant's tool calls and a tool result's call id are prompt text as well.
        calls = message.get("tool_calls")
        if calls or "tool_call_id" in message:
            text += _tool_text(calls, message.get("tool_call_id"))
        estimate += MESSAGE_OVERHEAD_TOKENS + estimate_tokens(text)
        bound += BOUND_MESSAGE_TOKENS + _utf8_length(text) + _utf8_length(named)
        if isinstance(content, list):
            images += sum(
                1
                for part in content
                if isinstance(part, Mapping) and part.get("type") == "image_url"
            )
    if schema is not None:
        encoded = orjson.dumps(schema)
        estimate += estimate_tokens(encoded.decode())
        bound += len(encoded)
    if tools:
        encoded = orjson.dumps(list(tools))
        estimate += estimate_tokens(encoded.decode())
        bound += len(encoded) + BOUND_TOOL_USE_TOKENS
    return PromptSize(estimate, bound, images)


def _tool_text(calls: object, call_id: object) -> str:
    """The text of a message's tool calls (ids, names, arguments) or of its tool_call_id."""
    texts = [call_id] if isinstance(call_id, str) else []
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            texts.extend(
                value
                for value in (call.get("id"), function.get("name"), function.get("arguments"))
                if isinstance(value, str)
            )
    return "".join(texts)


def _utf8_length(text: str) -> int:
    # ASCII is one byte a character; only other text needs encoding to be measured.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def image_tokens(spec: ModelSpec) -> int:
    """The most one image can cost this model, in prompt tokens."""
    if spec.max_image_tokens is not None:
        return spec.max_image_tokens
    return IMAGE_TOKENS.get(spec.provider, DEFAULT_IMAGE_TOKENS)


def prompt_bound(spec: ModelSpec, size: PromptSize) -> int:
    """The most prompt tokens this model can bill for a prompt of this size."""
    return size.bound + size.images * image_tokens(spec)


def output_bound(spec: ModelSpec, max_tokens: int | None) -> int:
    """The max_tokens ATOM sends upstream: the client's, else the model's max_output_tokens."""
    return spec.max_output_tokens if max_tokens is None else max_tokens


def call_reservation(spec: ModelSpec, size: PromptSize, max_tokens: int | None) -> int:
    """What a call must reserve: the most its prompt and its answer can cost."""
    return cost_pico(spec, prompt_bound(spec, size), output_bound(spec, max_tokens))


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


class SettleRule(enum.StrEnum):
    """Which rule set a call's cost; recorded in its BudgetSettled."""

    USAGE = "usage"
    """The call completed: the usage the provider reported."""
    COUNTED = "counted"
    """The call completed without reported usage: the prompt's bound and the tokens counted."""
    CUT = "cut"
    """Output had begun when the call failed or was cancelled: the prompt's bound and the
    tokens streamed so far, as a provider bills a stream broken off."""
    NOTHING = "none"
    """The call failed before any output (refused, unreachable, an error answered at once)."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a call cost, by which rule, from which token counts."""

    rule: SettleRule
    prompt_tokens: int
    completion_tokens: int
    cost_pico: int


def settle(
    spec: ModelSpec,
    *,
    completed: bool,
    reported: tuple[int, int] | None,
    prompt_tokens_bound: int,
    streamed_tokens: int,
    max_tokens: int,
) -> Settlement:
    """The cost of one call from how it ended; `reported` is the provider's (prompt, completion)."""
    if completed and reported is not None:
        rule, prompt, completion = SettleRule.USAGE, reported[0], reported[1]
    elif streamed_tokens > 0:
        rule = SettleRule.COUNTED if completed else SettleRule.CUT
        prompt, completion = prompt_tokens_bound, min(streamed_tokens, max_tokens)
    elif completed:
        rule, prompt, completion = SettleRule.COUNTED, prompt_tokens_bound, 0
    else:
        rule, prompt, completion = SettleRule.NOTHING, 0, 0
    return Settlement(rule, prompt, completion, cost_pico(spec, prompt, completion))


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
