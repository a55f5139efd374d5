"""Streaming: the hub's counters, operator broadcasts, and the WebSocket."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from atom_actors.events import StreamEventPublished

from ..auth import Role
from ..errors import BadRequest
from ..hub import is_system_topic
from ..routing import BODY, PRINCIPAL, Route, json_response
from ..services import services_of
from ..ws import PROTOCOL, TOPIC, serve_socket


def broadcast_stream(topic: str) -> str:
    return f"broadcast-{topic}"


STATUS: Final = {
    "type": "object",
    "required": [
        "connections",
        "subscriptions",
        "messages_published",
        "messages_sent",
        "messages_dropped",
        "slow_clients_cut",
    ],
    "properties": {
        "connections": {"type": "integer"},
        "subscriptions": {"type": "object", "additionalProperties": {"type": "integer"}},
        "messages_published": {"type": "integer"},
        "messages_sent": {"type": "integer"},
        "messages_dropped": {"type": "integer"},
        "slow_clients_cut": {"type": "integer"},
    },
}

EVENT: Final = {
    "type": "object",
    "required": ["topic", "payload"],
    "additionalProperties": False,
    "properties": {"topic": TOPIC, "payload": {"type": "object"}},
}

PUBLISHED: Final = {
    "type": "object",
    "required": ["topic", "position", "delivered"],
    "properties": {
        "topic": {"type": "string"},
        "position": {"type": "integer", "description": "the event's position in the log"},
        "delivered": {"type": "integer", "description": "subscribers it was queued for"},
    },
}


async def streaming_status(request: web.Request) -> web.Response:
    hub, principal = services_of(request).hub, request[PRINCIPAL]
    # Another tenancy's connections and topics (tokens:<request id>) are its own business.
    stats = hub.stats() if principal.sees_all else hub.stats_of(principal.tenancy)
    return json_response(stats.to_dict())


async def publish_event(request: web.Request) -> web.Response:
    services = services_of(request)
    body, key_id = request[BODY], request[PRINCIPAL].key_id
    topic, payload = body["topic"], body["payload"]
    if is_system_topic(topic):
        raise BadRequest(
            f"topic {topic!r} is the gateway's own (requests, tokens:*): "
            "broadcast on a topic of your own",
            field="topic",
        )
    event = StreamEventPublished(topic=topic, payload=payload, by=key_id)
    # On the record before anyone hears of it.
    [position] = await services.store.append_async(
        broadcast_stream(topic), [event.new(api_key_id=key_id)]
    )
    delivered = services.hub.publish(topic, payload)
    return json_response({"topic": topic, "position": position, "delivered": delivered}, 202)


async def streaming_ws(request: web.Request) -> web.WebSocketResponse:
    services = services_of(request)
    principal = request[PRINCIPAL]
    # Operators watch every request; anyone else only their own tenancy's.
    audience = None if principal.sees_all else principal.tenancy
    return await serve_socket(
        request,
        services.hub,
        heartbeat=services.limits.ws_heartbeat_s,
        close_grace=services.limits.ws_close_grace_s,
        audience=audience,
        store=services.store,
    )


ROUTES: Final = (
    Route(
        "GET",
        "/api/advanced-ai/streaming/status",
        streaming_status,
        role=Role.VIEWER,
        summary="Streaming hub counters",
        description="Connections, subscriptions per topic, messages sent and dropped, slow "
        "clients cut.",
        response=STATUS,
        tag="streaming",
    ),
    Route(
        "POST",
        "/api/advanced-ai/streaming/events",
        publish_event,
        role=Role.OPERATOR,
        summary="Broadcast an event to a topic's subscribers",
        description="Records StreamEventPublished in stream `broadcast-<topic>`, then queues "
        "the payload for the topic's subscribers whose filter it passes.",
        body=EVENT,
        response=PUBLISHED,
        status=202,
        errors=(503,),
        tag="streaming",
    ),
    Route(
        "GET",
        "/api/advanced-ai/streaming/ws",
        streaming_ws,
        role=Role.VIEWER,
        summary="WebSocket: subscribe to topics",
        description=PROTOCOL,
        websocket=True,
        tag="streaming",
    ),
)
