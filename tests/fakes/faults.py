"""What a fake upstream should do for a model: its reply, its pace, and how it fails."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """A tool call the fake makes when the request offers the tool: its name and arguments."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How a fake answers one model; reply None echoes the prompt."""

    reply: str | None = None
    first_token_delay: float = 0.0
    tokens_per_second: float | None = None
    # Seconds between the last event and the end of the body, as a buffering proxy may take.
    end_delay: float = 0.0
    # Some OpenAI-compatible servers ignore stream_options.include_usage; False imitates them.
    reports_usage: bool = True
    # Prompt tokens served from the provider's prompt cache, reported as each provider does.
    cached_prompt_tokens: int = 0
    # The tools it calls when a request offers them (see text.plan_calls); with tool calls,
    # `reply` (if set) is said before them, as models often do.
    tool_calls: tuple[ScriptedCall, ...] = ()
    # (part of the prompt, reply): the first part the prompt holds chooses the reply, as a judge
    # grades each answer its own way; `reply` answers the rest.
    replies: tuple[tuple[str, str], ...] = ()


class FaultKind(Enum):
    HTTP_ERROR = "http_error"
    HANG = "hang"
    TRUNCATE = "truncate"
    MALFORMED = "malformed"
    RESET = "reset"
    ERROR_EVENT = "error_event"


@dataclass(frozen=True, slots=True)
class Fault:
    """One way to fail: before the response starts (after=None) or after `after` tokens."""

    kind: FaultKind
    after: int | None = None
    status: int = 500
    retry_after: str | None = None

    @classmethod
    def http_error(cls, status: int, *, retry_after: str | None = None) -> Fault:
        """Answer with the provider's error body and this status (and Retry-After header)."""
        return cls(FaultKind.HTTP_ERROR, status=status, retry_after=retry_after)

    @classmethod
    def hang(cls, *, after: int | None = None) -> Fault:
        """Never answer (after=None), or stall for good after some tokens."""
        return cls(FaultKind.HANG, after=after)

    @classmethod
    def truncate(cls, *, after: int = 1) -> Fault:
        """End the response cleanly after some tokens, without the stream's closing events."""
        return cls(FaultKind.TRUNCATE, after=after)

    @classmethod
    def malformed(cls, *, after: int = 1) -> Fault:
        """Send a chunk that is not JSON after some tokens."""
        return cls(FaultKind.MALFORMED, after=after)

    @classmethod
    def reset(cls, *, after: int | None = None) -> Fault:
        """Reset the TCP connection (RST) before any header (after=None) or after some tokens."""
        return cls(FaultKind.RESET, after=after)

    @classmethod
    def error_event(cls, *, after: int = 1, status: int = 529) -> Fault:
        """Report an error inside the stream, as the provider does once headers are sent."""
        return cls(FaultKind.ERROR_EVENT, after=after, status=status)


@dataclass(slots=True)
class ArmedFault:
    """A fault waiting for matching requests: for one model or any, a number of times or always."""

    fault: Fault
    model: str | None
    remaining: int | None

    def claim(self, model: str) -> bool:
        """Take this fault for a request to `model` if it applies, counting it down."""
        if self.model is not None and self.model != model:
            return False
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        return True
