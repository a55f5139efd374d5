"""Many streamed answers at once on one server: every token delivered in order, live and on the
log, over the OpenAI route, /process SSE and the WebSocket, with a slow subscriber cut.

These are bench/gateway_bench.py --stream's properties at a scale the suite can afford: the
benchmark holds 1,000 streams with 200 + 50 subscribers; here a few hundred and a few dozen.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from api.auth import Role
from api.hub import CLOSE_SLOW_CONSUMER
from api.services import Limits
from atom_actors.catalog import CAPABILITIES
from tests.api.conftest import Api, StartGateway, bearer, sse_events
from tests.atom_actors.conftest import network_spec
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI

TOKENS = 20
REPLY = "".join(f" t{i}" for i in range(TOKENS))
# Streams over both routes at once: past aiohttp's default pool of 100, which the
# connection pool to the upstream once was whatever the model's max_concurrency said.
STREAMS = 150
BODY = {"model": "m", "messages": [{"role": "user", "content": "a story"}], "stream": True}


async def _paced_gateway(start_gateway: StartGateway, upstream: FakeOpenAI, **limits: Any) -> Api:
    # 20 tokens 5 ms apart: every stream is still open when the last one starts.
    upstream.models["m"] = Behaviour(reply=REPLY, tokens_per_second=200, first_token_delay=0.05)
    spec = network_spec("m", upstream.base_url, capabilities=CAPABILITIES, max_concurrency=400)
    return await start_gateway([spec], Limits(rate=None, **limits))


async def _openai_stream(http: aiohttp.ClientSession, api: Api) -> tuple[str, list[str]]:
    """One streamed chat completion: its request id and its tokens as they came."""
    headers = bearer(api.keys[Role.ADMIN])
    url = api.url + "/v1/chat/completions"
    async with http.post(url, json=BODY, headers=headers) as response:
        assert response.status == 200
        tokens: list[str] = []
        chunk_id = ""
        async for _, data in sse_events(response):
            if data == "[DONE]":
                return chunk_id.removeprefix("chatcmpl-"), tokens
            chunk_id = data["id"]
            if data["choices"] and (text := data["choices"][0]["delta"].get("content")):
                tokens.append(text)
    raise AssertionError("the stream ended without [DONE]")


async def _process_stream(http: aiohttp.ClientSession, api: Api) -> tuple[str, list[str]]:
    """One /process answer over SSE: its request id and its tokens as they came."""
    headers = bearer(api.keys[Role.ADMIN])
    async with http.post(api.url + "/api/advanced-ai/process", json=BODY, headers=headers) as r:
        assert r.status == 200
        tokens: list[str] = []
        async for event, data in sse_events(r):
            if event == "token":
                tokens.append(data["text"])
            elif event == "done":
                return data["request_id"], tokens
            else:
                raise AssertionError(f"unexpected {event}: {data}")
    raise AssertionError("the stream ended without done")


def _logged_tokens(api: Api, request_id: str) -> list[str]:
    events = api.services.store.read_stream(f"request-{request_id}")
    return [d[0] for e in events if e.type == "TokensStreamed" for d in e.data["deltas"]]


async def test_hundreds_of_streams_over_both_routes_deliver_every_token_in_order(
    start_gateway: StartGateway, upstream: FakeOpenAI
) -> None:
    api = await _paced_gateway(start_gateway, upstream)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        answers = await asyncio.gather(
            *(_openai_stream(http, api) for _ in range(STREAMS)),
            *(_process_stream(http, api) for _ in range(STREAMS)),
        )
    expected = [f" t{i}" for i in range(TOKENS)]
    assert all(tokens == expected for _, tokens in answers)
    # The log holds every token of every answer, in order, too.
    assert len({request_id for request_id, _ in answers}) == 2 * STREAMS
    assert all(_logged_tokens(api, request_id) == expected for request_id, _ in answers)
    # They ran together: the model's gate saw them all, and none had to wait.
    assert api.services.actors is not None
    _, gate = api.services.actors.directory.entry("m")
    assert gate.load() == (0, 0, 0) and gate.calls == 2 * STREAMS


async def test_subscribers_see_every_stream_while_a_slow_one_is_cut(
    start_gateway: StartGateway, upstream: FakeOpenAI
) -> None:
    api = await _paced_gateway(start_gateway, upstream, hub_queue=1024)
    hub = api.services.hub
    headers = bearer(api.keys[Role.ADMIN])
    watchers, followers, streams = 20, 5, 100
    received: dict[int, list[tuple[str, str]]] = {i: [] for i in range(watchers)}
    followed: list[list[str]] = []
    ids: asyncio.Queue[str] = asyncio.Queue()
    done = asyncio.Event()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def watch(index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            async for message in ws:
                event = message.json()
                if event.get("topic") == "requests":
                    payload = event["payload"]
                    received[index].append((payload["request_id"], payload["state"]))
                    if index == 0 and payload["state"] == "received":
                        ids.put_nowait(payload["request_id"])

        async def follow(ws: aiohttp.ClientWebSocketResponse) -> None:
            # Its own `requests` feed says when a stream it follows is over: the hub sends a
            # connection everything in the order it was published, the tokens before that.
            await ws.send_json({"op": "subscribe", "topics": ["requests"]})
            while not done.is_set():
                request_id = await ids.get()
                topic = f"tokens:{request_id}"
                await ws.send_json({"op": "subscribe", "topics": [topic]})
                tokens: list[str] = []
                while True:
                    event = await ws.receive_json(timeout=10)
                    if event.get("topic") == topic:
                        tokens.append(event["payload"]["text"])
                    elif event.get("payload") == {"request_id": request_id, "state": "completed"}:
                        break
                await ws.send_json({"op": "unsubscribe", "topics": [topic]})
                followed.append(tokens)

        sockets = [
            await http.ws_connect(api.ws_url(), headers=headers)
            for _ in range(watchers + followers + 1)
        ]
        for ws in sockets[:watchers]:
            await ws.send_json({"op": "subscribe", "topics": ["requests"]})
            assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
        slow = sockets[-1]
        await slow.send_json({"op": "subscribe", "topics": ["requests", "bulk"]})
        readers = [asyncio.create_task(watch(i, ws)) for i, ws in enumerate(sockets[:watchers])]
        following = [asyncio.create_task(follow(ws)) for ws in sockets[watchers:-1]]

        async def flood() -> None:
            # The slow client reads nothing: once its buffers and its queue are full, it is cut.
            padding = "x" * 16_000
            while hub.stats().slow_clients_cut == 0:
                for _ in range(8):
                    hub.publish("bulk", {"pad": padding})
                await asyncio.sleep(0.001)

        flooding = asyncio.create_task(flood())
        answers = await asyncio.gather(*(_openai_stream(http, api) for _ in range(streams)))
        await asyncio.wait_for(flooding, 30)
        done.set()
        # Every watcher has each request's news, received then completed, once.
        expected = {(request_id, state) for request_id, _ in answers
                    for state in ("received", "completed")}  # fmt: skip
        async with asyncio.timeout(10):
            while any(len(news) < len(expected) for news in received.values()):
                await asyncio.sleep(0.01)
        for news in received.values():
            assert set(news) == expected and len(news) == len(expected)
        # A follower sees a stream's tokens from where it joined, in order, none twice, to the end.
        tokens = [f" t{i}" for i in range(TOKENS)]
        assert all(seen == tokens[TOKENS - len(seen) :] for seen in followed)
        assert sum(map(len, followed)) > 0
        assert all(seen == tokens for _, seen in answers)
        while (message := await slow.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
            pass
        assert message.type is aiohttp.WSMsgType.CLOSE and slow.close_code == CLOSE_SLOW_CONSUMER
        assert hub.stats().slow_clients_cut == 1
        for task in [*readers, *following]:
            task.cancel()
        for ws in sockets:
            await ws.close()
