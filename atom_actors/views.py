"""The figures ATOM shows, read from the projections' states: one spelling for every reader.

The HTTP routes, `atom replay stats`, `atom budgets list` and the console present the
projections through these pure functions, so a figure has one name and one computation
wherever it appears. `tenancy` None gives everyone's figures (what operators see); a
tenancy's are its own calls, spend, requests and failures, beside what reveals no one's data
(a model's latency, speed, learned quality and circuit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from .cost import to_usd
from .folding import merged
from .projections import current_period, no_spend, percentile
from .series import DAY_BUCKETS, HOUR_MINUTES, STEP_S, five_of, minute_of, shift

State = Mapping[str, Any]

_NO_SPEND: Final[State] = no_spend()
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


WINDOWS: Final = {"hour": ("minutes", HOUR_MINUTES), "day": ("five", DAY_BUCKETS)}
"""The series a window reads (minute or 5-minute buckets) and how many buckets it spans."""


def series(
    state: State, tenancy: str | None = None, *, window: str = "hour", now: datetime
) -> dict[str, Any]:
    """The time series of the last hour (per minute) or day (per 5 minutes) up to `now`, as
    columns that share the bucket times `t` (Unix seconds): every bucket is there, empty ones
    with zero counts and no percentiles. Rates divide by the bucket's length, or by the time
    elapsed in the bucket that holds `now`. Models and strategies are kept for the hour only."""
    group, count = WINDOWS[window]
    step = STEP_S[group]
    rows = state["tenancies"]
    kept = list(rows.values()) if tenancy is None else [rows[tenancy]] if tenancy in rows else []
    last = minute_of(now.astimezone(UTC).isoformat())
    if group == "five":
        last = five_of(last)
    keys = [shift(last, -(count - 1 - i) * step // 60) for i in range(count)]
    t = [int(datetime.strptime(k, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC).timestamp()) for k in keys]
    now_s = now.timestamp()
    seconds = [min(step, max(1.0, now_s - start)) for start in t]

    def column(buckets: list[dict[str, Any]]) -> list[State | None]:
        return [_merged_row([b[k] for b in buckets if k in b]) for k in keys]

    overall = column([tenancy_rows[group] for tenancy_rows in kept])
    result: dict[str, Any] = {
        "window": window,
        "step_s": step,
        "t": t,
        "overall": _request_columns(overall, seconds),
        "summary": _summary([row for row in overall if row is not None]),
        "models": {},
        "strategies": {},
    }
    if group == "minutes":
        for part, columns in (("models", _call_columns), ("strategies", _strategy_columns)):
            names = sorted({name for tenancy_rows in kept for name in tenancy_rows[part]})
            result[part] = {
                name: columns(column([r[part][name] for r in kept if name in r[part]]))
                for name in names
            }
    return result


def _merged_row(rows: list[State]) -> State | None:
    """One bucket's rows of several tenancies as one (None when there is none)."""
    if not rows:
        return None
    if len(rows) == 1:
        return rows[0]
    total: dict[str, Any] = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            total[key] = merged(row[key] for row in rows)
        else:
            total[key] = sum(row[key] for row in rows)
    return total


def _rate(value: float, seconds: float) -> float:
    return round(value / seconds, 3)


def _request_columns(rows: list[State | None], seconds: list[float]) -> dict[str, list[Any]]:
    empty: State = {"requests": 0, "failed": 0, "latency_ms": {}, "completion_tokens": 0,
                    "cost_pico": 0}  # fmt: skip
    full = [row or empty for row in rows]
    return {
        "requests": [r["requests"] for r in full],
        "failed": [r["failed"] for r in full],
        "requests_per_s": [_rate(r["requests"], s) for r, s in zip(full, seconds, strict=True)],
        "error_rate": [_mean(r["failed"], r["requests"]) for r in full],
        "p50_ms": [percentile(r["latency_ms"], 0.5) for r in full],
        "p95_ms": [percentile(r["latency_ms"], 0.95) for r in full],
        "completion_tokens": [r["completion_tokens"] for r in full],
        "tokens_per_s": [
            _rate(r["completion_tokens"], s) for r, s in zip(full, seconds, strict=True)
        ],
        "spend_usd": [to_usd(r["cost_pico"]) for r in full],
    }


def _summary(rows: list[State]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in rows)
    failed = sum(r["failed"] for r in rows)
    latency = merged(r["latency_ms"] for r in rows)
    return {
        "requests": requests,
        "failed": failed,
        "error_rate": _mean(failed, requests),
        "p50_ms": percentile(latency, 0.5),
        "p95_ms": percentile(latency, 0.95),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "spend_usd": to_usd(sum(r["cost_pico"] for r in rows)),
    }


def _call_columns(rows: list[State | None]) -> dict[str, list[Any]]:
    return {
        "calls": [0 if r is None else r["calls"] for r in rows],
        "errors": [0 if r is None else r["failed"] for r in rows],
        "p50_ms": [None if r is None else percentile(r["latency_ms"], 0.5) for r in rows],
        "ttft_p50_ms": [None if r is None else percentile(r["ttft_ms"], 0.5) for r in rows],
        "tokens_per_s": [
            None if r is None else _mean(r["tps_total"], r["tps_count"], 2) for r in rows
        ],
        "spend_usd": [0.0 if r is None else to_usd(r["cost_pico"]) for r in rows],
    }


def _strategy_columns(rows: list[State | None]) -> dict[str, list[Any]]:
    return {
        "requests": [0 if r is None else r["requests"] for r in rows],
        "failed": [0 if r is None else r["failed"] for r in rows],
        "fallbacks": [0 if r is None else r["fallbacks"] for r in rows],
        "savings_usd": [
            0.0 if r is None else to_usd(r["baseline_pico"] - r["cost_pico"]) for r in rows
        ],
        "p50_ms": [None if r is None else percentile(r["latency_ms"], 0.5) for r in rows],
    }
