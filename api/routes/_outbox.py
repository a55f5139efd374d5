"""A streamed answer's way out: the bytes its callbacks produce, in order, to the client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Final, TypeVar

from aiohttp import web

SSE_HEADERS: Final = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}

_T = TypeVar("_T")


class Outbox:
    """The bytes of one streamed response, written in the order `put` is called.

    The handler's task runs `pump`: it opens the response with the first bytes and writes
    what queues while the socket is slow. Once it has caught up, `put` writes at once from
    the task that produced the bytes (a model call's, for a token), so that a token wakes
    that one task and not the handler's too (docs/architecture.md, "Where a token's
    microseconds go"). Whatever is queued goes before anything written at once.
    """

    def __init__(self, request: web.Request, headers: Mapping[str, str]) -> None:
        self._request = request
        self.response = web.StreamResponse(headers=headers)
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        # The socket, while writing at once keeps the order: nothing queued, nothing paused.
        self._transport: asyncio.Transport | None = None
        self._chunked = False

    def put(self, data: bytes) -> None:
        """Send `data` after everything put before it."""
        transport = self._transport
        if transport is not None:
            if not self._request.protocol.writing_paused and not transport.is_closing():
                transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
                return
            self._transport = None
        self._queue.put_nowait(data)

    def end(self) -> None:
        """Say that nothing more will be put: `pump` returns once the rest is written."""
        self._transport = None
        self._queue.put_nowait(None)

    async def serve(self, producing: Awaitable[_T]) -> _T:
        """Run `producing` in a task of its own, writing what it puts meanwhile; its result
        (or its exception) once all it put is written. A client that goes away cancels it."""

        async def produce() -> _T:
            try:
                return await producing
            finally:
                self.end()

        producer = asyncio.create_task(produce())
        try:
            await self.pump()
        finally:
            producer.cancel()
        return producer.result()

    async def pump(self) -> None:
        """Write what is put until `end`, opening the response with the first bytes."""
        response = self.response
        while (data := await _taken(self._queue)) is not None:
            if not response.prepared:
                await response.prepare(self._request)
            await response.write(data)
            if self._queue.empty() and not response.compression:
                # The headers are out with the first write; from here on the framing is ours.
                self._chunked = response.headers.get("Transfer-Encoding") == "chunked"
                self._transport = self._request.transport


async def _taken(queue: asyncio.Queue[bytes | None]) -> bytes | None:
    """The queue's next bytes, joined with the bytes queued behind them, so that what came
    while the client's last write was under way goes out in one write."""
    data = await queue.get()
    if data is None or queue.empty():
        return data
    parts = [data]
    while not queue.empty():
        following = queue.get_nowait()
        if following is None:
            queue.put_nowait(None)  # the end goes back: nothing was put after it
            break
        parts.append(following)
    return b"".join(parts)
