"""POST /process and /orchestrate: one answer from a model, the router or an ensemble."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from atom_actors.request import GatewayError, ProcessResult, TokenSink, ToolCallEvents

from ..auth import Role
from ..routing import BODY, PRINCIPAL, Route, json_response
from ..services import services_of
from ._bodies import ORCHESTRATE, PROCESS, drop_params, process_request
from ._gateway import GATEWAY_ERRORS, failure, gateway_of, remember, stream_sse

RESULT: Final = {
    "type": "object",
    "required": ["request_id", "model", "text", "usage", "cost_usd", "latency_ms", "route"],
    "properties": {
        "request_id": {"type": "string"},
        "model": {"type": "string"},
        "text": {"type": "string"},
        "finish_reason": {"type": "string"},
        "tool_calls": {
            "type": "array",
            "items": {"type": "object"},
            "description": "the tools the answer calls, in OpenAI's shape",
        },
        "dropped_params": {
            "type": "array",
            "items": {"type": "string"},
            "description": "parameters left out for the model that answered (drop_params)",
        },
        "usage": {
            "type": "object",
            "properties": {
                "prompt_tokens": {"type": "integer"},
                "completion_tokens": {"type": "integer"},
            },
        },
        "cost_usd": {"type": "number"},
        "latency_ms": {"type": "number"},
        "cached": {"type": "boolean"},
        "route": {"type": "object"},
        "attempts": {"type": "array", "items": {"type": "object"}},
        "ensemble": {"type": ["object", "null"]},
        "members": {"type": "array", "items": {"type": "object"}},
        "cascade": {
            "type": "array",
            "items": {"type": "object"},
            "description": "a cascade's moves: each rung called, the answer kept, or a stop",
        },
        "agreement": {"type": ["number", "null"]},
        "confidence": {"type": ["number", "null"]},
        "position": {"type": "integer", "description": "the log position of the answer"},
    },
}

FEEDBACK: Final = {
    "type": "object",
    "required": ["request_id", "score"],
    "properties": {
        "request_id": {"type": "string", "minLength": 1},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "comment": {"type": "string", "maxLength": 2000},
    },
}


def result_json(result: ProcessResult) -> dict[str, Any]:
    ensemble = result.ensemble
    return {
        "request_id": result.request_id,
        "model": result.model,
        "text": result.text,
        "finish_reason": result.finish_reason,
        "tool_calls": [call.to_openai() for call in result.tool_calls],
        "dropped_params": list(result.dropped_params),
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
        },
        "cost_usd": result.cost_usd,
        "latency_ms": result.latency_ms,
        "cached": result.cached,
        "route": result.route,
        "attempts": [
            {"model": a.model, "attempt": a.attempt, "outcome": a.outcome, "message": a.message}
            for a in result.attempts
        ],
        "ensemble": ensemble,
        "members": list(result.members),
        "cascade": list(result.cascade),
        "agreement": ensemble["agreement"] if ensemble else None,
        "confidence": ensemble["confidence"] if ensemble else None,
        "position": result.position,
    }


async def _answer(request: web.Request, endpoint: str) -> web.StreamResponse:
    gateway = gateway_of(request)
    req = process_request(request[BODY], endpoint)
    if drop_params(request[BODY], request.headers):
        req = replace(req, drop_params=True)
    principal = request[PRINCIPAL]
    if req.stream:

        async def run(on_token: TokenSink, on_tool_call: ToolCallEvents) -> dict[str, Any]:
            result = await gateway.process(req, principal, on_token, None, on_tool_call)
            remember(request, result)
            return result_json(result)

        return await stream_sse(request, run)
    try:
        result = await gateway.process(req, principal)
    except GatewayError as exc:
        raise failure(request, exc) from None
    remember(request, result)
    return json_response(result_json(result))


async def process(request: web.Request) -> web.StreamResponse:
    return await _answer(request, "process")


async def orchestrate(request: web.Request) -> web.StreamResponse:
    return await _answer(request, "orchestrate")


async def feedback(request: web.Request) -> web.Response:
    body = request[BODY]
    try:
        position = await gateway_of(request).feedback(
            body["request_id"], body["score"], request[PRINCIPAL],
            body.get("comment", ""),
        )  # fmt: skip
    except GatewayError as exc:
        raise failure(request, exc) from None
    # The score is the caller's last write: `?consistent=true` reads must include it.
    services_of(request).last_writes[request[PRINCIPAL].api_key_id] = position
    return json_response({"request_id": body["request_id"], "position": position}, 201)


_STREAM = (
    "With `stream: true` the answer comes as Server-Sent Events: `token` events "
    "({member, text, ms}) as tokens arrive, `tool_call` events ({member, index, id?, name?, "
    "arguments, ms}: the pieces of the calls the answer makes, OpenAI's streaming shape), "
    "then one `done` event with the result (sent only once the request's events are "
    "committed), or an `error` event."
)

ROUTES: Final = (
    Route(
        "POST",
        "/api/advanced-ai/process",
        process,
        role=Role.USER,
        summary="One answer from a named model or the router's pick",
        description=_STREAM,
        body=PROCESS,
        response=RESULT,
        errors=GATEWAY_ERRORS,
        streams=True,
        tag="models",
    ),
    Route(
        "POST",
        "/api/advanced-ai/orchestrate",
        orchestrate,
        role=Role.USER,
        summary="Route with a strategy, or fan out to an ensemble and combine",
        description="The answer with the route, every member's answer, agreement, "
        "confidence, cost and latency. " + _STREAM,
        body=ORCHESTRATE,
        response=RESULT,
        errors=GATEWAY_ERRORS,
        streams=True,
        tag="models",
    ),
    Route(
        "POST",
        "/api/advanced-ai/feedback",
        feedback,
        role=Role.USER,
        summary="Score an answer (0 to 1); recorded as ScoreRecorded, it teaches the router",
        body=FEEDBACK,
        response={"type": "object"},
        status=201,
        errors=(404,),
        tag="models",
    ),
)
