"""Sign-in and sign-out for browsers: POST and DELETE /api/advanced-ai/auth/session."""

from __future__ import annotations

import time
from typing import Final

from aiohttp import web

from ..auth import Role
from ..errors import BadRequest, Unavailable
from ..routing import BODY, PRINCIPAL, SESSION, Route, json_response
from ..services import services_of
from ..sessions import end, session_stream, start

REQUEST: Final = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"minutes": {"type": "integer", "minimum": 1, "maximum": 1440}},
}

RESPONSE: Final = {
    "type": "object",
    "required": [
        "token",
        "session_id",
        "key_id",
        "role",
        "tenancy",
        "sees_all",
        "expires_at",
        "expires_in",
    ],
    "properties": {
        "token": {"type": "string"},
        "session_id": {"type": "string"},
        "key_id": {"type": "string"},
        "role": {"enum": ["viewer", "user", "operator", "admin"]},
        "tenancy": {"type": "string", "description": "whose requests and figures it sees"},
        "sees_all": {"type": "boolean", "description": "operators and admins see every tenancy"},
        "expires_at": {"type": "integer", "description": "Unix seconds"},
        "expires_in": {"type": "integer", "description": "seconds"},
    },
}

ENDED: Final = {
    "type": "object",
    "required": ["session_id", "ended"],
    "properties": {"session_id": {"type": "string"}, "ended": {"type": "boolean"}},
}

KEY_RING_WAIT_S: Final = 5.0


async def create_session(request: web.Request) -> web.Response:
    services = services_of(request)
    principal = request[PRINCIPAL]
    minutes = int(request[BODY].get("minutes", services.limits.session_minutes))
    key_id = principal.api_key_id
    expires_at = int(time.time()) + 60 * minutes
    session = start(key_id, expires_at)
    [position] = await services.store.append_async(
        session_stream(session.session_id), [session.event]
    )
    # The token works once the ring has folded its session: before the answer goes out.
    if not await services.keys.wait_for(position, KEY_RING_WAIT_S):
        raise Unavailable("the key ring did not catch up with the new session")
    return json_response(
        {
            "token": session.token,
            "session_id": session.session_id,
            "key_id": key_id,
            "role": principal.role.label,
            "tenancy": principal.tenancy,
            "sees_all": principal.sees_all,
            "expires_at": expires_at,
            "expires_in": 60 * minutes,
        }
    )


async def end_session(request: web.Request) -> web.Response:
    services = services_of(request)
    session_id = request.get(SESSION)
    if session_id is None:
        raise BadRequest("sign out with the session's token: this request was made with a key")
    key_id = request[PRINCIPAL].api_key_id
    [position] = await services.store.append_async(
        session_stream(session_id), [end(session_id, key_id)]
    )
    await services.keys.wait_for(position, KEY_RING_WAIT_S)
    return json_response({"session_id": session_id, "ended": True})


ROUTES: Final = (
    Route(
        "POST",
        "/api/advanced-ai/auth/session",
        create_session,
        role=Role.VIEWER,
        summary="Sign in: a short-lived session token for the key",
        description=(
            "Returns a token that stands for the calling key (or session) for `minutes` "
            "(default 15): a browser sends it as `Authorization: Bearer <token>` and opens "
            "`/api/advanced-ai/streaming/ws?token=<token>` with it, since browsers cannot set "
            "headers on a WebSocket handshake, so the page never keeps the key. The session "
            "is recorded in the log (the token's sha256, never the token): it works on every "
            "node and after a restart, and stops at its expiry, at sign-out, or at once when "
            "its key is revoked. A session's token may ask for the next one before it expires."
        ),
        body=REQUEST,
        response=RESPONSE,
        errors=(503,),
        tag="auth",
    ),
    Route(
        "DELETE",
        "/api/advanced-ai/auth/session",
        end_session,
        role=Role.VIEWER,
        summary="Sign out: end the session whose token makes this request",
        description="Records SessionEnded; the token is refused from then on, on every node. "
        "A request made with an API key has no session to end: 400.",
        response=ENDED,
        errors=(400,),
        tag="auth",
    ),
)
