"""What operators read: per-model performance, per-strategy results, the dashboard, advice.

Every figure is read from a projection kept by the runner, never recomputed from the raw log.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from atom_actors.catalog import CAPABILITIES
from atom_actors.cost import estimate_tokens, to_usd
from atom_actors.projections import current_period, percentile
from atom_actors.recommend import Task, recommend

from ..auth import Role
from ..routing import BODY, Route, json_response
from ._gateway import consistent, gateway_of

OBJECT: Final = {"type": "object"}

TASK: Final = {
    "type": "object",
    "required": ["capability"],
    "properties": {
        "capability": {"enum": sorted(CAPABILITIES)},
        "description": {"type": "string", "maxLength": 100_000},
        "prompt_tokens": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
        "answer_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "latency_target_ms": {"type": "number", "minimum": 1},
        "budget_usd": {"type": "number", "minimum": 0},
        "min_quality": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "description": "Sizes in tokens; without prompt_tokens the description's estimate is used.",
}


def _model_performance(row: dict[str, Any]) -> dict[str, Any]:
    latency, ttft = row["latency_ms"], row["ttft_ms"]
    return {
        "requests": row["calls"],
        "completed": row["completed"],
        "errors": row["failed"],
        "errors_by_kind": row["errors"],
        "latency_ms": {q: percentile(latency, v) for q, v in (("p50", .5), ("p95", .95),
                                                                ("p99", .99))},
        "ttft_ms": {q: percentile(ttft, v) for q, v in (("p50", .5), ("p95", .95))},
        "tokens_per_s": round(row["tps_total"] / row["tps_count"], 2) if row["tps_count"] else None,
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "cost_usd": to_usd(row["cost_pico"]),
        "quality": {
            cap: {"mean_score": round(total / count, 4), "scores": count}
            for cap, (total, count) in row["quality"].items()
            if count
        },
        "circuit": row["health"],
    }  # fmt: skip


async def performance(request: web.Request) -> web.Response:
    await consistent(request)
    models = gateway_of(request).projections.state("performance")["models"]
    return json_response({"models": {n: _model_performance(r) for n, r in models.items()}})


def _strategies(state: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, row in state["strategies"].items():
        out[name] = {
            "requests": row["requests"],
            "failed": row["failed"],
            "fallbacks": row["fallbacks"],
            "agreement": (
                round(row["agreement_total"] / row["agreement_count"], 4)
                if row["agreement_count"]
                else None
            ),
            "cost_usd": to_usd(row["cost_pico"]),
            "savings_usd": to_usd(row["baseline_pico"] - row["cost_pico"]),
            "latency_ms": {"p50": percentile(row["latency_ms"], 0.5),
                           "p95": percentile(row["latency_ms"], 0.95)},
        }  # fmt: skip
    return out


async def orchestration_performance(request: web.Request) -> web.Response:
    await consistent(request)
    state = gateway_of(request).projections.state("orchestration")
    return json_response(
        {
            "strategies": _strategies(state),
            "requests": state["requests"],
            "savings_baseline": "the same tokens at the dearest eligible model's prices",
        }
    )


async def recommendations(request: web.Request) -> web.Response:
    body = request[BODY]
    gateway = gateway_of(request)
    prompt_tokens = body.get("prompt_tokens")
    if prompt_tokens is None:
        prompt_tokens = estimate_tokens(body.get("description", ""))
    task = Task(
        capability=body["capability"],
        prompt_tokens=prompt_tokens,
        answer_tokens=body.get("answer_tokens", 256),
        latency_target_ms=body.get("latency_target_ms"),
        budget_usd=body.get("budget_usd"),
        min_quality=body.get("min_quality"),
    )
    return json_response(recommend(task, gateway.snapshot(["global"])).to_dict())


def _budgets(gateway: Any) -> list[dict[str, Any]]:
    state = gateway.projections.state("budgets")
    now = datetime.now(UTC)
    rows = []
    for scope, (limit, period) in sorted(state["limits"].items()):
        spent = state["spent"].get(scope, {}).get(current_period(period, now), 0)
        rows.append(
            {
                "scope": scope,
                "period": period,
                "limit_usd": to_usd(limit),
                "spent_usd": to_usd(spent),
                "remaining_usd": to_usd(limit - spent),
            }
        )
    return rows


async def dashboard(request: web.Request) -> web.Response:
    await consistent(request)
    gateway = gateway_of(request)
    models = gateway.projections.state("performance")["models"]
    orchestration = gateway.projections.state("orchestration")
    unavailable = gateway.unavailable()
    spend = sum(row["cost_pico"] for row in models.values())
    top = sorted(models.items(), key=lambda item: -item[1]["calls"])[:5]
    return json_response(
        {
            "health": {
                spec.name: (
                    "unavailable" if spec.name in unavailable
                    else models.get(spec.name, {}).get("health", "closed")
                )
                for spec in gateway.catalog
            },
            "traffic": orchestration["requests"],
            "spend_usd": to_usd(spend),
            "budgets": _budgets(gateway),
            "top_models": [
                {"model": name, "calls": row["calls"], "cost_usd": to_usd(row["cost_pico"])}
                for name, row in top
            ],
            "recent_failures": gateway.projections.state("failures")["recent"][::-1],
            "log_position": gateway.projections.position,
        }
    )  # fmt: skip


ROUTES: Final = (
    Route("GET", "/api/advanced-ai/performance", performance, role=Role.VIEWER,
          summary="Per model: requests, errors by kind, latency percentiles, time to first "
          "token, tokens/s, tokens, cost, quality by capability",
          response=OBJECT, tag="observability"),
    Route("GET", "/api/advanced-ai/dashboard", dashboard, role=Role.VIEWER,
          summary="Health, traffic, spend against budgets, top models, recent failures",
          response=OBJECT, tag="observability"),
    Route("GET", "/api/advanced-ai/orchestration/performance", orchestration_performance,
          role=Role.VIEWER,
          summary="Per strategy and ensemble method: requests, fallbacks, agreement, cost, "
          "latency, savings against the dearest model",
          response=OBJECT, tag="observability"),
    Route("POST", "/api/advanced-ai/orchestration/recommendations", recommendations,
          role=Role.VIEWER,
          summary="A task -> ranked models and strategies with expected cost, latency, "
          "quality and reasons",
          body=TASK, response=OBJECT, tag="observability"),
)  # fmt: skip
