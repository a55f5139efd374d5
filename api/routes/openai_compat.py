"""OpenAI-compatible routes: existing clients work unchanged, ATOM's router behind aliases.

`model` is a configured model, or `atom:<strategy>` (e.g. `atom:cost_first`; `atom:cascade`
asks the cheapest model first and a stronger one only when its answer is not kept), or
`atom:ensemble:<method>` (e.g. `atom:ensemble:majority_vote`, over the 3 strongest models).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Final

import orjson
from aiohttp import web

from atom_actors.providers import ToolCallDelta, tool_call_deltas
from atom_actors.request import GatewayError, ProcessRequest, ProcessResult
from atom_actors.snapshot import EnsembleMethod, EnsembleSpec, Strategy

from ..auth import Role
from ..errors import BadRequest
from ..routing import BODY, PRINCIPAL, Route, json_response
from ..services import services_of
from ._bodies import MESSAGES, PARAMS, drop_params, messages_of, params_of
from ._gateway import GATEWAY_ERRORS, error_json, failure, gateway_of, remember
from ._outbox import SSE_HEADERS, Outbox

PREFIX: Final = "atom:"

# Unknown fields are refused by name: a parameter the gateway does not speak (audio,
# prediction, store, ...) is never silently ignored.
CHAT: Final = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": False,
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": MESSAGES,
        "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "stream": {"type": "boolean"},
        "stream_options": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"include_usage": {"type": "boolean"}},
        },
        "n": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1,
            "description": "one choice per answer; several come from /orchestrate's samples",
        },
        **PARAMS,
    },
}

COMPLETION: Final = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"enum": ["chat.completion"]},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
    },
}

MODEL_LIST: Final = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {"object": {"enum": ["list"]}, "data": {"type": "array"}},
}


def aliases() -> list[str]:
    return [f"{PREFIX}{s.value}" for s in Strategy if s is not Strategy.ENSEMBLE] + [
        f"{PREFIX}ensemble:{m.value}" for m in EnsembleMethod
    ]


def chat_request(body: Mapping[str, Any]) -> ProcessRequest:
    """The gateway request of an OpenAI chat completion body."""
    fields: dict[str, Any] = dict(body)
    if "max_completion_tokens" in body and "max_tokens" not in body:
        fields["max_tokens"] = body["max_completion_tokens"]
    return ProcessRequest(
        messages=messages_of(body),
        params=params_of(fields),
        endpoint="v1/chat/completions",
        stream=body.get("stream", False),
        **target(body["model"]),
    )


def target(name: str) -> dict[str, Any]:
    """The ProcessRequest fields that aim a request at `name`: a configured model, or a router
    alias (`atom:...`)."""
    if not name.startswith(PREFIX):
        return {"model": name}
    alias = name.removeprefix(PREFIX)
    if alias.startswith("ensemble:"):
        method = alias.removeprefix("ensemble:")
        if method not in EnsembleMethod.__members__.values():
            raise BadRequest(f"unknown ensemble method in model {name!r}", field="model")
        return {"ensemble": EnsembleSpec(EnsembleMethod(method))}
    if alias not in Strategy.__members__.values():
        known = ", ".join(aliases())
        raise BadRequest(f"unknown model {name!r}; router aliases are {known}", field="model")
    return {"strategy": Strategy(alias)}


def _usage(result: ProcessResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def completion(result: ProcessResult, asked: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text, "refusal": None}
    if result.tool_calls:
        # As OpenAI answers a call with nothing said: content null beside the calls.
        message["content"] = result.text or None
        message["tool_calls"] = [call.to_openai() for call in result.tool_calls]
    return {
        "id": f"chatcmpl-{result.request_id}",
        "object": "chat.completion",
        "created": created,
        "model": asked if asked.startswith(PREFIX) else result.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": _logprobs(result),
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": _usage(result),
        "system_fingerprint": None,
        **dropped(result),
    }


def _logprobs(result: ProcessResult) -> dict[str, Any] | None:
    return {"content": list(result.logprobs), "refusal": None} if result.logprobs else None


def dropped(result: ProcessResult) -> dict[str, Any]:
    """What the answer says of the parameters left out for its model, if any were."""
    if not result.dropped_params:
        return {}
    return {"atom": {"dropped_params": list(result.dropped_params)}}


def dropped_header(result: ProcessResult) -> dict[str, str] | None:
    if not result.dropped_params:
        return None
    return {"X-Atom-Dropped-Params": ", ".join(result.dropped_params)}


def _chunk(request_id: str, model: str, created: int, delta: dict[str, Any],
           finish: str | None, extra: Mapping[str, Any] | None = None,
           logprobs: dict[str, Any] | None = None) -> bytes:  # fmt: skip
    chunk = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        **(extra or {}),
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def content_chunks(request_id: str, model: str, created: int) -> Callable[[str], bytes]:
    """`_chunk` of a delta with only content, from a template: one orjson call per token
    instead of a dict of dicts encoded whole."""
    # "\x00" is encoded as this escape; the content comes last, after any in the model's name.
    template = _chunk(request_id, model, created, {"content": "\x00"}, None)
    head, tail = template.rsplit(b'"\\u0000"', 1)

    def chunk(text: str) -> bytes:
        return head + orjson.dumps(text) + tail

    return chunk


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = request[BODY]
    gateway = gateway_of(request)
    req = chat_request(body)
    if drop_params(body, request.headers):
        req = replace(req, drop_params=True)
    principal = request[PRINCIPAL]
    created = int(time.time())
    if not req.stream:
        try:
            result = await gateway.process(req, principal)
        except GatewayError as exc:
            raise failure(request, exc) from None
        remember(request, result)
        return json_response(
            completion(result, body["model"], created), headers=dropped_header(result)
        )
    return await _stream(request, req, body, created)


async def _stream(
    request: web.Request, req: ProcessRequest, body: Mapping[str, Any], created: int
) -> web.StreamResponse:
    gateway = gateway_of(request)
    principal = request[PRINCIPAL]
    include_usage = body.get("stream_options", {}).get("include_usage", False)
    # Opened with the first chunk: a request refused before any token gets its own status.
    outbox = Outbox(request, SSE_HEADERS)
    model_name: str = body["model"]
    request_id = str(uuid.uuid4())
    opened = False

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _chunk(request_id, model_name, created, delta, finish)

    content = content_chunks(request_id, model_name, created)

    def on_token(_member: str, text: str, _ms: float) -> None:
        nonlocal opened
        if not opened:
            opened = True
            outbox.put(chunk({"role": "assistant", "content": ""}))
        outbox.put(content(text))

    def on_tool_call(_member: str, piece: ToolCallDelta, _ms: float) -> None:
        nonlocal opened
        delta: dict[str, Any] = {"tool_calls": [piece.to_openai()]}
        if not opened:
            # An answer that opens with a call says nothing: content null, as OpenAI streams it.
            opened = True
            delta = {"role": "assistant", "content": None, **delta}
        outbox.put(chunk(delta))

    # An ensemble's or a cascade's answer is known only once its calls are in: it goes whole.
    single = not req.combines
    producing = gateway.process(
        req,
        principal,
        on_token if single else None,
        request_id,
        on_tool_call if single and req.params.tools else None,
    )
    response = outbox.response
    try:
        result = await outbox.serve(producing)
    except GatewayError as exc:
        if not response.prepared:
            raise failure(request, exc) from None
        await response.write(b"data: " + error_json(failure(request, exc)) + b"\n\n")
        await response.write_eof()
        return response
    remember(request, result)
    if not response.prepared:
        await response.prepare(request)
        await response.write(chunk({"role": "assistant", "content": result.text or None}))
        for piece in tool_call_deltas(result.tool_calls):
            await response.write(chunk({"tool_calls": [piece.to_openai()]}))
    # The answer's log-probabilities come whole with its finish: a client's accumulator
    # (the openai client's stream helpers) joins them as it joins those of every chunk.
    last = _chunk(request_id, model_name, created, {}, result.finish_reason, dropped(result),
                  _logprobs(result))  # fmt: skip
    await response.write(last)
    if include_usage:
        usage = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
            "choices": [],
            "usage": _usage(result),
        }
        await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
    # Sent after the request's events are committed: nothing is answered off the record.
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def list_models(request: web.Request) -> web.Response:
    services = services_of(request)
    created = int(time.time())
    specs = services.actors.specs if services.actors is not None else {}
    # Beside OpenAI's fields, what each model can do: an embeddings client looks for
    # "embeddings", an agent for "tools".
    data = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "atom",
            "capabilities": sorted(spec.capabilities),
        }
        for name, spec in specs.items()
    ]
    data += [
        {"id": name, "object": "model", "created": created, "owned_by": "atom"}
        for name in aliases()
    ]
    return json_response({"object": "list", "data": data})


ROUTES: Final = (
    Route(
        "POST",
        "/v1/chat/completions",
        chat_completions,
        role=Role.USER,
        summary="OpenAI-compatible chat completions (streamed or not)",
        description=__doc__ or "",
        body=CHAT,
        response=COMPLETION,
        errors=GATEWAY_ERRORS,
        streams=True,
        tag="openai",
    ),
    Route(
        "GET",
        "/v1/models",
        list_models,
        role=Role.VIEWER,
        summary="OpenAI-compatible model list: configured models with their capabilities, and "
        "router aliases",
        response=MODEL_LIST,
        tag="openai",
    ),
)
