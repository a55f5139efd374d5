"""POST /insights/generate: insights from several models (or samples), combined by consensus."""

from __future__ import annotations

from typing import Final

import orjson
from aiohttp import web

from atom_actors import insights
from atom_actors.providers import CallParams
from atom_actors.request import GatewayError, ProcessRequest
from atom_actors.snapshot import EnsembleMethod, EnsembleSpec

from ..auth import Role
from ..errors import BadRequest
from ..routing import BODY, PRINCIPAL, Route, json_response
from ._gateway import failure, gateway_of, remember

BODY_SCHEMA: Final = {
    "type": "object",
    "required": ["question"],
    "properties": {
        "question": {"type": "string", "minLength": 1, "maxLength": 10_000},
        "text": {"type": "string", "maxLength": 500_000},
        "data": {"type": ["object", "array"]},
        "models": {"type": "array", "maxItems": 8, "items": {"type": "string", "minLength": 1}},
        "samples": {"type": "integer", "minimum": 1, "maximum": 8},
        "max_insights": {"type": "integer", "minimum": 1, "maximum": 20},
        "max_tokens": {"type": "integer", "minimum": 16, "maximum": 8192},
    },
    "description": "`text` or `data` to analyse, and a `question`. Members are the `models` "
    "named, else `samples` of the strongest model, else the 3 strongest models.",
}

RESULT: Final = {
    "type": "object",
    "required": ["request_id", "insights", "voters"],
    "properties": {
        "request_id": {"type": "string"},
        "insights": {"type": "array", "items": {"type": "object"}},
        "voters": {"type": "integer"},
        "cost_usd": {"type": "number"},
    },
}


async def generate(request: web.Request) -> web.Response:
    body = request[BODY]
    if "text" not in body and "data" not in body:
        raise BadRequest("give `text` or `data` to analyse", field="text")
    if "text" in body:
        material = body["text"]
    else:
        material = orjson.dumps(body["data"], option=orjson.OPT_INDENT_2).decode()
    limit = body.get("max_insights", 5)
    members = tuple(body.get("models", ()))
    samples = body.get("samples", 1)
    req = ProcessRequest(
        messages=insights.prompt(body["question"], material, limit),
        params=CallParams(
            max_tokens=body.get("max_tokens", 1024),
            response_format={"type": "json_schema",
                             "json_schema": {"name": "insights", "schema": insights.SCHEMA}},
        ),
        capability="business_analysis",
        ensemble=EnsembleSpec(EnsembleMethod.CONSENSUS, members[:1] if samples > 1 else members,
                              samples),
        endpoint="insights/generate",
    )  # fmt: skip
    try:
        result = await gateway_of(request).process(req, request[PRINCIPAL])
    except GatewayError as exc:
        raise failure(request, exc) from None
    remember(request, result)
    replies = {m["member"]: m["text"] for m in result.members if not m["error"]}
    return json_response(
        {
            "request_id": result.request_id,
            "insights": insights.combine(replies)[:limit],
            # Those whose reply held insights: the members each insight's agreement counts.
            "voters": sum(1 for text in replies.values() if insights.parse(text)),
            "members": [m["model"] for m in result.members],
            "cost_usd": result.cost_usd,
        }
    )


ROUTES: Final = (
    Route(
        "POST",
        "/api/advanced-ai/insights/generate",
        generate,
        role=Role.USER,
        summary="Insights {insight, evidence, confidence, recommendation, agreement} from "
        "several models with JSON-schema-constrained output, combined by consensus",
        body=BODY_SCHEMA,
        response=RESULT,
        errors=(402, 502, 503, 504),
        tag="models",
    ),
)
