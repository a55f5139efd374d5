"""Time series of the log: per-minute buckets of requests, calls and strategies, per tenancy.

A pure fold like the other projections (rebuilt from position 0 by `atom replay rebuild`). A
bucket is the minute of the event's `recorded_at` (UTC), so the series say when the log
recorded things and a rebuild gives the same buckets. Each tenancy keeps

- `minutes`: the requests that ended in each of the last 60 minutes (count, failures,
  latency histogram, tokens, cost), and `five` the same in 5-minute buckets over 24 hours;
- `models`: per model and minute, the calls that ended (count, failures, latency and time to
  first token histograms, tokens/s, tokens, cost);
- `strategies`: per strategy and minute, requests, failures, fallbacks, cost and baseline.

What is older than that is dropped as the newest minute moves on (`clock`), so the state
stays the same size however long the log grows. Tenancies are kept apart, so that a tenant's
series are its own traffic; everyone's are the sum of the tenancies' (`atom_actors.views`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from eventstore import RecordedEvent

from .folding import bucket, strategy_key, tenancy_of_event

State = dict[str, Any]

HOUR_MINUTES: Final = 60
"""Minute buckets kept: the last hour."""
DAY_BUCKETS: Final = 288
"""5-minute buckets kept: the last 24 hours."""
STEP_S: Final = {"minutes": 60, "five": 300}

_MINUTE: Final = "%Y-%m-%dT%H:%M"


def minute_of(recorded_at: str) -> str:
    """The minute bucket of a recorded time: `2026-11-01T14:05:59.1Z` -> `2026-11-01T14:05`."""
    return recorded_at[:16]


def five_of(minute: str) -> str:
    """The 5-minute bucket a minute bucket falls in: `...T14:07` -> `...T14:05`."""
    return f"{minute[:15]}{int(minute[15]) // 5 * 5}"


def shift(minute: str, minutes: int) -> str:
    """The minute bucket `minutes` after (or before, when negative) `minute`."""
    return (datetime.strptime(minute, _MINUTE) + timedelta(minutes=minutes)).strftime(_MINUTE)


def _request_row() -> State:
    return {
        "requests": 0,
        "failed": 0,
        "latency_ms": {},
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_pico": 0,
    }


def _call_row() -> State:
    return {
        "calls": 0,
        "failed": 0,
        "latency_ms": {},
        "ttft_ms": {},
        "tps_total": 0.0,
        "tps_count": 0,
        "completion_tokens": 0,
        "cost_pico": 0,
    }


def _strategy_row() -> State:
    return {
        "requests": 0,
        "failed": 0,
        "fallbacks": 0,
        "cost_pico": 0,
        "baseline_pico": 0,
        "latency_ms": {},
    }


def _tenancy() -> State:
    return {"minutes": {}, "five": {}, "models": {}, "strategies": {}}


class Series:
    """Per-minute (and 5-minute) buckets of requests, model calls and strategies, per tenancy."""

    name = "series"
    version = 1
    # The event types the fold reads; the live runner skips the others.
    types = frozenset(
        {"RequestCompleted", "RequestFailed", "ModelCallCompleted", "ModelCallFailed",
         "BudgetSettled"}
    )  # fmt: skip

    def initial(self) -> State:
        # clock: the newest minute seen; kept_from: the oldest minute bucket kept.
        return {"clock": None, "kept_from": None, "tenancies": {}}

    def apply(self, state: State, event: RecordedEvent) -> State:
        kind = event.type
        # Runners that fold every event (replay's) rely on this check, not on `types`.
        if kind not in self.types or (
            kind == "BudgetSettled"
            and (event.data.get("rule") != "cut" or not event.data.get("model"))
        ):
            return state
        minute = minute_of(event.recorded_at)
        clock = state["clock"]
        if clock is None or minute > clock:
            _advance(state, minute)
        elif minute < state["kept_from"]:
            # Recorded before the hour the series keep (a clock set back): too old to count.
            return state
        tenancy = _row(state["tenancies"], tenancy_of_event(event), _tenancy)
        data = event.data
        if kind == "ModelCallCompleted" or kind == "ModelCallFailed" or kind == "BudgetSettled":
            _call(_row(_row(tenancy["models"], data["model"], dict), minute, _call_row), kind, data)
            return state
        failed = kind == "RequestFailed"
        cost = data.get("cost_pico", 0)
        latency = None if failed else _bucket_of(data.get("latency_ms"))
        for row in (
            _row(tenancy["minutes"], minute, _request_row),
            _row(tenancy["five"], five_of(minute), _request_row),
        ):
            row["requests"] += 1
            row["cost_pico"] += cost
            if failed:
                row["failed"] += 1
            else:
                _count(row["latency_ms"], latency)
                row["prompt_tokens"] += data.get("prompt_tokens", 0)
                row["completion_tokens"] += data.get("completion_tokens", 0)
        strategies = _row(tenancy["strategies"], strategy_key(data), dict)
        row = _row(strategies, minute, _strategy_row)
        row["requests"] += 1
        row["cost_pico"] += cost
        if failed:
            row["failed"] += 1
        else:
            row["fallbacks"] += data.get("fallbacks", 0)
            row["baseline_pico"] += data.get("baseline_pico", 0)
            _count(row["latency_ms"], latency)
        return state


def _row(rows: dict[str, Any], key: str, make: Callable[[], State]) -> State:
    """The row under `key`, made when absent (without building one when present)."""
    row: State | None = rows.get(key)
    if row is None:
        row = rows[key] = make()
    return row


def _bucket_of(ms: float | None) -> str | None:
    return None if ms is None else bucket(ms)


def _count(histogram: dict[str, int], key: str | None) -> None:
    if key is not None:
        histogram[key] = histogram.get(key, 0) + 1


def _call(row: State, kind: str, data: dict[str, Any]) -> None:
    if kind == "BudgetSettled":
        # A call broken off after its first tokens is billed all the same (rule "cut").
        row["cost_pico"] += data["actual_pico"]
        row["completion_tokens"] += data.get("completion_tokens") or 0
        return
    row["calls"] += 1
    if kind == "ModelCallFailed":
        row["failed"] += 1
        return
    _count(row["latency_ms"], _bucket_of(data.get("latency_ms")))
    _count(row["ttft_ms"], _bucket_of(data.get("ttft_ms")))
    if data.get("tokens_per_s"):
        row["tps_total"] += data["tokens_per_s"]
        row["tps_count"] += 1
    row["completion_tokens"] += data.get("completion_tokens", 0)
    row["cost_pico"] += data.get("cost_pico", 0)


def _advance(state: State, minute: str) -> None:
    """Move the clock to `minute` and drop the buckets that fell out of the windows."""
    state["clock"] = minute
    hour_ago = shift(minute, -HOUR_MINUTES)
    state["kept_from"] = shift(hour_ago, 1)
    day_ago = five_of(shift(minute, -5 * DAY_BUCKETS))
    for tenancy in state["tenancies"].values():
        _drop_until(tenancy["minutes"], hour_ago)
        _drop_until(tenancy["five"], day_ago)
        for group in ("models", "strategies"):
            rows = tenancy[group]
            for name in list(rows):
                _drop_until(rows[name], hour_ago)
                if not rows[name]:
                    del rows[name]


def _drop_until(buckets: dict[str, Any], last_dropped: str) -> None:
    for key in [k for k in buckets if k <= last_dropped]:
        del buckets[key]
