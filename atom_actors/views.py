"""The figures ATOM shows, read from the projections' states: one spelling for every reader.

The HTTP routes, `atom replay stats`, `atom budgets list` and the console present the
projections through these pure functions, so a figure has one name and one computation
wherever it appears. `tenancy` None gives everyone's figures (what operators see); a
tenancy's are its own calls, spend, requests and failures, beside what reveals no one's data
(a model's latency, speed, learned quality and circuit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from .cost import to_usd
from .projections import current_period, percentile

State = Mapping[str, Any]

_NO_SPEND: Final[State] = {
    "calls": 0,
    "completed": 0,
    "failed": 0,
    "errors": {},
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "cost_pico": 0,
}
_NO_OUTCOMES: Final[State] = {
    "strategies": {},
    "requests": {"completed": 0, "failed": 0, "cached": 0},
}


def _spread(histogram: Mapping[str, int], *quantiles: tuple[str, float]) -> dict[str, Any]:
    return {name: percentile(histogram, q) for name, q in quantiles}


def _mean(total: float, count: int, digits: int = 4) -> float | None:
    return round(total / count, digits) if count else None


def model_row(row: State, spend: State | None = None) -> dict[str, Any]:
    """One model's figures; `spend` (a tenancy's calls and cost at it) replaces the model's own."""
    own = row if spend is None else spend
    return {
        "calls": own["calls"],
        "completed": own["completed"],
        "failed": own["failed"],
        "errors_by_kind": dict(sorted(own["errors"].items())),
        "latency_ms": _spread(row["latency_ms"], ("p50", 0.5), ("p95", 0.95), ("p99", 0.99)),
        "ttft_ms": _spread(row["ttft_ms"], ("p50", 0.5), ("p95", 0.95)),
        "tokens_per_s": _mean(row["tps_total"], row["tps_count"], 2),
        "prompt_tokens": own["prompt_tokens"],
        "completion_tokens": own["completion_tokens"],
        "cost_usd": to_usd(own["cost_pico"]),
        # "*" is every capability together.
        "quality": {
            capability: {"mean_score": _mean(total, count), "scores": count}
            for capability, (total, count) in sorted(row["quality"].items())
            if count
        },
        "circuit": row["health"],
    }


def models(performance: State, tenancy: str | None = None) -> dict[str, dict[str, Any]]:
    """Every observed model's figures, by name."""
    rows = performance["models"]
    spend = None if tenancy is None else performance["tenancies"].get(tenancy, {})
    return {
        name: model_row(rows[name], None if spend is None else spend.get(name, _NO_SPEND))
        for name in sorted(rows)
    }


def spend(performance: State, tenancy: str | None = None) -> dict[str, Any]:
    """What was spent in all and per model."""
    rows = performance["models"] if tenancy is None else performance["tenancies"].get(tenancy, {})
    return {
        "total_usd": to_usd(sum(row["cost_pico"] for row in rows.values())),
        "per_model_usd": {name: to_usd(rows[name]["cost_pico"]) for name in sorted(rows)},
    }


def strategy_row(row: State) -> dict[str, Any]:
    return {
        "requests": row["requests"],
        "failed": row["failed"],
        "fallbacks": row["fallbacks"],
        "escalations": row["escalations"],
        "agreement": _mean(row["agreement_total"], row["agreement_count"]),
        "cost_usd": to_usd(row["cost_pico"]),
        "savings_usd": to_usd(row["baseline_pico"] - row["cost_pico"]),
        "latency_ms": _spread(row["latency_ms"], ("p50", 0.5), ("p95", 0.95)),
    }


def outcomes(orchestration: State, tenancy: str | None = None) -> dict[str, Any]:
    """Per strategy and ensemble method, and the requests' outcomes."""
    state = orchestration if tenancy is None else orchestration["tenancies"].get(tenancy)
    state = state or _NO_OUTCOMES
    return {
        "strategies": {k: strategy_row(v) for k, v in sorted(state["strategies"].items())},
        "requests": dict(state["requests"]),
    }


def recent_failures(failures: State, tenancy: str | None = None) -> list[dict[str, Any]]:
    """The latest failures, newest first."""
    recent = failures["recent"] if tenancy is None else failures["tenancies"].get(tenancy, [])
    return list(reversed(recent))


def budget_rows(
    budgets: State, now: datetime, scopes: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Each limited scope (or those of `scopes`): its limit, spent, reserved and what remains
    in the current period."""
    wanted = None if scopes is None else set(scopes)
    now_s = now.timestamp()
    rows = []
    for scope, (limit, period) in sorted(budgets["limits"].items()):
        if wanted is not None and scope not in wanted:
            continue
        key = current_period(period, now)
        spent = budgets["spent"].get(scope, {}).get(key, 0)
        reserved = sum(
            amount
            for scopes_, amount, expires in budgets["reserved"].values()
            if scope in scopes_ and expires > now_s
        )
        rows.append(
            {
                "scope": scope,
                "period": period,
                "period_start": _period_start(key),
                "limit_usd": to_usd(limit),
                "spent_usd": to_usd(spent),
                "reserved_usd": to_usd(reserved),
                "remaining_usd": to_usd(limit - spent - reserved),
            }
        )
    return rows


def _period_start(key: str) -> str | None:
    """The first day of a period key ("day:2026-12-03", "month:2026-12"), None for total."""
    if key.startswith("day:"):
        return key[4:]
    if key.startswith("month:"):
        return f"{key[6:]}-01"
    return None
