"""A request's story, read from its stream: one reading for `atom replay trace` and the API.

`build` turns the events of one `request-<id>` stream into a `Trace`: every step with its
offset from the receipt and its amounts in USD, the tokens of each call (with their timing
when asked), the reservations and what became of them. It reads nothing but its arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventstore import LogReader, RecordedEvent

from .answers import AnswerFormat, AnswerKind
from .cost import to_usd
from .events import request_stream


class TraceError(ValueError):
    """The request is not in the log."""


@dataclass(frozen=True, slots=True)
class Tokens:
    """A call's streamed tokens: how many, when the first came and over how long (ms)."""

    count: int
    first_ms: float
    duration_ms: float
    each: tuple[tuple[str, float], ...] | None
    """(text, ms since the call started) of every token, when asked for."""


@dataclass(frozen=True, slots=True)
class Step:
    """One event of the story: its data with amounts in USD, and what it adds to them."""

    position: int
    at: str
    offset_ms: float
    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reservation:
    """A budget reservation and what became of it: settled, unsettled, or unsettled and expired."""

    reservation_id: str
    model: str
    reserved_usd: float
    expires_at: float
    state: str
    actual_usd: float | None


@dataclass(frozen=True, slots=True)
class Trace:
    """One request's story as its stream tells it."""

    request_id: str
    outcome: str
    """completed, failed, or unfinished when neither is on the record."""
    steps: tuple[Step, ...]
    tokens: dict[str, Tokens]
    """By call id."""
    reservations: tuple[Reservation, ...]
    unfinished_calls: tuple[str, ...]


def _in_usd(value: Any) -> Any:
    """The value with every `*_pico` amount, however deep, as a `*_usd` float."""
    if isinstance(value, dict):
        return {
            (k[:-5] + "_usd" if k.endswith("_pico") else k): (
                to_usd(v) if k.endswith("_pico") and isinstance(v, int) else _in_usd(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_in_usd(v) for v in value]
    return value


def _answer_format(received: dict[str, Any]) -> AnswerFormat | None:
    try:
        return AnswerFormat(
            AnswerKind(received.get("answer_format", "text")), received.get("answer_field")
        )
    except ValueError:
        return None


def _with_votes(data: dict[str, Any], fmt: AnswerFormat | None) -> dict[str, Any]:
    """EnsembleCombined's members, each with the answer it voted for as the format reads it."""
    members = [
        {**m, "vote": None if m.get("error") or fmt is None else fmt.extract(m.get("text", ""))}
        for m in data.get("members", [])
    ]
    return {**data, "members": members}


def _tokens(events: Iterable[RecordedEvent], keep_each: bool) -> dict[str, Tokens]:
    deltas: dict[str, list[tuple[int, str, float]]] = {}
    for event in events:
        if event.type == "TokensStreamed":
            seq = event.data["seq"]
            found = deltas.setdefault(event.data["call_id"], [])
            found.extend((seq + i, d[0], d[1]) for i, d in enumerate(event.data["deltas"]))
    summary = {}
    for call_id, found in deltas.items():
        found.sort()
        first, last = found[0][2], found[-1][2]
        each = tuple((text, ms) for _, text, ms in found) if keep_each else None
        summary[call_id] = Tokens(len(found), first, round(last - first, 3), each)
    return summary


def _reservations(events: Iterable[RecordedEvent], now: float) -> tuple[Reservation, ...]:
    reserved: dict[str, dict[str, Any]] = {}
    settled: dict[str, int] = {}
    for event in events:
        if event.type == "BudgetReserved":
            reserved[event.data["reservation_id"]] = event.data
        elif event.type == "BudgetSettled":
            settled[event.data["reservation_id"]] = event.data["actual_pico"]
    result = []
    for rid, data in reserved.items():
        actual = settled.get(rid)
        state = "settled" if actual is not None else "unsettled"
        if actual is None and data["expires_at"] < now:
            state = "expired"
        result.append(
            Reservation(
                rid,
                data["model"],
                to_usd(data["amount_pico"]),
                data["expires_at"],
                state,
                None if actual is None else to_usd(actual),
            )
        )
    return tuple(result)


def build(events: Sequence[RecordedEvent], *, now: float, each_token: bool = False) -> Trace:
    """The trace of one request's stream; `now` (epoch seconds) tells which reservations expired."""
    if not events:
        raise TraceError("no events to trace")
    request_id = events[0].stream_id.removeprefix("request-")
    start = datetime.fromisoformat(events[0].recorded_at)
    fmt: AnswerFormat | None = None
    steps = []
    started: list[str] = []
    ended: set[str] = set()
    outcome = "unfinished"
    for event in events:
        if event.type == "TokensStreamed":
            continue
        data = event.data
        if event.type == "RequestReceived":
            fmt = _answer_format(data)
        elif event.type == "EnsembleCombined":
            data = _with_votes(data, fmt)
        elif event.type == "ModelCallStarted":
            started.append(data["call_id"])
        elif event.type in ("ModelCallCompleted", "ModelCallFailed"):
            ended.add(data["call_id"])
        elif event.type in ("RequestCompleted", "RequestFailed"):
            outcome = "completed" if event.type == "RequestCompleted" else "failed"
        offset = (datetime.fromisoformat(event.recorded_at) - start).total_seconds() * 1000
        steps.append(
            Step(event.position, event.recorded_at, round(offset, 3), event.type, _in_usd(data))
        )
    return Trace(
        request_id,
        outcome,
        tuple(steps),
        _tokens(events, each_token),
        _reservations(events, now),
        tuple(call for call in started if call not in ended),
    )


def load(reader: LogReader, request_id: str, *, now: float, each_token: bool = False) -> Trace:
    """The trace of `request_id`; TraceError when the log holds no such request."""
    events = reader.read_stream(request_stream(request_id))
    if not events:
        raise TraceError(f"no request {request_id!r} in {reader.location}")
    return build(events, now=now, each_token=each_token)
