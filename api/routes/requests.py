"""Requests as the log tells them: a page of recent ones, and one request's whole story.

Both are read from the log when asked for, scoped like every read: a viewer or user sees its
own tenancy's requests, operators and admins everyone's. Another tenancy's request is 404,
as if it did not exist.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from atom_actors.events import request_stream
from atom_actors.feed import STATES
from atom_actors.folding import tenancy_of_event
from atom_actors.trace import build

from ..auth import Role
from ..errors import BadRequest, NotFound
from ..recent import Wanted, recent
from ..routing import PRINCIPAL, QUERY, Route, json_response
from ..services import services_of
from ..validation import Schema

ROW: Final = {
    "type": "object",
    "required": ["request_id", "state", "position", "at", "tenancy"],
    "properties": {
        "request_id": {"type": "string"},
        "state": {"enum": sorted(STATES.values())},
        "position": {"type": "integer", "description": "the log position of this state"},
        "at": {"type": "string", "description": "when the log recorded it"},
        "tenancy": {"type": "string"},
        "model": {"type": ["string", "null"]},
        "strategy": {"type": ["string", "null"]},
        "cost_usd": {"type": "number"},
        "latency_ms": {"type": ["number", "null"]},
    },
}

PAGE: Final = {
    "type": "object",
    "required": ["requests", "position", "more_before"],
    "properties": {
        "requests": {"type": "array", "items": ROW},
        "position": {
            "type": "integer",
            "description": "the log position the page is true at: subscribe to `requests` "
            "on the WebSocket with this `from_position` to miss nothing after it",
        },
        "more_before": {
            "type": ["integer", "null"],
            "description": "pass as `before` for older requests (null: none left to scan)",
        },
    },
}

QUERY_PARAMETERS: Final[dict[str, Schema]] = {
    "since": {
        "type": "string",
        "maxLength": 40,
        "description": "only what the log recorded after this: a log position, or an ISO "
        "8601 time (UTC unless it says otherwise)",
    },
    "status": {"enum": sorted(STATES.values()), "description": "received means in flight"},
    "model": {"type": "string", "maxLength": 200},
    "limit": {"type": "integer", "minimum": 1, "maximum": 500, "description": "default 50"},
    "before": {
        "type": "integer",
        "minimum": 1,
        "description": "only positions before this (a previous page's more_before)",
    },
}

TRACE: Final = {
    "type": "object",
    "required": ["request_id", "outcome", "steps", "tokens", "reservations", "position"],
    "properties": {
        "request_id": {"type": "string"},
        "outcome": {"enum": ["completed", "failed", "unfinished"]},
        "steps": {"type": "array", "items": {"type": "object"}},
        "tokens": {"type": "object", "description": "by call id: count, timing, each token"},
        "reservations": {"type": "array", "items": {"type": "object"}},
        "unfinished_calls": {"type": "array", "items": {"type": "string"}},
        "position": {"type": "integer", "description": "the log position of its last event"},
        "tenancy": {"type": "string"},
    },
}


def _since(value: str | None) -> tuple[int, str | None]:
    """(position, time) from a `since` that is a log position or an ISO 8601 time."""
    if value is None:
        return 0, None
    if value.isascii() and value.isdigit():
        return int(value), None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"since: {value!r} is neither a log position nor an ISO 8601 time", field="since"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return 0, stamp.replace("+00:00", "Z")


async def list_requests(request: web.Request) -> web.Response:
    services, principal, query = services_of(request), request[PRINCIPAL], request[QUERY]
    since_position, since_time = _since(query.get("since"))
    page = await recent(
        services.store,
        Wanted(
            visible=principal.may_see,
            limit=query.get("limit", 50),
            status=query.get("status"),
            model=query.get("model"),
            before=query.get("before"),
            since_position=since_position,
            since_time=since_time,
        ),
    )
    return json_response(
        {"requests": page.rows, "position": page.position, "more_before": page.more_before}
    )


async def one_request(request: web.Request) -> web.Response:
    services, principal = services_of(request), request[PRINCIPAL]
    request_id = request.match_info["request_id"]
    events = await services.store.read_stream_async(request_stream(request_id))
    # Another tenancy's request is answered as one that does not exist.
    if not events or not principal.may_see(tenancy_of_event(events[0])):
        # Not even the id is said back: the answer is the same whoever's it might be.
        raise NotFound("no such request among those this key may see")
    trace = build(events, now=time.time(), each_token=True)
    body: dict[str, Any] = {
        **dataclasses.asdict(trace),
        "position": events[-1].position,
        "tenancy": tenancy_of_event(events[0]),
    }
    return json_response(body)


ROUTES: Final = (
    Route(
        "GET",
        "/api/advanced-ai/requests",
        list_requests,
        role=Role.VIEWER,
        summary="A page of recent requests, newest first",
        description="Each request as its newest event on the log leaves it (received, "
        "completed or failed), read from the log backwards from its head (or `before`) down "
        "to `since`; at most 100,000 events are looked at per call (`more_before` says where "
        "to go on). A tenant's key sees its tenancy's requests only.",
        query=QUERY_PARAMETERS,
        response=PAGE,
        tag="requests",
    ),
    Route(
        "GET",
        "/api/advanced-ai/requests/{request_id}",
        one_request,
        role=Role.VIEWER,
        summary="One request's story, as `atom replay trace --json --tokens` tells it",
        description="Every step in log order with its offset from the receipt (route "
        "candidates with their scores and exclusions, reservations, attempts, settlements "
        "with their rule, ensemble votes, scores, the answer), each call's tokens with their "
        "timing, and the reservations' fate. 404 for a request of another tenancy.",
        response=TRACE,
        errors=(404,),
        tag="requests",
    ),
)
