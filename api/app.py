"""The aiohttp application: routes behind their guards, middlewares, and the services' lifecycle."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from .errors import error_middleware
from .metrics import http_middleware
from .openapi import document
from .routes import ROUTES
from .routes.meta import OPENAPI
from .routing import Route, guarded
from .services import SERVICES, Services


def create_app(services: Services, routes: Sequence[Route] = ROUTES) -> web.Application:
    """An application serving `routes` with `services`; start and stop it like any aiohttp app."""
    app = web.Application(
        middlewares=[http_middleware(services.metrics), error_middleware],
        client_max_size=services.limits.max_body_bytes,
    )
    app[SERVICES] = services
    app[OPENAPI] = document(routes)
    for route in routes:
        app.router.add_route(route.method, route.path, guarded(route))
    app.on_startup.append(_start)
    app.on_shutdown.append(_close_streams)
    app.on_cleanup.append(_clean_up)
    return app


async def _start(app: web.Application) -> None:
    for hook in app[SERVICES].on_startup:
        await hook()


async def _close_streams(app: web.Application) -> None:
    # WebSockets would hold the graceful shutdown for its whole grace period.
    app[SERVICES].hub.close_all()


async def _clean_up(app: web.Application) -> None:
    for hook in reversed(app[SERVICES].on_cleanup):
        await hook()
