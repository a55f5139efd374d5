"""The projections every number ATOM shows is read from: pure folds over the log.

Each is an eventstore Projection (`initial()`, `apply(state, event) -> state`) over JSON
state, so it can be stored with its checkpoint, rebuilt from position 0 and compared.
Latencies are kept as log-scale histograms (`folding`), so percentiles need no raw samples
and a fold stays small however long the log grows; `series` keeps the same figures per minute.

What belongs to a tenancy (its calls, spend, requests and failures) is also kept per tenancy,
read from the `tenancy` its events carry in their metadata, so that a tenant's reads show its
own traffic and nobody else's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from eventstore import RecordedEvent

from .folding import histogram_add, percentile, strategy_key, tenancy_of_event
from .series import Series

__all__ = [
    "Budgets",
    "Cache",
    "Failures",
    "Orchestration",
    "Performance",
    "ScoredCalls",
    "Series",
    "all_projections",
    "current_period",
    "no_spend",
    "percentile",
    "period_keys",
    "tenancy_of_event",
]

State = dict[str, Any]

CACHE_ENTRIES = 10_000
"""The cache projection keeps the newest answers up to this many."""


def no_spend() -> State:
    """A model's calls, errors, tokens and cost before its first call."""
    return {
        "calls": 0,
        "completed": 0,
        "failed": 0,
        "errors": {},
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_pico": 0,
    }


def _spend_row(state: State, tenancy: str, name: str) -> State:
    """A tenancy's calls, errors, tokens and cost at one model."""
    rows: State = state["tenancies"].setdefault(tenancy, {})
    row: State | None = rows.get(name)
    if row is None:
        row = rows[name] = no_spend()
    return row


def _model(state: State, name: str) -> State:
    row: State | None = state["models"].get(name)
    if row is None:
        row = state["models"][name] = {
            "calls": 0,
            "completed": 0,
            "failed": 0,
            "errors": {},
            "latency_ms": {},
            "ttft_ms": {},
            "tps_total": 0.0,
            "tps_count": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_pico": 0,
            "quality": {},
            "health": "closed",
        }
    return row


class Performance:
    """Per model: calls, errors by kind, latency, time to first token, speed, tokens, cost,
    quality by capability (from ScoreRecorded) and circuit health; per tenancy and model, the
    calls, errors, tokens and cost.

    A model's cost is that of its completed calls and of its calls broken off after their
    first tokens (a BudgetSettled by the rule "cut"), which a provider bills all the same.
    A feedback score that replaces a key's earlier one takes its place in the quality.
    """

    name = "performance"
    version = 2
    # The event types the fold reads; the live runner skips the others.
    types = frozenset(
        {"ModelCallStarted", "ModelCallCompleted", "ModelCallFailed", "BudgetSettled",
         "ScoreRecorded", "ModelHealthChanged"}
    )  # fmt: skip

    def initial(self) -> State:
        return {"models": {}, "tenancies": {}}

    def apply(self, state: State, event: RecordedEvent) -> State:
        kind, data = event.type, event.data
        if kind == "ModelCallStarted":
            _model(state, data["model"])["calls"] += 1
            _spend_row(state, tenancy_of_event(event), data["model"])["calls"] += 1
        elif kind == "ModelCallCompleted":
            row = _model(state, data["model"])
            row["completed"] += 1
            histogram_add(row["latency_ms"], data["latency_ms"])
            histogram_add(row["ttft_ms"], data["ttft_ms"])
            if data["tokens_per_s"]:
                row["tps_total"] += data["tokens_per_s"]
                row["tps_count"] += 1
            spend = _spend_row(state, tenancy_of_event(event), data["model"])
            spend["completed"] += 1
            for target in (row, spend):
                _spend(target, data["prompt_tokens"], data["completion_tokens"], data["cost_pico"])
        elif kind == "BudgetSettled" and data.get("rule") == "cut" and data.get("model"):
            prompt, completion = data["prompt_tokens"], data["completion_tokens"]
            for target in (
                _model(state, data["model"]),
                _spend_row(state, tenancy_of_event(event), data["model"]),
            ):
                _spend(target, prompt, completion, data["actual_pico"])
        elif kind == "ModelCallFailed":
            for target in (
                _model(state, data["model"]),
                _spend_row(state, tenancy_of_event(event), data["model"]),
            ):
                target["failed"] += 1
                target["errors"][data["kind"]] = target["errors"].get(data["kind"], 0) + 1
        elif kind == "ScoreRecorded" and data.get("model"):
            quality = _model(state, data["model"])["quality"]
            replaces = data.get("replaces")
            for capability in {data.get("capability") or "text_generation", "*"}:
                total, count = quality.get(capability, (0.0, 0))
                if replaces is None:
                    quality[capability] = [total + data["score"], count + 1]
                else:
                    quality[capability] = [total + data["score"] - replaces, count]
        elif kind == "ModelHealthChanged":
            _model(state, data["model"])["health"] = data["current"]
        return state


def _spend(row: State, prompt_tokens: int, completion_tokens: int, cost_pico: int) -> None:
    row["prompt_tokens"] += prompt_tokens
    row["completion_tokens"] += completion_tokens
    row["cost_pico"] += cost_pico


class Orchestration:
    """Per strategy and ensemble method: requests, fallbacks, a cascade's escalations, agreement,
    cost, latency, and the savings against always using the dearest eligible model (a cascade:
    its ladder's strongest); the same per tenancy."""

    name = "orchestration"
    version = 3
    # The event types the fold reads; the live runner skips the others.
    types = frozenset({"RequestCompleted", "RequestFailed"})

    def initial(self) -> State:
        return {**_outcomes(), "tenancies": {}}

    def apply(self, state: State, event: RecordedEvent) -> State:
        if event.type not in ("RequestCompleted", "RequestFailed"):
            return state
        tenancy = state["tenancies"].setdefault(tenancy_of_event(event), _outcomes())
        for target in (state, tenancy):
            _outcome(target, event.type, event.data)
        return state


def _outcomes() -> State:
    return {"strategies": {}, "requests": {"completed": 0, "failed": 0, "cached": 0}}


def _outcome(state: State, kind: str, data: Mapping[str, Any]) -> None:
    row = state["strategies"].setdefault(
        strategy_key(data),
        {
            "requests": 0,
            "failed": 0,
            "fallbacks": 0,
            "escalations": 0,
            "agreement_total": 0.0,
            "agreement_count": 0,
            "cost_pico": 0,
            "baseline_pico": 0,
            "latency_ms": {},
        },
    )
    row["requests"] += 1
    # A failed request may have cost money all the same (a stream broken off is billed).
    row["cost_pico"] += data.get("cost_pico", 0)
    if kind == "RequestFailed":
        row["failed"] += 1
        state["requests"]["failed"] += 1
        return
    state["requests"]["completed"] += 1
    state["requests"]["cached"] += bool(data.get("cached"))
    row["fallbacks"] += data.get("fallbacks", 0)
    row["escalations"] += data.get("escalations", 0)
    if data.get("agreement") is not None:
        row["agreement_total"] += data["agreement"]
        row["agreement_count"] += 1
    row["baseline_pico"] += data.get("baseline_pico", 0)
    histogram_add(row["latency_ms"], data["latency_ms"])


def period_keys(recorded_at: str) -> list[str]:
    """The budget periods an amount recorded at this time counts in."""
    return ["total", f"day:{recorded_at[:10]}", f"month:{recorded_at[:7]}"]


def current_period(period: str, now: datetime) -> str:
    """The key of the period a limit applies to, at `now` (UTC)."""
    if period == "day":
        return f"day:{now:%Y-%m-%d}"
    if period == "month":
        return f"month:{now:%Y-%m}"
    return "total"


class Budgets:
    """Limits per scope, money settled per scope and period, reservations not yet settled."""

    name = "budgets"
    version = 1
    # The event types the fold reads; the live runner skips the others.
    types = frozenset({"BudgetSet", "BudgetCleared", "BudgetReserved", "BudgetSettled"})

    def initial(self) -> State:
        return {"limits": {}, "spent": {}, "reserved": {}}

    def apply(self, state: State, event: RecordedEvent) -> State:
        kind, data = event.type, event.data
        if kind == "BudgetSet":
            state["limits"][data["scope"]] = [data["limit_pico"], data["period"]]
        elif kind == "BudgetCleared":
            state["limits"].pop(data["scope"], None)
        elif kind == "BudgetReserved":
            state["reserved"][data["reservation_id"]] = [
                data["scopes"],
                data["amount_pico"],
                data["expires_at"],
            ]
        elif kind == "BudgetSettled":
            state["reserved"].pop(data["reservation_id"], None)
            for scope in data["scopes"]:
                spent = state["spent"].setdefault(scope, {})
                for key in period_keys(event.recorded_at):
                    spent[key] = spent.get(key, 0) + data["actual_pico"]
        return state


class Cache:
    """Answers of deterministic requests by cache key (tenant-scoped), newest kept."""

    name = "cache"
    version = 2
    # The event types the fold reads; the live runner skips the others.
    types = frozenset({"RequestCompleted"})

    def initial(self) -> State:
        return {"entries": {}}

    def apply(self, state: State, event: RecordedEvent) -> State:
        if event.type != "RequestCompleted" or event.data.get("cached"):
            return state
        data = event.data
        key = data.get("cache_key")
        if not key:
            return state
        entries = state["entries"]
        entries.pop(key, None)
        entries[key] = {
            "request_id": data["request_id"],
            "model": data["model"],
            "text": data["text"],
            "prompt_tokens": data["prompt_tokens"],
            "completion_tokens": data["completion_tokens"],
            "finish_reason": data.get("finish_reason", "stop"),
            "tool_calls": data.get("tool_calls"),
            "recorded_at": event.recorded_at,
        }
        if len(entries) > CACHE_ENTRIES:
            # Dicts keep insertion order, and a refreshed key was re-inserted: oldest first.
            del entries[next(iter(entries))]
        return state


class Failures:
    """The most recent failed requests and calls, for the dashboard: overall and per tenancy."""

    name = "failures"
    version = 2
    # The event types the fold reads; the live runner skips the others.
    types = frozenset({"RequestFailed", "ModelCallFailed"})
    keep = 20

    def initial(self) -> State:
        return {"recent": [], "tenancies": {}}

    def apply(self, state: State, event: RecordedEvent) -> State:
        if event.type in ("RequestFailed", "ModelCallFailed"):
            data = event.data
            failure = {
                "type": event.type,
                "request_id": data.get("request_id"),
                "model": data.get("model"),
                "kind": data.get("kind"),
                "message": data.get("message"),
                "at": event.recorded_at,
            }
            tenancy = state["tenancies"].setdefault(tenancy_of_event(event), [])
            for recent in (state["recent"], tenancy):
                recent.append(failure)
                del recent[: -self.keep]
        return state


LEARNS_FROM: Final = frozenset({"reference", "judge"})
"""The scorers whose scores say whether a call's answer was right: what the cascade's acceptance
score learns from (agreement measures consensus, feedback grades a request, not a call)."""


class ScoredCalls:
    """The log positions of the latest scores a reference or a judge gave a call, and how many
    there have been: where the cascade's acceptance model finds its history. Positions only,
    since the state is stored again whenever the log moves."""

    name = "scored_calls"
    version = 1
    # The event types the fold reads; the live runner skips the others.
    types = frozenset({"ScoreRecorded"})
    keep = 2_000

    def initial(self) -> State:
        return {"count": 0, "recent": []}

    def apply(self, state: State, event: RecordedEvent) -> State:
        data = event.data
        if (
            event.type == "ScoreRecorded"
            and data.get("subject_kind") == "call"
            and data.get("scorer") in LEARNS_FROM
        ):
            state["count"] += 1
            recent = state["recent"]
            recent.append(event.position)
            del recent[: -self.keep]
        return state


def all_projections() -> list[Any]:
    """Every projection the server keeps, in a fixed order."""
    return [
        Performance(),
        Orchestration(),
        Budgets(),
        Cache(),
        Failures(),
        Series(),
        ScoredCalls(),
    ]
