"""Deterministic replies, tokens, log-probabilities and usage for the fake upstreams."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

import orjson

from tests.fakes.faults import ScriptedCall

_TOKEN = re.compile(r"\s*\S+|\s+")
# JSON arguments stream in pieces like a tokenizer's: words, and runs of punctuation.
_JSON_PIECE = re.compile(r"\w+|[^\w]+")
# What a real tokenizer charges per message for the role and separators, and per image.
MESSAGE_OVERHEAD = 3
IMAGE_TOKENS = 85


def tokenize(text: str) -> list[str]:
    """Split text into word-like tokens (leading whitespace attached) that join back to it."""
    return _TOKEN.findall(text)


def logprob(token: str) -> float:
    """The fake's log-probability of a token: deterministic, in [-0.7, -0.01]."""
    return -round(0.01 + (sum(map(ord, token)) % 70) / 100, 2)


def echo_reply(prompt: str) -> str:
    """The default reply: the last user text, echoed, so each prompt has its own answer."""
    return f"You said: {prompt}" if prompt else "Hello from the fake."


def count_prompt_tokens(texts: Iterable[str], messages: int, images: int) -> int:
    """A plausible prompt token count: text tokens plus per-message and per-image overheads."""
    return (
        sum(len(tokenize(t)) for t in texts) + MESSAGE_OVERHEAD * messages + IMAGE_TOKENS * images
    )


class Ending(Enum):
    """Why a reply ended, before each wire format names it in its own vocabulary."""

    END = "end"
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    TOOL_CALLS = "tool_calls"


@dataclass(frozen=True, slots=True)
class ToolOffer:
    """The tools a request offers (their names) and how it lets the model use them."""

    names: tuple[str, ...]
    choice: str = "auto"  # "auto" | "none" | "required" | "function"
    forced: str | None = None
    parallel: bool = True


@dataclass(frozen=True, slots=True)
class MadeCall:
    """A tool call in a fake's answer: its arguments as JSON and the pieces they stream in."""

    id: str
    name: str
    arguments: str

    @property
    def pieces(self) -> tuple[str, ...]:
        return tuple(_JSON_PIECE.findall(self.arguments))


@dataclass(frozen=True, slots=True)
class Completion:
    """The tokens a fake sends for one call and why it stopped; and the tools it calls."""

    tokens: tuple[str, ...]
    ending: Ending
    stop_sequence: str | None = None
    calls: tuple[MadeCall, ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def output_tokens(self) -> int:
        """Text tokens, and for each call its name and its arguments' pieces."""
        return len(self.tokens) + sum(1 + len(call.pieces) for call in self.calls)


def plan_calls(
    offer: ToolOffer | None, after_result: bool, scripted: Sequence[ScriptedCall]
) -> tuple[ScriptedCall, ...]:
    """The calls a model makes: its scripted ones that the request offers, a forced one (with
    no arguments unless scripted), the first offered tool when one is required; none with
    tool_choice none, or with auto right after a tool's result (it answers it instead)."""
    if offer is None or offer.choice == "none" or (offer.choice == "auto" and after_result):
        return ()
    chosen = [call for call in scripted if call.name in offer.names]
    if offer.forced is not None:
        chosen = [call for call in chosen if call.name == offer.forced] or [
            ScriptedCall(offer.forced)
        ]
    elif not chosen and offer.choice == "required":
        chosen = [ScriptedCall(offer.names[0])]
    return tuple(chosen if offer.parallel else chosen[:1])


def make_calls(calls: Sequence[ScriptedCall], ids: Iterator[str]) -> tuple[MadeCall, ...]:
    return tuple(
        MadeCall(next(ids), call.name, orjson.dumps(dict(call.arguments)).decode())
        for call in calls
    )


def complete(reply: str, max_tokens: int | None, stop: Sequence[str]) -> Completion:
    """Cut a reply at the first stop sequence, then at max_tokens, as a real model would."""
    cut, matched = len(reply), None
    for sequence in stop:
        at = reply.find(sequence)
        if 0 <= at < cut:
            cut, matched = at, sequence
    tokens = tuple(tokenize(reply[:cut]))
    if max_tokens is not None and len(tokens) > max_tokens:
        return Completion(tokens[:max_tokens], Ending.MAX_TOKENS)
    if matched is not None:
        return Completion(tokens, Ending.STOP_SEQUENCE, matched)
    return Completion(tokens, Ending.END)
