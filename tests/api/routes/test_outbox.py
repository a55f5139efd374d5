"""The Outbox on a real server: bytes put from another task reach a slow client in order."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from api.routes._outbox import SSE_HEADERS, Outbox

PIECES = 3000
PIECE = 1000


def _piece(number: int) -> bytes:
    return f"{number:08d}".encode() + b"x" * (PIECE - 9) + b"\n"


async def _handler(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    # Small kernel buffers on both sides: the socket pauses, and the pieces wait in the Outbox.
    request.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 16384
    )
    outbox = Outbox(request, SSE_HEADERS)

    async def produce() -> None:
        # Bursts faster than the client reads: the socket pauses, the pieces queue, and
        # once the handler has caught up they are written from this task again.
        for number in range(PIECES):
            outbox.put(_piece(number))
            if number % 50 == 0:
                await asyncio.sleep(0.001)
        outbox.end()

    producer = asyncio.create_task(produce())
    await outbox.pump()
    await producer
    await outbox.response.write_eof()
    return outbox.response


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/", _handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


def _small_socket(address: tuple[int, int, int, str, tuple[str, int]]) -> socket.socket:
    family, kind, protocol, _, _ = address
    sock = socket.socket(family=family, type=kind, proto=protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_a_slow_reader_gets_every_piece_in_order(url: str) -> None:
    received = bytearray()
    connector = aiohttp.TCPConnector(socket_factory=_small_socket)
    async with aiohttp.ClientSession(connector=connector) as http, http.get(url) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        async for data in response.content.iter_chunked(4096):
            received += data
            await asyncio.sleep(0.0005)
    assert bytes(received) == b"".join(_piece(n) for n in range(PIECES))
