"""Route modules: each exposes ROUTES; an endpoint group is one module and one line below."""

from __future__ import annotations

from typing import Final

from ..routing import Route
from . import health, meta, session, streaming

ROUTES: Final[tuple[Route, ...]] = (
    *health.ROUTES,
    *session.ROUTES,
    *streaming.ROUTES,
    *meta.ROUTES,
)
