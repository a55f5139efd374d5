"""The streaming WebSocket on a real server: handshake auth, order, slow clients, shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest

from api.auth import Role
from api.hub import CLOSE_SLOW_CONSUMER
from api.keys import revoke
from api.services import Limits
from api.ws import text_frames
from tests.api.conftest import Api, StartApi, bearer


async def _session_token(api: Api, role: Role = Role.VIEWER, **body: float) -> str:
    status, session, _ = await api.call(
        "POST", "/api/advanced-ai/auth/session", key=api.keys[role], json=body
    )
    assert status == 200
    token: str = session["token"]
    return token


async def _subscribe(ws: aiohttp.ClientWebSocketResponse, *topics: str, **filter_: object) -> None:
    await ws.send_json({"op": "subscribe", "topics": list(topics), "filter": filter_})
    assert await ws.receive_json(timeout=5) == {"type": "subscribed", "topics": list(topics)}


async def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_handshake_needs_a_key_or_a_session_token(api: Api) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.http.ws_connect(api.ws_url())
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.http.ws_connect(api.ws_url() + "?token=forged.token")
    assert refused.value.status == 401
    async with api.http.ws_connect(api.ws_url(), headers=bearer(api.keys[Role.VIEWER])) as ws:
        await ws.send_json({"op": "ping"})
        assert await ws.receive_json(timeout=5) == {"type": "pong"}
    # 5.0 is an integer to JSON Schema, and must make a working token.
    token = await _session_token(api, minutes=5.0)
    async with api.http.ws_connect(api.ws_url() + f"?token={token}") as ws:
        await ws.send_json({"op": "ping"})
        assert await ws.receive_json(timeout=5) == {"type": "pong"}


async def test_a_session_token_only_opens_the_websocket(api: Api) -> None:
    token = await _session_token(api)
    status, _, _ = await api.call("GET", f"/api/advanced-ai/streaming/status?token={token}")
    assert status == 401


async def test_a_revoked_keys_session_token_stops_working(api: Api) -> None:
    status, session, _ = await api.call(
        "POST", "/api/advanced-ai/auth/session", key=api.keys[Role.USER]
    )
    assert status == 200
    position = await asyncio.to_thread(revoke, api.services.store, session["key_id"])
    assert position
    await api.services.keys.wait_for(api.services.store.head())
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.http.ws_connect(api.ws_url() + f"?token={session['token']}")
    assert refused.value.status == 401


async def test_a_thousand_tokens_arrive_in_order_once(api: Api) -> None:
    hub = api.services.hub
    async with api.http.ws_connect(api.ws_url(), headers=bearer(api.keys[Role.VIEWER])) as ws:
        await _subscribe(ws, "tokens:r1")
        # Subscribing twice replaces the filter: it must not double the deliveries.
        await _subscribe(ws, "tokens:r1")
        for n in range(1000):
            hub.publish("tokens:r1", {"n": n, "text": f"t{n}"})
            hub.publish("tokens:other", {"n": n})
        received = [(await ws.receive_json(timeout=5))["payload"]["n"] for _ in range(1000)]
        assert received == list(range(1000))
        await ws.send_json({"op": "ping"})
        assert await ws.receive_json(timeout=5) == {"type": "pong"}


async def test_filters_and_unsubscribe(api: Api) -> None:
    hub = api.services.hub
    async with api.http.ws_connect(api.ws_url(), headers=bearer(api.keys[Role.VIEWER])) as ws:
        await _subscribe(ws, "requests", model="gemma", stream=True)
        hub.publish("requests", {"model": "gpt-4", "stream": True, "id": 1})
        hub.publish("requests", {"model": "gemma", "stream": 1, "id": 2})
        hub.publish("requests", {"model": "gemma", "stream": True, "id": 3})
        event = await ws.receive_json(timeout=5)
        assert event == {
            "type": "event",
            "topic": "requests",
            "payload": {"model": "gemma", "stream": True, "id": 3},
        }
        await ws.send_json({"op": "unsubscribe", "topics": ["requests"]})
        assert await ws.receive_json(timeout=5) == {"type": "unsubscribed", "topics": ["requests"]}
        assert hub.publish("requests", {"model": "gemma", "stream": True}) == 0
        assert hub.stats().subscriptions == {}


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("not json", None),
        ('{"op": "shout"}', "op"),
        ('{"op": "subscribe"}', "topics"),
        ('{"op": "subscribe", "topics": []}', "topics"),
        ('{"op": "subscribe", "topics": [""]}', "topics[0]"),
        ('{"op": "subscribe", "topics": ["a"], "filter": 3}', "filter"),
    ],
)
async def test_bad_client_messages_get_an_error_and_the_connection_stays(
    api: Api, message: str, field: str | None
) -> None:
    async with api.http.ws_connect(api.ws_url(), headers=bearer(api.keys[Role.VIEWER])) as ws:
        await ws.send_str(message)
        reply = await ws.receive_json(timeout=5)
        assert reply["type"] == "error"
        assert reply["error"]["type"] == "bad_request"
        assert reply["error"].get("field") == field
        await ws.send_json({"op": "ping"})
        assert await ws.receive_json(timeout=5) == {"type": "pong"}


async def test_a_slow_client_is_cut_while_a_fast_one_keeps_receiving(
    start_api: StartApi,
) -> None:
    api = await start_api(Limits(hub_queue=32))
    hub = api.services.hub
    headers = bearer(api.keys[Role.VIEWER])
    async with (
        api.http.ws_connect(api.ws_url(), headers=headers) as fast,
        api.http.ws_connect(api.ws_url(), headers=headers) as slow,
    ):
        await _subscribe(fast, "tokens:r")
        await _subscribe(slow, "tokens:r")
        received: list[int] = []

        async def read_fast() -> None:
            async for message in fast:
                received.append(message.json()["payload"]["n"])

        reader = asyncio.create_task(read_fast())
        padding = "x" * 16_000
        published = 0
        # The slow client reads nothing: once the kernel's buffers and its queue are full,
        # the hub cuts it. Publish in small bursts so the fast client's writer keeps up.
        while hub.stats().slow_clients_cut == 0:
            assert published < 20_000, "the slow client was never cut"
            for _ in range(8):
                hub.publish("tokens:r", {"n": published, "pad": padding})
                published += 1
            await asyncio.sleep(0.002)
        assert hub.stats().connections == 1
        for _ in range(100):
            hub.publish("tokens:r", {"n": published, "pad": padding})
            published += 1
            await asyncio.sleep(0)
        await _wait_for(lambda: len(received) == published)
        assert received == list(range(published))
        # The slow client finds its backlog, then the close frame with the code.
        while (message := await slow.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
            pass
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert (slow.close_code, message.extra) == (CLOSE_SLOW_CONSUMER, "slow consumer")
        stats = hub.stats()
        assert stats.slow_clients_cut == 1
        assert stats.dropped >= 1
        reader.cancel()


async def test_a_client_reading_nothing_is_cut_before_the_kernel_holds_megabytes(
    start_api: StartApi,
) -> None:
    api = await start_api(Limits(hub_queue=64))
    hub = api.services.hub
    async with api.http.ws_connect(api.ws_url(), headers=bearer(api.keys[Role.VIEWER])) as slow:
        await _subscribe(slow, "tokens:r")
        message = {"pad": "x" * 1000}
        published = 0
        # Beyond the queue's 64 KB, only the connection's bounded kernel buffers (and the
        # client's receive buffer) may hold what it did not read.
        while hub.stats().slow_clients_cut == 0:
            assert published < 2_000, "the slow client was not cut within 2 MB"
            for _ in range(8):
                hub.publish("tokens:r", message)
            published += 8
            await asyncio.sleep(0.002)
        while (frame := await slow.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
            pass
        assert frame.type is aiohttp.WSMsgType.CLOSE and slow.close_code == CLOSE_SLOW_CONSUMER


async def test_shutdown_closes_websockets_with_going_away(api: Api) -> None:
    async with api.http.ws_connect(api.ws_url(), headers=bearer(api.keys[Role.VIEWER])) as ws:
        await _subscribe(ws, "health")
        closing = asyncio.create_task(api.server.close())
        message = await ws.receive(timeout=5)
        assert (message.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 1001)
        await asyncio.wait_for(closing, 5)


async def test_status_reports_the_hub(api: Api) -> None:
    path = "/api/advanced-ai/streaming/status"
    async with api.http.ws_connect(api.ws_url(), headers=bearer(api.keys[Role.VIEWER])) as ws:
        await _subscribe(ws, "tokens:a", "requests")
        api.services.hub.publish("requests", {"id": 1})
        await ws.receive_json(timeout=5)
        # The acknowledgement and the event; the writer counts each once it is written.
        await _wait_for(lambda: api.services.hub.stats().sent == 2)
        status, body, _ = await api.call("GET", path, key=api.keys[Role.VIEWER])
        assert status == 200
        assert body["connections"] == 1
        assert body["subscriptions"] == {"tokens:a": 1, "requests": 1}
        assert body["messages_published"] == 1
        assert body["messages_sent"] == 2
        assert (body["messages_dropped"], body["slow_clients_cut"]) == (0, 0)


def _read_frames(data: bytes) -> list[str]:
    """Text frames as RFC 6455 lays them out: FIN and opcode, unmasked length, payload."""
    messages = []
    while data:
        assert data[0] == 0x81 and data[1] & 0x80 == 0
        size, at = data[1], 2
        if size == 126:
            size, at = int.from_bytes(data[2:4]), 4
        elif size == 127:
            size, at = int.from_bytes(data[2:10]), 10
        messages.append(data[at : at + size].decode())
        data = data[at + size :]
    return messages


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_frames_written_together_read_back_one_by_one(size: int) -> None:
    messages = ["é" * (size // 2) + "x" * (size % 2), "{}", "ok"]
    assert _read_frames(text_frames(messages)) == messages


async def test_a_burst_goes_out_in_batched_frames_in_order(api: Api) -> None:
    hub = api.services.hub
    async with api.http.ws_connect(api.ws_url(), headers=bearer(api.keys[Role.VIEWER])) as ws:
        await _subscribe(ws, "burst")
        sizes = [10, 200, 70_000] * 50
        for n, size in enumerate(sizes):
            hub.publish("burst", {"n": n, "pad": "x" * size})
        for n, size in enumerate(sizes):
            payload = (await ws.receive_json(timeout=5))["payload"]
            assert (payload["n"], len(payload["pad"])) == (n, size)
    assert hub.stats().sent >= len(sizes)
