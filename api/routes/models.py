"""GET /models and /models/capabilities: the catalog with what the log has observed of it."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from atom_actors.catalog import CAPABILITIES, ModelSpec
from atom_actors.cost import reservation_pico, to_usd
from atom_actors.gateway import Gateway
from atom_actors.model import NotAdmitted
from atom_actors.projections import percentile
from atom_actors.quality import Evidence, learned_quality
from atom_actors.snapshot import ModelFigures
from atom_actors.strategies import expected_latency_ms

from ..auth import Role
from ..errors import BadRequest
from ..routing import PRINCIPAL, Route, json_response
from ..tenancy import seen_tenancy
from ._gateway import consistent, gateway_of

# A typical request, to state every model's cost per request and latency on one footing.
TYPICAL_PROMPT_TOKENS: Final = 500
TYPICAL_ANSWER_TOKENS: Final = 300
_UNOBSERVED: Final = ModelFigures()

MODELS: Final = {
    "type": "object",
    "required": ["models"],
    "properties": {"models": {"type": "array", "items": {"type": "object"}}},
}


def _quality(gateway: Gateway, spec: ModelSpec, capability: str) -> tuple[float, int]:
    figures = gateway.figures().get(spec.name)
    evidence = figures.quality.get(capability, Evidence()) if figures else Evidence()
    return round(learned_quality(spec.quality_prior, evidence), 4), evidence.count


def _load(gateway: Gateway, model: str) -> tuple[int, int, int]:
    """This node's calls in flight, waiting, and most ever waiting for the model (its gate)."""
    try:
        _, gate = gateway.actors.directory.entry(model)
    except (NotAdmitted, KeyError):
        return 0, 0, 0
    return gate.load()


def model_view(
    gateway: Gateway, spec: ModelSpec, unavailable: dict[str, str], tenancy: str | None
) -> dict[str, Any]:
    """A catalog entry with what was observed of it; its calls are the tenancy's own."""
    performance = gateway.projections.state("performance")
    row = performance["models"].get(spec.name, {})
    own = row if tenancy is None else performance["tenancies"].get(tenancy, {}).get(spec.name, {})
    figures = gateway.figures().get(spec.name)
    quality, evidence = _quality(gateway, spec, "*")
    in_flight, queued, peak_queued = _load(gateway, spec.name)
    return {
        "name": spec.name,
        "provider": spec.provider,
        "model": spec.model,
        "capabilities": sorted(spec.capabilities),
        "input_usd_per_mtok": spec.input_usd_per_mtok,
        "output_usd_per_mtok": spec.output_usd_per_mtok,
        "context_window": spec.context_window,
        "max_concurrency": spec.max_concurrency,
        "max_queue": spec.max_queue,
        "in_flight": in_flight,
        "queued": queued,
        "peak_queued": peak_queued,
        "available": spec.name not in unavailable,
        "unavailable_reason": unavailable.get(spec.name),
        "circuit": row.get("health", "closed"),
        "quality": quality,
        "quality_evidence": evidence,
        "calls": own.get("calls", 0),
        "latency_p50_ms": percentile(row.get("latency_ms", {}), 0.5),
        "ttft_p50_ms": figures.ttft_ms if figures else None,
        "tokens_per_s": figures.tokens_per_s if figures else None,
    }


async def list_models(request: web.Request) -> web.Response:
    await consistent(request)
    gateway = gateway_of(request)
    capability = request.query.get("capability")
    if capability is not None and capability not in CAPABILITIES:
        raise BadRequest(f"unknown capability {capability!r}", field="capability")
    unavailable = gateway.unavailable()
    tenancy = seen_tenancy(request[PRINCIPAL])
    models = [
        model_view(gateway, spec, unavailable, tenancy)
        for spec in gateway.catalog
        if capability is None or capability in spec.capabilities
    ]
    return json_response({"models": models})


async def capabilities(request: web.Request) -> web.Response:
    await consistent(request)
    gateway = gateway_of(request)
    unavailable = gateway.unavailable()
    figures = gateway.figures()
    table: dict[str, list[dict[str, Any]]] = {cap: [] for cap in sorted(CAPABILITIES)}
    for spec in gateway.catalog:
        latency = expected_latency_ms(figures.get(spec.name) or _UNOBSERVED, TYPICAL_ANSWER_TOKENS)
        cost = to_usd(reservation_pico(spec, TYPICAL_PROMPT_TOKENS, TYPICAL_ANSWER_TOKENS))
        for cap in spec.capabilities:
            quality, evidence = _quality(gateway, spec, cap)
            table[cap].append(
                {
                    "model": spec.name,
                    "available": spec.name not in unavailable,
                    "quality": quality,
                    "quality_evidence": evidence,
                    "expected_latency_ms": round(latency, 1),
                    "cost_usd_typical_request": cost,
                }
            )
    for rows in table.values():
        rows.sort(key=lambda r: (-r["quality"], r["cost_usd_typical_request"], r["model"]))
    return json_response(
        {
            "typical_request": {
                "prompt_tokens": TYPICAL_PROMPT_TOKENS,
                "answer_tokens": TYPICAL_ANSWER_TOKENS,
            },
            "capabilities": table,
        }
    )


ROUTES: Final = (
    Route(
        "GET",
        "/api/advanced-ai/models",
        list_models,
        role=Role.VIEWER,
        summary="Configured models: provider, capabilities, prices, availability, observed figures",
        description="`?capability=` filters; `?consistent=true` waits for your last write.",
        response=MODELS,
        tag="models",
    ),
    Route(
        "GET",
        "/api/advanced-ai/models/capabilities",
        capabilities,
        role=Role.VIEWER,
        summary="Capability -> models, with quality, latency and cost per capability",
        response={"type": "object"},
        tag="models",
    ),
)
