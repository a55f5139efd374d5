"""The API describing itself: the OpenAPI document and Prometheus metrics."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from ..auth import Role
from ..metrics import CONTENT_TYPE
from ..routing import Route, json_response
from ..services import services_of

OPENAPI: Final = web.AppKey("atom.openapi", dict[str, Any])


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        text=services_of(request).metrics.render(), headers={"Content-Type": CONTENT_TYPE}
    )


ROUTES: Final = (
    Route(
        "GET",
        "/api/advanced-ai/openapi.json",
        openapi,
        role=Role.VIEWER,
        summary="This document",
        response={"type": "object", "required": ["openapi", "paths"]},
        tag="operations",
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        # Every tenant's traffic together: an operator's figures.
        role=Role.OPERATOR,
        summary="Prometheus metrics",
        description="HTTP requests by route and status, their latency, the hub's and the "
        "log's counters, in the Prometheus text format 0.0.4.",
        response={"type": "string"},
        content_type="text/plain",
        tag="operations",
    ),
)
