"""Deterministic replies, tokens, log-probabilities and usage for the fake upstreams."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

_TOKEN = re.compile(r"\s*\S+|\s+")
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


@dataclass(frozen=True, slots=True)
class Completion:
    """The tokens a fake sends for one call and why it stopped."""

    tokens: tuple[str, ...]
    ending: Ending
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.tokens)


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
