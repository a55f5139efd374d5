"""The log's integrity: its head and chain tip, the last verification, and running one."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from ..auth import Role
from ..routing import PRINCIPAL, Route, json_response
from ..services import services_of

VERIFICATION: Final = {
    "type": "object",
    "required": ["ok", "head", "head_hash", "events", "streams", "position"],
    "properties": {
        "ok": {"type": "boolean"},
        "head": {"type": "integer"},
        "head_hash": {"type": "string"},
        "events": {"type": "integer"},
        "streams": {"type": "integer"},
        "first_bad_position": {"type": ["integer", "null"]},
        "problem": {"type": ["string", "null"]},
        "seconds": {"type": "number"},
        "by": {"type": ["string", "null"], "description": "the key that asked"},
        "position": {"type": "integer", "description": "where LogVerified was recorded"},
    },
}

NOTHING: Final = {"type": "object", "additionalProperties": False, "properties": {}}

STATUS: Final = {
    "type": "object",
    "required": ["head", "chain_tip", "last_verification", "verifying"],
    "properties": {
        "head": {"type": "integer"},
        "chain_tip": {"type": ["string", "null"], "description": "the head event's hash"},
        "head_recorded_at": {"type": ["string", "null"]},
        "last_verification": {"oneOf": [VERIFICATION, {"type": "null"}]},
        "verifying": {"type": "boolean"},
    },
}


async def log_status(request: web.Request) -> web.Response:
    return json_response(await services_of(request).audit.status())


async def verify_log(request: web.Request) -> web.Response:
    services = services_of(request)
    return json_response(await services.audit.verify(request[PRINCIPAL].api_key_id))


ROUTES: Final = (
    Route(
        "GET",
        "/api/advanced-ai/log",
        log_status,
        role=Role.VIEWER,
        summary="The log's head, chain tip and last verification",
        response=STATUS,
        tag="log",
    ),
    Route(
        "POST",
        "/api/advanced-ai/log/verify",
        verify_log,
        role=Role.OPERATOR,
        summary="Verify the whole log now (positions, stream versions, the hash chain)",
        description="Reads every event, as `atom replay verify` does, and records the result "
        "as LogVerified in stream `log-verifications`; one verification runs at a time.",
        body=NOTHING,
        response=VERIFICATION,
        tag="log",
    ),
)
