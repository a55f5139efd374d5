"""The news of requests as the log tells it: one row per request state, one item per token batch.

The console's live feed, the WebSocket's log-served topics and GET /requests all read
requests through these pure functions, so a request looks the same wherever it is shown.
Every item carries the log position it comes from, so a reader that resumes from the last
position it saw gets each item once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from eventstore import RecordedEvent

from .cost import to_usd
from .folding import strategy_key, tenancy_of_event

STATES: Final = {
    "RequestReceived": "received",
    "RequestCompleted": "completed",
    "RequestFailed": "failed",
}
"""The events that change a request's state, and the state each one leaves it in."""
TOKENS: Final = "TokensStreamed"
PROMPT_EXCERPT: Final = 120


def request_id_of(event: RecordedEvent) -> str:
    """The request a request's event belongs to, from its stream `request-<id>`."""
    return event.stream_id.removeprefix("request-")


def request_news(event: RecordedEvent) -> dict[str, Any]:
    """The row of a request as `event` (one of STATES) leaves it."""
    data = event.data
    state = STATES[event.type]
    row: dict[str, Any] = {
        "request_id": request_id_of(event),
        "state": state,
        "position": event.position,
        "at": event.recorded_at,
        "tenancy": tenancy_of_event(event),
    }
    if state == "received":
        row.update(
            endpoint=data.get("endpoint"),
            capability=data.get("capability"),
            strategy=data.get("strategy"),
            model=data.get("model"),
            stream=bool(data.get("stream")),
            prompt=_prompt(data.get("messages")),
            received_at=event.recorded_at,
        )
    elif state == "completed":
        row.update(
            model=data.get("model"),
            strategy=strategy_key(data),
            cost_usd=to_usd(data.get("cost_pico", 0)),
            latency_ms=data.get("latency_ms"),
            prompt_tokens=data.get("prompt_tokens"),
            completion_tokens=data.get("completion_tokens"),
            cached=bool(data.get("cached")),
            fallbacks=data.get("fallbacks", 0),
        )
    else:
        row.update(
            strategy=strategy_key(data),
            kind=data.get("kind"),
            status=data.get("status"),
            message=data.get("message"),
            cost_usd=to_usd(data.get("cost_pico", 0)),
            latency_ms=data.get("latency_ms"),
        )
    return row


def combined(newer: Mapping[str, Any], older: Mapping[str, Any]) -> dict[str, Any]:
    """One request's row from two of its rows: the newer state, with what only the older says
    (such as the prompt and capability of its receipt)."""
    row = dict(older)
    row.update({k: v for k, v in newer.items() if v is not None or k not in row})
    return row


def token_news(event: RecordedEvent) -> dict[str, Any]:
    """A TokensStreamed event as one item: its call, the sequence number of its first token,
    and the tokens with their time (ms since the call started)."""
    data = event.data
    return {
        "request_id": request_id_of(event),
        "call_id": data["call_id"],
        "seq": data["seq"],
        "deltas": [[delta[0], delta[1]] for delta in data["deltas"]],
        "position": event.position,
    }


def _prompt(messages: Any) -> str | None:
    """The last user message's text, cut to an excerpt."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(
                    part.get("text", "") for part in content if isinstance(part, dict)
                )
            if isinstance(content, str):
                return content[:PROMPT_EXCERPT]
    return None
