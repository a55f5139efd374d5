"""OpenAI-compatible embeddings: `POST /v1/embeddings` for models with the embeddings capability.

An embeddings request is a request like any other (its own events, routing to the named model,
a reservation before the call and a settlement after it, its tenancy), whose one call answers
with vectors instead of text; its input tokens cost the model's input price.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from atom_actors.providers import CallParams
from atom_actors.request import GatewayError, ProcessRequest, ProcessResult
from atom_actors.snapshot import Strategy

from ..auth import Role
from ..errors import BadRequest
from ..routing import BODY, PRINCIPAL, Route, json_response
from ._bodies import ATOM_OPTIONS, drop_params
from ._gateway import GATEWAY_ERRORS, failure, gateway_of, remember
from .openai_compat import dropped, dropped_header, target

# OpenAI takes up to 2048 inputs in one request; so does ATOM.
MAX_INPUTS: Final = 2048

EMBEDDINGS: Final = {
    "type": "object",
    "required": ["model", "input"],
    "additionalProperties": False,
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "input": {
            "type": ["string", "array"],
            "minLength": 1,
            "minItems": 1,
            "maxItems": MAX_INPUTS,
            "items": {"type": "string", "minLength": 1},
            "description": "a text, or a list of texts (token arrays are not taken)",
        },
        "encoding_format": {"enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1, "maximum": 65_536},
        "user": {"type": "string", "maxLength": 256},
        "atom": ATOM_OPTIONS,
    },
}

EMBEDDING_LIST: Final = {
    "type": "object",
    "required": ["object", "data", "model", "usage"],
    "properties": {
        "object": {"enum": ["list"]},
        "data": {"type": "array", "items": {"type": "object"}},
        "model": {"type": "string"},
        "usage": {"type": "object"},
    },
}


def embeddings_request(body: Mapping[str, Any]) -> ProcessRequest:
    """The gateway request of an OpenAI embeddings body: each input one message."""
    given = body["input"]
    inputs: Sequence[str] = [given] if isinstance(given, str) else given
    return ProcessRequest(
        messages=[{"role": "user", "content": text} for text in inputs],
        # Nothing is generated: the reservation is the inputs' bound at the input price.
        params=CallParams(
            max_tokens=0, embed=True, dimensions=body.get("dimensions"), user=body.get("user")
        ),
        capability="embeddings",
        **_aimed(body["model"]),
        use_cache=False,
        endpoint="v1/embeddings",
    )


def _aimed(name: str) -> dict[str, Any]:
    """A configured model or a router alias that picks one model: a vector is not voted on."""
    fields = target(name)
    if "ensemble" in fields or fields.get("strategy") is Strategy.CASCADE:
        raise BadRequest(f"model {name!r}: embeddings come from one model", field="model")
    return fields


def encoded(vector: Sequence[float], encoding: str) -> list[float] | str:
    """A vector as OpenAI sends it: floats, or base64 of little-endian float32s."""
    if encoding == "float":
        return list(vector)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_list(result: ProcessResult, encoding: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encoded(vector, encoding)}
            for index, vector in enumerate(result.embeddings)
        ],
        "model": result.model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        **dropped(result),
    }


async def embeddings(request: web.Request) -> web.Response:
    body = request[BODY]
    req = embeddings_request(body)
    if drop_params(body, request.headers):
        req = replace(req, drop_params=True)
    try:
        result = await gateway_of(request).process(req, request[PRINCIPAL])
    except GatewayError as exc:
        raise failure(request, exc) from None
    remember(request, result)
    answer = embedding_list(result, body.get("encoding_format", "float"))
    return json_response(answer, headers=dropped_header(result))


ROUTES: Final = (
    Route(
        "POST",
        "/v1/embeddings",
        embeddings,
        role=Role.USER,
        summary="OpenAI-compatible embeddings, for models with the embeddings capability",
        description=__doc__ or "",
        body=EMBEDDINGS,
        response=EMBEDDING_LIST,
        errors=GATEWAY_ERRORS,
        tag="openai",
    ),
)
