"""Route modules: each exposes ROUTES; an endpoint group is one module and one line below."""

from __future__ import annotations

from typing import Final

from ..routing import Route
from . import (
    admin,
    anthropic_compat,
    console,
    embeddings,
    health,
    insights,
    log,
    meta,
    models,
    observability,
    openai_compat,
    process,
    requests,
    session,
    streaming,
)

ROUTES: Final[tuple[Route, ...]] = (
    *health.ROUTES,
    *models.ROUTES,
    *process.ROUTES,
    *insights.ROUTES,
    *observability.ROUTES,
    *requests.ROUTES,
    *log.ROUTES,
    *openai_compat.ROUTES,
    *embeddings.ROUTES,
    *anthropic_compat.ROUTES,
    *session.ROUTES,
    *streaming.ROUTES,
    *meta.ROUTES,
    *admin.ROUTES,
    *console.ROUTES,
)
