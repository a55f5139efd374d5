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

from datetime import datetime, timedelta
from typing import Any, Final

from eventstore import RecordedEvent

from .folding import histogram_add, strategy_key, tenancy_of_event

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
        return {"clock": None, "tenancies": {}}

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
        elif minute <= shift(clock, -HOUR_MINUTES):
            # Recorded before the hour the series keep (a clock set back): too old to count.
            return state
        tenancy = state["tenancies"].setdefault(tenancy_of_event(event), _tenancy())
        data = event.data
        if kind in ("RequestCompleted", "RequestFailed"):
            failed = kind == "RequestFailed"
            for row in (
                tenancy["minutes"].setdefault(minute, _request_row()),
                tenancy["five"].setdefault(five_of(minute), _request_row()),
            ):
                _request(row, data, failed)
            strategies = tenancy["strategies"].setdefault(strategy_key(data), {})
            _strategy(strategies.setdefault(minute, _strategy_row()), data, failed)
        else:
            models = tenancy["models"].setdefault(data["model"], {})
            _call(models.setdefault(minute, _call_row()), kind, data)
        return state


def _request(row: State, data: dict[str, Any], failed: bool) -> None:
    row["requests"] += 1
    row["cost_pico"] += data.get("cost_pico", 0)
    if failed:
        row["failed"] += 1
        return
    histogram_add(row["latency_ms"], data.get("latency_ms"))
    row["prompt_tokens"] += data.get("prompt_tokens", 0)
    row["completion_tokens"] += data.get("completion_tokens", 0)


def _strategy(row: State, data: dict[str, Any], failed: bool) -> None:
    row["requests"] += 1
    row["cost_pico"] += data.get("cost_pico", 0)
    if failed:
        row["failed"] += 1
        return
    row["fallbacks"] += data.get("fallbacks", 0)
    row["baseline_pico"] += data.get("baseline_pico", 0)
    histogram_add(row["latency_ms"], data.get("latency_ms"))


def _call(row: State, kind: str, data: dict[str, Any]) -> None:
    if kind == "BudgetSettled":
        # A call broken off after its first tokens is billed all the same (rule "cut").
        row["cost_pico"] += data["actual_pico"]
        row["completion_tokens"] += data.get("completion_tokens", 0)
        return
    row["calls"] += 1
    if kind == "ModelCallFailed":
        row["failed"] += 1
        return
    histogram_add(row["latency_ms"], data.get("latency_ms"))
    histogram_add(row["ttft_ms"], data.get("ttft_ms"))
    if data.get("tokens_per_s"):
        row["tps_total"] += data["tokens_per_s"]
        row["tps_count"] += 1
    row["completion_tokens"] += data.get("completion_tokens", 0)
    row["cost_pico"] += data.get("cost_pico", 0)


def _advance(state: State, minute: str) -> None:
    """Move the clock to `minute` and drop the buckets that fell out of the windows."""
    state["clock"] = minute
    hour_ago = shift(minute, -HOUR_MINUTES)
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
