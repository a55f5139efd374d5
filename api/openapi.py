"""The OpenAPI 3.1 document, derived from the routes themselves."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from .errors import ANTHROPIC_ERROR_SCHEMA, ERROR_SCHEMA, Shape
from .routing import Route

_ERROR_TEXT: Final = {
    400: "Bad request: malformed JSON or a field the schema refuses (named in error.field).",
    401: "No key, an unknown key, or a revoked key.",
    402: "Over budget.",
    403: "The key's role is below the route's minimum role.",
    404: "Not found.",
    413: "The body is over the size limit.",
    429: "Over the key's rate limit; Retry-After says when to try again.",
    502: "Every upstream model tried failed (error.tried names them).",
    503: "Unavailable: no model can serve, or the server is shutting down.",
    504: "The deadline passed before an answer.",
}

AUTH_TEXT: Final = """\
Every route but `/api/advanced-ai/health` needs an API key, sent as
`Authorization: Bearer <key>` or `X-API-Key: <key>`. Keys are issued with
`atom keys create --db PATH --role viewer|user|operator|admin` and carry a role;
roles are ordered viewer < user < operator < admin and each route names its minimum role
(`x-min-role`). Requests are rate-limited per key (429 with Retry-After).

A browser signs in with `POST /api/advanced-ai/auth/session` and keeps only the
short-lived token it returns (valid for `expires_in` seconds): it sends the token as
`Authorization: Bearer <token>`, and opens `/api/advanced-ai/streaming/ws?token=<token>`
with it, since browsers cannot set headers on a WebSocket handshake. The token stands for
its key, so a revoked key's tokens stop working too; `DELETE /api/advanced-ai/auth/session`
ends it.

Errors are JSON: `{"error": {"type", "message", "field"?}}`."""

_SECURITY: Final = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An ATOM API key, or a session token from POST /auth/session.",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "sessionToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "A token from POST /api/advanced-ai/auth/session (WebSocket only).",
    },
}


def operation_id(route: Route) -> str:
    return re.sub(r"[^a-z0-9]+", "_", f"{route.method} {route.path}".lower()).strip("_")


def _error(status: int, shape: Shape = Shape.ATOM) -> dict[str, Any]:
    schema = "AnthropicError" if shape is Shape.ANTHROPIC else "Error"
    return {
        "description": _ERROR_TEXT.get(status, "Error."),
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _responses(route: Route) -> dict[str, Any]:
    if route.websocket:
        responses: dict[str, Any] = {
            "101": {"description": "Switching to the WebSocket protocol."},
            "400": _error(400),
        }
    else:
        content: dict[str, Any] = {route.content_type: {"schema": route.response or {}}}
        if route.streams:
            content["text/event-stream"] = {"schema": {}}
        responses = {str(route.status): {"description": route.summary, "content": content}}
    for status, schema in route.responses.items():
        responses[str(status)] = {
            "description": route.summary,
            "content": {route.content_type: {"schema": schema}},
        }
    statuses = set(route.errors)
    if route.role is not None:
        statuses |= {401, 403, 429}
    if route.body is not None:
        statuses |= {400, 413}
    if route.query:
        statuses |= {400}
    for status in sorted(statuses):
        responses.setdefault(str(status), _error(status, route.error_shape))
    return responses


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id(route),
        "summary": route.summary,
        "tags": [route.tag],
        "x-min-role": route.role.label if route.role is not None else None,
        "responses": _responses(route),
    }
    if route.description:
        operation["description"] = route.description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", route.path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": dict(schema)}
        for name, schema in route.query.items()
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.role is None:
        operation["security"] = []
    else:
        schemes = ["bearer", "apiKey", *(["sessionToken"] if route.websocket else [])]
        operation["security"] = [{scheme: []} for scheme in schemes]
    if route.body is not None:
        operation["requestBody"] = {
            "required": bool(route.body.get("required")),
            "content": {"application/json": {"schema": route.body}},
        }
    return operation


def document(routes: Iterable[Route], *, version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI document describing every route, its role, body and answers."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ATOM gateway", "version": version, "description": AUTH_TEXT},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, "AnthropicError": ANTHROPIC_ERROR_SCHEMA},
            "securitySchemes": _SECURITY,
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }
