"""What operators read: per-model performance, per-strategy results, the dashboard, advice.

Every figure is read from a projection kept by the runner, never recomputed from the raw log,
and presented by `atom_actors.views`. A viewer or user sees its own tenancy's calls, spend,
requests, budgets and failures; operators and admins see everyone's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from atom_actors import views
from atom_actors.catalog import CAPABILITIES
from atom_actors.cost import estimate_tokens
from atom_actors.recommend import Task, recommend

from ..auth import Role
from ..routing import BODY, PRINCIPAL, Route, json_response
from ..services import services_of
from ..tenancy import seen_tenancy, visible_scopes
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


async def performance(request: web.Request) -> web.Response:
    await consistent(request)
    state = gateway_of(request).projections.state("performance")
    return json_response({"models": views.models(state, seen_tenancy(request[PRINCIPAL]))})


async def orchestration_performance(request: web.Request) -> web.Response:
    await consistent(request)
    state = gateway_of(request).projections.state("orchestration")
    return json_response(
        {
            **views.outcomes(state, seen_tenancy(request[PRINCIPAL])),
            "savings_baseline": "the same tokens at the dearest eligible model's prices; "
            "a cascade's: its answer's tokens at its ladder's strongest model's",
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
    # Advice within the budgets the caller's requests would spend in.
    snapshot = gateway.snapshot(request[PRINCIPAL].scopes)
    return json_response(recommend(task, snapshot).to_dict())


def budget_rows_of(request: web.Request, scopes: list[str] | None) -> list[dict[str, Any]]:
    """The budgets of `scopes` (None: every one) as they stand now."""
    state = services_of(request).projections.state("budgets")
    return views.budget_rows(state, datetime.now(UTC), scopes)


def budgets_seen(request: web.Request) -> list[dict[str, Any]]:
    """The budgets the caller may see, as they stand now."""
    services = services_of(request)
    limits = services.projections.state("budgets")["limits"]
    return budget_rows_of(request, visible_scopes(request[PRINCIPAL], services.keys, limits))


async def dashboard(request: web.Request) -> web.Response:
    await consistent(request)
    gateway = gateway_of(request)
    tenancy = seen_tenancy(request[PRINCIPAL])
    projections = gateway.projections
    performance = projections.state("performance")
    models = views.models(performance, tenancy)
    unavailable = gateway.unavailable()
    top = sorted(models.items(), key=lambda item: (-item[1]["calls"], item[0]))[:5]
    return json_response(
        {
            "health": {
                spec.name: (
                    "unavailable" if spec.name in unavailable
                    else models[spec.name]["circuit"] if spec.name in models else "closed"
                )
                for spec in gateway.catalog
            },
            "traffic": views.outcomes(projections.state("orchestration"), tenancy)["requests"],
            "spend_usd": views.spend(performance, tenancy)["total_usd"],
            "budgets": budgets_seen(request),
            "top_models": [
                {"model": name, "calls": row["calls"], "cost_usd": row["cost_usd"]}
                for name, row in top
                if row["calls"]
            ],
            "recent_failures": views.recent_failures(projections.state("failures"), tenancy),
            "log_position": projections.position,
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
