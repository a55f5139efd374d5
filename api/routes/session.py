"""POST /api/advanced-ai/auth/session: a short-lived token for the WebSocket handshake."""

from __future__ import annotations

import time
from typing import Final

from aiohttp import web

from ..auth import Role
from ..routing import BODY, PRINCIPAL, Route, json_response
from ..services import services_of

REQUEST: Final = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"minutes": {"type": "integer", "minimum": 1, "maximum": 1440}},
}

RESPONSE: Final = {
    "type": "object",
    "required": ["token", "key_id", "expires_at", "expires_in"],
    "properties": {
        "token": {"type": "string"},
        "key_id": {"type": "string"},
        "expires_at": {"type": "integer", "description": "Unix seconds"},
        "expires_in": {"type": "integer", "description": "seconds"},
    },
}


async def create_session(request: web.Request) -> web.Response:
    services = services_of(request)
    minutes = int(request[BODY].get("minutes", services.limits.session_minutes))
    key_id = request[PRINCIPAL].api_key_id
    expires_at = int(time.time()) + 60 * minutes
    return json_response(
        {
            "token": services.sessions.issue(key_id, expires_at),
            "key_id": key_id,
            "expires_at": expires_at,
            "expires_in": 60 * minutes,
        }
    )


ROUTES: Final = (
    Route(
        "POST",
        "/api/advanced-ai/auth/session",
        create_session,
        role=Role.VIEWER,
        summary="Issue a session token for the WebSocket",
        description=(
            "Returns a token that stands for the calling key for `minutes` (default 15): open "
            "`/api/advanced-ai/streaming/ws?token=<token>` with it, since browsers cannot set "
            "headers on a WebSocket handshake. Tokens are signed with a secret drawn when the "
            "server starts, so a restart ends them; a revoked key's tokens stop working at once."
        ),
        body=REQUEST,
        response=RESPONSE,
        tag="auth",
    ),
)
