"""Routes declared once: method, path, handler, minimum role and schemas.

From a `Route` the app derives authentication, the role check, the rate limit, body
validation and the route's entry in the OpenAPI document. A handler takes the request and
finds what the guard established in `request[PRINCIPAL]` and `request[BODY]`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from .auth import Principal, Role, permits, presented_key
from .errors import SHAPE, BadRequest, Forbidden, Shape, TooLarge, Unauthorized
from .services import Services, services_of
from .sessions import is_session_token
from .validation import Schema, validate, validator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PRINCIPAL: Final = web.RequestKey("atom.principal", Principal)
SESSION: Final = web.RequestKey("atom.session", str)
"""The id of the session whose token authenticated the request, when one did."""
CATCH_UP_S: Final = 5.0
"""How long an unknown key waits for the key ring to read the log up to its head."""
BODY: Final[web.RequestKey[Mapping[str, Any]]] = web.RequestKey("atom.body", dict)
QUERY: Final[web.RequestKey[Mapping[str, Any]]] = web.RequestKey("atom.query", dict)
"""The route's declared query parameters that were given, as their schemas' types."""


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint. `role` None means open to anyone (only /health is)."""

    method: str
    path: str
    handler: Handler
    role: Role | None
    summary: str
    description: str = ""
    body: Schema | None = None
    # Query parameters by name, each optional, read as its schema's type (integer or string).
    query: Mapping[str, Schema] = field(default_factory=dict)
    response: Schema | None = None
    status: int = 200
    content_type: str = "application/json"
    # Statuses beyond those the guard answers (401, 403, 429; 400 and 413 with a body).
    errors: tuple[int, ...] = ()
    # Answers with a schema of their own, such as /health's 503 with the health document.
    responses: Mapping[int, Schema] = field(default_factory=dict)
    # A WebSocket route also accepts a session token (`?token=`), since browsers cannot set
    # headers on the handshake.
    websocket: bool = False
    # With `stream: true` in its body the route answers with Server-Sent Events instead.
    streams: bool = False
    tag: str = "gateway"
    # The shape its errors take: ATOM's own, or Anthropic's for the Anthropic-compatible API.
    error_shape: Shape = Shape.ATOM


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


async def authenticate(
    request: web.Request, services: Services, *, session_token: bool
) -> Principal:
    """The principal behind the request's key or session token; Unauthorized otherwise.

    A session token (sessions.py) is taken as a bearer credential on any route, and as
    `?token=` on a WebSocket route, since browsers cannot set headers on that handshake.
    A key or token unknown to the ring may have been made a moment ago by another process
    (`atom keys create`, another node): the ring reads the log up to its head before refusing.
    """
    credential = presented_key(request.headers)
    if credential is None and session_token:
        credential = request.query.get("token") or None
        if credential is not None and not is_session_token(credential):
            raise Unauthorized("the session token is invalid or has expired")
    if credential is None:
        raise Unauthorized(
            "an API key is required: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )
    if is_session_token(credential):
        return await _session_principal(request, services, credential)
    record = services.keys.find(credential)
    if record is None and await services.projections.catch_up(timeout=CATCH_UP_S):
        record = services.keys.find(credential)
    if record is None:
        raise Unauthorized("unknown API key")
    principal = record.principal()
    if principal is None:
        raise Unauthorized("this API key has been revoked")
    return principal


async def _session_principal(request: web.Request, services: Services, token: str) -> Principal:
    session = services.keys.find_session(token, time.time())
    if session is None and await services.projections.catch_up(timeout=CATCH_UP_S):
        session = services.keys.find_session(token, time.time())
    if session is None:
        raise Unauthorized("the session token is invalid or has expired")
    principal = session.key.principal()
    if principal is None:
        raise Unauthorized("the session's API key has been revoked")
    request[SESSION] = session.session_id
    return principal


def require(principal: Principal, needed: Role) -> None:
    """Raise Forbidden unless the principal's role reaches `needed`."""
    if not permits(principal.role, needed):
        raise Forbidden(
            f"this route needs the {needed.label} role; the key is {principal.role.label}"
        )


async def read_json(request: web.Request, schema: Schema, limit: int) -> dict[str, Any]:
    """The request's JSON body, checked against `schema`; an empty body reads as {} (a body of
    blanks is not JSON, and is refused like any other)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the body is {request.content_length} bytes; the limit is {limit}")
    raw = await request.read()
    if len(raw) > limit:
        raise TooLarge(f"the body is over the limit of {limit} bytes")
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    validator(schema)(value)
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def read_query(request: web.Request, declared: Mapping[str, Schema]) -> dict[str, Any]:
    """The declared query parameters given, each converted to its schema's type and checked
    against it; BadRequest naming the parameter otherwise. Others are ignored."""
    values: dict[str, Any] = {}
    for name, schema in declared.items():
        raw = request.query.get(name)
        if raw is None:
            continue
        value: Any = raw
        if schema.get("type") == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise BadRequest(f"{name}: expected integer", field=name) from None
        validate(schema, value, name)
        values[name] = value
    return values


def guarded(route: Route) -> Handler:
    """The route's handler behind authentication, role, rate limit and body validation."""

    shape = route.error_shape

    async def handle(request: web.Request) -> web.StreamResponse:
        services = services_of(request)
        if shape is not Shape.ATOM:
            request[SHAPE] = shape
        if route.role is not None:
            principal = await authenticate(request, services, session_token=route.websocket)
            require(principal, route.role)
            services.limiter.check(principal.api_key_id)
            request[PRINCIPAL] = principal
        if route.query:
            request[QUERY] = read_query(request, route.query)
        if route.body is not None:
            request[BODY] = await read_json(request, route.body, services.limits.max_body_bytes)
        return await route.handler(request)

    return handle
