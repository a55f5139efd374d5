"""Errors as the API answers them: `{"error": {"type", "message", "field"?}}` with their status."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from eventstore import EventStoreError, StoreClosed

log = logging.getLogger("atom.api")

ERROR_SCHEMA: Final[Mapping[str, Any]] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
                "retry_after": {"type": "integer"},
                "tried": {"type": "array", "items": {"type": "string"}},
            },
        }
    },
}
"""The JSON schema of every error body, for the OpenAPI document."""


class ApiError(Exception):
    """An error the client is meant to see, answered with `status` and a JSON body."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Fields of the body beyond type and message."""
        return {}

    def headers(self) -> dict[str, str]:
        return {}

    def response(self) -> web.Response:
        return error_response(self.status, self.type, self.message, self.details(), self.headers())


class BadRequest(ApiError):
    status = 400
    type = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def details(self) -> dict[str, Any]:
        return {} if self.field is None else {"field": self.field}


class Unauthorized(ApiError):
    status = 401
    type = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="atom"'}


class PaymentRequired(ApiError):
    status = 402
    type = "budget_exceeded"


class Forbidden(ApiError):
    status = 403
    type = "forbidden"


class NotFound(ApiError):
    status = 404
    type = "not_found"


class TooLarge(ApiError):
    status = 413
    type = "too_large"


class RateLimited(ApiError):
    status = 429
    type = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        # Retry-After is whole seconds; rounding down would invite a retry that fails again.
        self.retry_after = max(1, math.ceil(retry_after))

    def details(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamFailed(ApiError):
    status = 502
    type = "upstream_failed"

    def __init__(self, message: str, *, tried: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.tried = list(tried)

    def details(self) -> dict[str, Any]:
        return {"tried": self.tried}


class Unavailable(ApiError):
    status = 503
    type = "unavailable"


class GatewayTimeout(ApiError):
    status = 504
    type = "timeout"


_HTTP_TYPES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    502: "upstream_failed",
    503: "unavailable",
    504: "timeout",
}


def error_body(type_: str, message: str, details: Mapping[str, Any] | None = None) -> bytes:
    return orjson.dumps({"error": {"type": type_, "message": message, **(details or {})}})


def error_response(
    status: int,
    type_: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(type_, message, details),
        content_type="application/json",
        headers=headers,
    )


def _from_http(exc: web.HTTPException) -> web.Response:
    kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    message = exc.reason
    if exc.status == 404:
        message = "no such route"
    elif exc.status == 405:
        message = f"method not allowed; allowed: {kept.get('Allow', '')}"
    elif exc.text and not exc.text.startswith(f"{exc.status}:"):
        message = exc.text
    type_ = _HTTP_TYPES.get(exc.status, "internal" if exc.status >= 500 else "bad_request")
    return error_response(exc.status, type_, message, headers=kept)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as the JSON error shape, and never with an HTML page."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http(exc)
    except StoreClosed:
        return Unavailable("the event log is closed: the server is shutting down").response()
    except EventStoreError as exc:
        # Nothing may be answered that is not on the record, so a failed write fails the call.
        log.error("event log write failed on %s %s: %s", request.method, request.path, exc)
        return Unavailable("the event log refused the write").response()
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", incident, request.method, request.path)
        return error_response(500, "internal", f"internal error (incident {incident})")
