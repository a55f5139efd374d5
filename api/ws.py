"""The streaming WebSocket: a client subscribes to hub topics and receives their events."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any, Final

import orjson
from aiohttp import WSMsgType, web

from eventstore import EventStore

from .errors import BadRequest
from .hub import StreamHub, Subscriber, TooManySubscriptions
from .logfeed import LogFeed, is_log_topic
from .validation import Schema, validate

PROTOCOL: Final = """\
Client messages are JSON text frames: `{"op": "subscribe", "topics": [...], "filter": {...}}`
(a filter keeps the events whose payload has each named field equal to the given value;
subscribing again to a topic replaces its filter, so no event arrives twice),
`{"op": "unsubscribe", "topics": [...]}` and `{"op": "ping"}`. The server sends
`{"type": "event", "topic", "payload"}` and answers `{"type": "subscribed" | "unsubscribed" |
"pong" | "error", ...}`, all in one ordered stream. A client that falls too far behind is
closed with code 4008 (slow consumer) instead of slowing anyone else; at shutdown, 1001.
The server also pings at the protocol level (heartbeat).

Topics: `requests` (every request's states), `tokens:<request id>` (its tokens as they are
generated), `figures` (the log position the figures have reached, at most once a second
and only when it moved: read the figures again then) and any operator topic. With
`"from_position": N` on subscribe, `requests` and `tokens:<id>` are served from the log:
every item recorded after position N, then each new one once committed, in log order, each
once, as `{"type": "events", "topic", "payloads": [...]}` (the items of one page of the log),
each payload with its `position` (a request's row as GET /requests gives it; a batch of
tokens: `call_id`, `seq`, `deltas` of [text, ms]); `{"type": "position", "position"}` now
and then says how far the log has been read when nothing was for you. Reconnect and
subscribe from the last position you saw to miss nothing and get nothing twice."""

MAX_CLIENT_MESSAGE: Final = 64 * 1024
# What the kernel may hold of a connection's unsent frames (it doubles this for its own use).
SEND_BUFFER_BYTES: Final = 128 * 1024

TOPIC: Final[Schema] = {"type": "string", "minLength": 1, "maxLength": 200}

CLIENT_MESSAGE: Final[Schema] = {
    "type": "object",
    "required": ["op"],
    "properties": {
        "op": {"enum": ["subscribe", "unsubscribe", "ping"]},
        "topics": {"type": "array", "minItems": 1, "maxItems": 100, "items": TOPIC},
        "filter": {"type": "object", "maxProperties": 32},
        "from_position": {"type": "integer", "minimum": 0},
    },
}


_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
_TEXT_FIN = 0x81


def text_frames(messages: list[str]) -> bytes:
    """Final, unmasked, uncompressed text frames (RFC 6455 5.2), as a server sends them."""
    parts: list[bytes] = []
    for message in messages:
        data = message.encode()
        size = len(data)
        if size < 126:
            parts.append(_SHORT.pack(_TEXT_FIN, size))
        elif size < 65536:
            parts.append(_MEDIUM.pack(_TEXT_FIN, 126, size))
        else:
            parts.append(_LONG.pack(_TEXT_FIN, 127, size))
        parts.append(data)
    return b"".join(parts)


class _Session:
    """One connection: the handler's task reads commands, a writer task drains the queue."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        hub: StreamHub,
        close_grace: float,
        audience: str | None,
        store: EventStore,
    ) -> None:
        self._request = request
        self._ws = ws
        self._hub = hub
        self._grace = close_grace
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._subscriber = hub.connect(self._closed_by_hub, audience)
        self._feed = LogFeed(store, hub, self._subscriber, audience)

    async def run(self) -> None:
        self._writer = asyncio.create_task(self._write(self._subscriber))
        try:
            async for message in self._ws:
                await self._handle(message.type, message.data)
        finally:
            self._writer.cancel()
            await self._feed.close()
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
                if len(batch) == 1:
                    await self._ws.send_str(batch[0])
                else:
                    await self._write_many(batch)
                self._hub.count_sent(subscriber, len(batch))

    async def _write_many(self, batch: list[str]) -> None:
        """The batch's frames in one write: a frame a write was most of a busy server's time
        with 200 subscribers (one send each), and what falls behind comes in batches."""
        transport = self._request.transport
        if self._ws.closed or transport is None or transport.is_closing():
            raise ConnectionResetError("the WebSocket is closing")
        # Whole frames, with no await in between: aiohttp's own frames (pings, the close)
        # never land inside one of these.
        transport.write(text_frames(batch))
        protocol = self._request.protocol
        if protocol.writing_paused:
            # The client reads slower than we write: wait, as send_str would, so that the
            # backlog stays in the subscriber's bounded queue, where the hub sees it.
            await protocol._drain_helper()

    async def _handle(self, kind: WSMsgType, data: Any) -> None:
        try:
            if kind is not WSMsgType.TEXT:
                raise BadRequest("send JSON text frames")
            try:
                command = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"not valid JSON: {exc}") from None
            validate(CLIENT_MESSAGE, command)
            await self._execute(command)
        except BadRequest as exc:
            error = {"type": exc.type, "message": exc.message, **exc.details()}
            self._hub.send(self._subscriber, {"type": "error", "error": error})

    async def _execute(self, command: dict[str, Any]) -> None:
        op = command["op"]
        if op == "ping":
            self._hub.send(self._subscriber, {"type": "pong"})
            return
        topics = command.get("topics")
        if topics is None:
            raise BadRequest(f"{op} needs topics", field="topics")
        after = command.get("from_position")
        if op == "subscribe" and after is not None:
            if not all(is_log_topic(topic) for topic in topics):
                raise BadRequest(
                    "from_position serves the log's topics only: requests and tokens:<id>",
                    field="from_position",
                )
            if len(self._feed.topics | set(topics)) > self._hub.max_topics:
                raise BadRequest(
                    f"a connection may subscribe to {self._hub.max_topics} topics",
                    field="topics",
                )
            # One source per topic: from the log now, so not from the hub as well.
            self._hub.unsubscribe(self._subscriber, topics)
            self._hub.send(self._subscriber, {"type": "subscribed", "topics": topics})
            await self._feed.subscribe(topics, int(after), command.get("filter", {}))
            return
        if op == "subscribe":
            try:
                self._hub.subscribe(self._subscriber, topics, command.get("filter", {}))
            except TooManySubscriptions as exc:
                raise BadRequest(str(exc), field="topics") from None
        else:
            self._hub.unsubscribe(self._subscriber, topics)
        self._feed.unsubscribe(topics)
        self._hub.send(self._subscriber, {"type": f"{op}d", "topics": topics})


async def serve_socket(
    request: web.Request,
    hub: StreamHub,
    *,
    heartbeat: float,
    close_grace: float,
    audience: str | None,
    store: EventStore,
) -> web.WebSocketResponse:
    """Upgrade the request and serve the connection until either side closes it; the client
    sees the news of `audience`'s requests (None: of every request), live from the hub or
    from `store`'s log."""
    # No permessage-deflate: the server is bound by one GIL, and compressing every frame of a
    # busy feed cost it more than sending the bytes (seen with a console open under load).
    ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=MAX_CLIENT_MESSAGE, compress=False)
    await ws.prepare(request)
    _bound_send_buffer(request)
    await _Session(request, ws, hub, close_grace, audience, store).run()
    return ws


def _bound_send_buffer(request: web.Request) -> None:
    """Keep the kernel's send buffer small, so that a client that stops reading fills its
    subscriber's queue in seconds: autotuned, the kernel held megabytes of a feed before the
    hub saw any backlog (seen: a reader of nothing not cut within 10 s at 540 KB/s)."""
    sock = None if request.transport is None else request.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
