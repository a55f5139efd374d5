"""What the model routes share: the gateway, its errors as API errors, SSE, read-your-writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web

from atom_actors.gateway import Gateway
from atom_actors.providers import ToolCallDelta
from atom_actors.request import GatewayError, ProcessResult, TokenSink, ToolCallEvents

from ..errors import (
    ApiError,
    BadRequest,
    GatewayTimeout,
    NotFound,
    PaymentRequired,
    Unavailable,
    UpstreamFailed,
    error_body,
)
from ..routing import PRINCIPAL
from ..services import services_of
from ._outbox import SSE_HEADERS, Outbox


def gateway_of(request: web.Request) -> Gateway:
    gateway = services_of(request).gateway
    if gateway is None:
        raise Unavailable("this server runs no models")
    return gateway


GATEWAY_ERRORS: Final = (402, 404, 502, 503, 504)
"""The statuses a route answers with when the gateway fails its request (see api_error);
400 is every route's already."""


def failure(request: web.Request, error: GatewayError) -> ApiError:
    """Note a failed request as the caller's last write; the API error to answer with."""
    remember(request, error)
    return api_error(error)


def api_error(error: GatewayError) -> ApiError:
    """The API error a gateway failure is answered with."""
    message = error.message
    if error.request_id:
        message = f"{message} (request {error.request_id})"
    if error.status == 400:
        return BadRequest(message, field=error.field)
    if error.status == 402:
        return PaymentRequired(message)
    if error.status == 404:
        return _NotFoundField(message, error.field)
    if error.status == 504:
        return GatewayTimeout(message)
    if error.status == 503:
        return Unavailable(message)
    return UpstreamFailed(message, tried=error.tried)


class _NotFoundField(NotFound):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field

    def details(self) -> dict[str, Any]:
        return {} if self.field is None else {"field": self.field}


def remember(request: web.Request, outcome: ProcessResult | GatewayError) -> None:
    """Note the caller's last write (an answer or a failure), for `?consistent=true` reads."""
    if outcome.position:
        services_of(request).last_writes[request[PRINCIPAL].api_key_id] = outcome.position


async def consistent(request: web.Request) -> None:
    """With `?consistent=true`, wait until the projections include the caller's last write."""
    if request.query.get("consistent", "false").lower() not in ("1", "true", "yes"):
        return
    services = services_of(request)
    position = services.last_writes.get(request[PRINCIPAL].api_key_id, 0)
    if services.projections is not None and not await services.projections.wait_until(
        position, timeout=10
    ):
        raise GatewayTimeout("the projections did not catch up with your last write in 10 s")


def error_json(error: ApiError) -> bytes:
    return error_body(error.type, error.message, error.details())


def _flat(piece: ToolCallDelta) -> dict[str, Any]:
    """A tool-call piece as a `tool_call` event's fields: index, id and name when it has them,
    arguments always."""
    data: dict[str, Any] = {"index": piece.index}
    if piece.id is not None:
        data["id"] = piece.id
    if piece.name is not None:
        data["name"] = piece.name
    data["arguments"] = piece.arguments
    return data


def sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def stream_sse(
    request: web.Request,
    run: Callable[[TokenSink, ToolCallEvents], Awaitable[dict[str, Any]]],
) -> web.StreamResponse:
    """Answer with Server-Sent Events: `token` and `tool_call` events as they come, then
    `done` or `error`.

    The response opens with the first event, so a request refused before any token gets its
    own status and JSON error. `done` is sent only once `run` has returned, that is after the
    request's events are committed.
    """
    outbox = Outbox(request, SSE_HEADERS)

    def on_token(member: str, text: str, ms: float) -> None:
        outbox.put(sse("token", {"member": member, "text": text, "ms": round(ms, 3)}))

    def on_tool_call(member: str, piece: ToolCallDelta, ms: float) -> None:
        data = {"member": member, **_flat(piece), "ms": round(ms, 3)}
        outbox.put(sse("tool_call", data))

    response = outbox.response
    try:
        # A client that goes away cancels the request, and so the upstream call.
        done = await outbox.serve(run(on_token, on_tool_call))
    except GatewayError as exc:
        error = failure(request, exc)
        if not response.prepared:
            raise error from None
        await response.write(b"event: error\ndata: " + error_json(error) + b"\n\n")
    else:
        await response.prepare(request)
        await response.write(sse("done", done))
    await response.write_eof()
    return response
