"""Errors as the API answers them, with their status, in one of two shapes.

ATOM's own routes and the OpenAI-compatible ones answer `{"error": {"type", "message",
"field"?}}`; the Anthropic-compatible routes answer Anthropic's `{"type": "error", "error":
{"type", "message", ...}}` with Anthropic's type names, so that its SDK raises the right
exception. Each class carries both names:

    class (status)           ATOM type         Anthropic type
    ApiError (500)           internal          api_error
    ├── BadRequest (400)     bad_request       invalid_request_error
    ├── Unauthorized (401)   unauthorized      authentication_error
    ├── PaymentRequired (402) budget_exceeded  billing_error
    ├── Forbidden (403)      forbidden         permission_error
    ├── NotFound (404)       not_found         not_found_error
    ├── TooLarge (413)       too_large         request_too_large
    ├── RateLimited (429)    rate_limited      rate_limit_error
    ├── UpstreamFailed (502) upstream_failed   api_error
    ├── Unavailable (503)    unavailable       overloaded_error
    └── GatewayTimeout (504) timeout           timeout_error
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from enum import Enum
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

ANTHROPIC_ERROR_SCHEMA: Final[Mapping[str, Any]] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"enum": ["error"]},
        "error": ERROR_SCHEMA["properties"]["error"],
    },
}
"""The JSON schema of an error body in Anthropic's shape."""


class Shape(Enum):
    """Which shape a route's errors take."""

    ATOM = "atom"
    ANTHROPIC = "anthropic"


SHAPE: Final = web.RequestKey("atom.error_shape", Shape)
"""Where a guarded route notes its errors' shape for the middleware."""


class ApiError(Exception):
    """An error the client is meant to see, answered with `status` and a JSON body."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal"
    anthropic_type: ClassVar[str] = "api_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Fields of the body beyond type and message."""
        return {}

    def headers(self) -> dict[str, str]:
        return {}

    def response(self, shape: Shape = Shape.ATOM) -> web.Response:
        if shape is Shape.ANTHROPIC:
            body = anthropic_error_body(self.anthropic_type, self.message, self.details())
            return web.Response(
                status=self.status,
                body=body,
                content_type="application/json",
                headers=self.headers(),
            )
        return error_response(self.status, self.type, self.message, self.details(), self.headers())


class BadRequest(ApiError):
    status = 400
    type = "bad_request"
    anthropic_type = "invalid_request_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def details(self) -> dict[str, Any]:
        return {} if self.field is None else {"field": self.field}


class Unauthorized(ApiError):
    status = 401
    type = "unauthorized"
    anthropic_type = "authentication_error"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="atom"'}


class PaymentRequired(ApiError):
    status = 402
    type = "budget_exceeded"
    anthropic_type = "billing_error"


class Forbidden(ApiError):
    status = 403
    type = "forbidden"
    anthropic_type = "permission_error"


class NotFound(ApiError):
    status = 404
    type = "not_found"
    anthropic_type = "not_found_error"


class TooLarge(ApiError):
    status = 413
    type = "too_large"
    anthropic_type = "request_too_large"


class RateLimited(ApiError):
    status = 429
    type = "rate_limited"
    anthropic_type = "rate_limit_error"

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
    anthropic_type = "api_error"

    def __init__(self, message: str, *, tried: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.tried = list(tried)

    def details(self) -> dict[str, Any]:
        return {"tried": self.tried}


class Unavailable(ApiError):
    status = 503
    type = "unavailable"
    anthropic_type = "overloaded_error"


class GatewayTimeout(ApiError):
    status = 504
    type = "timeout"
    anthropic_type = "timeout_error"


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


def anthropic_error_body(
    type_: str, message: str, details: Mapping[str, Any] | None = None
) -> bytes:
    error = {"type": type_, "message": message, **(details or {})}
    return orjson.dumps({"type": "error", "error": error})


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


_ANTHROPIC_HTTP_TYPES: Final = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def _from_http(exc: web.HTTPException, shape: Shape) -> web.Response:
    kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    message = exc.reason
    if exc.status == 404:
        message = "no such route"
    elif exc.status == 405:
        message = f"method not allowed; allowed: {kept.get('Allow', '')}"
    elif exc.text and not exc.text.startswith(f"{exc.status}:"):
        message = exc.text
    if shape is Shape.ANTHROPIC:
        kind = "api_error" if exc.status >= 500 else "invalid_request_error"
        body = anthropic_error_body(_ANTHROPIC_HTTP_TYPES.get(exc.status, kind), message)
        return web.Response(
            status=exc.status, body=body, content_type="application/json", headers=kept
        )
    type_ = _HTTP_TYPES.get(exc.status, "internal" if exc.status >= 500 else "bad_request")
    return error_response(exc.status, type_, message, headers=kept)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as the JSON error shape, and never with an HTML page."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response(request.get(SHAPE, Shape.ATOM))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http(exc, request.get(SHAPE, Shape.ATOM))
    except StoreClosed:
        error: ApiError = Unavailable("the event log is closed: the server is shutting down")
    except EventStoreError as exc:
        # Nothing may be answered that is not on the record, so a failed write fails the call.
        log.error("event log write failed on %s %s: %s", request.method, request.path, exc)
        error = Unavailable("the event log refused the write")
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", incident, request.method, request.path)
        error = ApiError(f"internal error (incident {incident})")
    return error.response(request.get(SHAPE, Shape.ATOM))
