"""The streaming WebSocket: a client subscribes to hub topics and receives their events."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import orjson
from aiohttp import WSMsgType, web

from .errors import BadRequest
from .hub import StreamHub, Subscriber, TooManySubscriptions
from .validation import Schema, validate

PROTOCOL: Final = """\
Client messages are JSON text frames: `{"op": "subscribe", "topics": [...], "filter": {...}}`
(a filter keeps the events whose payload has each named field equal to the given value;
subscribing again to a topic replaces its filter, so no event arrives twice),
`{"op": "unsubscribe", "topics": [...]}` and `{"op": "ping"}`. The server sends
`{"type": "event", "topic", "payload"}` and answers `{"type": "subscribed" | "unsubscribed" |
"pong" | "error", ...}`, all in one ordered stream. A client that falls too far behind is
closed with code 4008 (slow consumer) instead of slowing anyone else; at shutdown, 1001.
The server also pings at the protocol level (heartbeat)."""

MAX_CLIENT_MESSAGE: Final = 64 * 1024

TOPIC: Final[Schema] = {"type": "string", "minLength": 1, "maxLength": 200}

CLIENT_MESSAGE: Final[Schema] = {
    "type": "object",
    "required": ["op"],
    "properties": {
        "op": {"enum": ["subscribe", "unsubscribe", "ping"]},
        "topics": {"type": "array", "minItems": 1, "maxItems": 100, "items": TOPIC},
        "filter": {"type": "object", "maxProperties": 32},
    },
}


class _Session:
    """One connection: the handler's task reads commands, a writer task drains the queue."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        hub: StreamHub,
        close_grace: float,
        audience: str | None,
    ) -> None:
        self._ws = ws
        self._hub = hub
        self._grace = close_grace
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._subscriber = hub.connect(self._closed_by_hub, audience)

    async def run(self) -> None:
        self._writer = asyncio.create_task(self._write(self._subscriber))
        try:
            async for message in self._ws:
                self._handle(message.type, message.data)
        finally:
            self._writer.cancel()
            self._hub.disconnect(self._subscriber)
            # wait(), not await: the writer's cancellation is expected, ours must propagate.
            await asyncio.wait({self._writer})
            if self._closing is not None:
                await self._closing

    def _closed_by_hub(self, code: int, reason: str) -> None:
        if self._ws.closed:
            return
        # The writer may be stuck on a client that reads nothing: stop it, then close.
        if self._writer is not None:
            self._writer.cancel()
        self._closing = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        # A close frame queues behind whatever the client has not read: give it a while,
        # after which aiohttp drops the connection.
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(self._grace):
                await self._ws.close(code=code, message=reason.encode())

    async def _write(self, subscriber: Subscriber) -> None:
        with contextlib.suppress(ConnectionError):
            while batch := await subscriber.take():
                for message in batch:
                    await self._ws.send_str(message)
                    self._hub.count_sent(subscriber, 1)

    def _handle(self, kind: WSMsgType, data: Any) -> None:
        try:
            if kind is not WSMsgType.TEXT:
                raise BadRequest("send JSON text frames")
            try:
                command = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"not valid JSON: {exc}") from None
            validate(CLIENT_MESSAGE, command)
            self._execute(command)
        except BadRequest as exc:
            error = {"type": exc.type, "message": exc.message, **exc.details()}
            self._hub.send(self._subscriber, {"type": "error", "error": error})

    def _execute(self, command: dict[str, Any]) -> None:
        op = command["op"]
        if op == "ping":
            self._hub.send(self._subscriber, {"type": "pong"})
            return
        topics = command.get("topics")
        if topics is None:
            raise BadRequest(f"{op} needs topics", field="topics")
        if op == "subscribe":
            try:
                self._hub.subscribe(self._subscriber, topics, command.get("filter", {}))
            except TooManySubscriptions as exc:
                raise BadRequest(str(exc), field="topics") from None
        else:
            self._hub.unsubscribe(self._subscriber, topics)
        self._hub.send(self._subscriber, {"type": f"{op}d", "topics": topics})


async def serve_socket(
    request: web.Request,
    hub: StreamHub,
    *,
    heartbeat: float,
    close_grace: float,
    audience: str | None,
) -> web.WebSocketResponse:
    """Upgrade the request and serve the connection until either side closes it; the client
    sees the news of `audience`'s requests (None: of every request)."""
    ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=MAX_CLIENT_MESSAGE)
    await ws.prepare(request)
    await _Session(ws, hub, close_grace, audience).run()
    return ws
