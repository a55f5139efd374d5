"""The WebSocket's log-served topics: from a position, each item once, in order, per tenancy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from api.auth import Role
from api.hub import StreamHub
from api.logfeed import CLOSE_FEED_FAILED, LogFeed
from atom_actors.feed import STATES
from eventstore import NewEvent, SQLiteStore
from tests.api.conftest import Fleet, bearer, issue_key

PROCESS = "/api/advanced-ai/process"


async def _key(fleet: Fleet, tenant: str, role: Role = Role.USER) -> str:
    key = issue_key(fleet.store, role, tenant=tenant)
    async with asyncio.timeout(5):
        while fleet.api.services.keys.find(key) is None:
            await asyncio.sleep(0.02)
    return key


async def _ask(fleet: Fleet, key: str, **body: Any) -> str:
    status, answer = await fleet.post(PROCESS, {"model": "cheap", "prompt": "hi", **body}, key)
    assert status == 200, answer
    request_id: str = answer["request_id"]
    return request_id


async def _connect(fleet: Fleet, key: str) -> aiohttp.ClientWebSocketResponse:
    return await fleet.api.http.ws_connect(fleet.api.ws_url(), headers=bearer(key))


async def _subscribe(ws: aiohttp.ClientWebSocketResponse, topic: str, after: int) -> None:
    await ws.send_json({"op": "subscribe", "topics": [topic], "from_position": after})
    assert await ws.receive_json(timeout=5) == {"type": "subscribed", "topics": [topic]}


async def _items(
    ws: aiohttp.ClientWebSocketResponse, until: Any, timeout: float = 10
) -> list[dict[str, Any]]:
    """Events' payloads until `until(payloads)` holds (position marks are skipped)."""
    payloads: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not until(payloads):
            message = await ws.receive_json()
            if message["type"] == "events":
                payloads += message["payloads"]
    return payloads


def _request_positions(fleet: Fleet, tenancy: str | None, after: int = 0) -> list[int]:
    return [
        e.position
        for e in fleet.store.read_all(after)
        if e.type in STATES and (tenancy is None or e.metadata.get("tenancy") == tenancy)
    ]


def _completed(count: int) -> Any:
    return lambda items: sum(i["state"] == "completed" for i in items) >= count


async def test_a_client_resumes_from_its_last_position_with_no_gap_and_no_duplicate(
    fleet: Fleet,
) -> None:
    a = await _key(fleet, "a")
    start = fleet.store.head()
    ws = await _connect(fleet, a)
    await _subscribe(ws, "requests", start)
    for _ in range(3):
        await _ask(fleet, a)
    seen = await _items(ws, _completed(3))
    await ws.close()
    # Two more while it is away, one of them another tenant's.
    others = await _key(fleet, "b")
    missed = [await _ask(fleet, a), await _ask(fleet, others)]
    ws = await _connect(fleet, a)
    await _subscribe(ws, "requests", seen[-1]["position"])
    seen += await _items(ws, _completed(1))
    await ws.close()
    positions = [item["position"] for item in seen]
    assert positions == _request_positions(fleet, "tenant:a", start)
    assert [i["request_id"] for i in seen[-2:]] == [missed[0]] * 2
    assert [i["state"] for i in seen[-2:]] == ["received", "completed"]
    assert {i["tenancy"] for i in seen} == {"tenant:a"}


async def test_a_catch_up_while_requests_land_gives_every_state_once_in_order(
    fleet: Fleet,
) -> None:
    operator = fleet.api.keys[Role.OPERATOR]
    await _ask(fleet, fleet.key)
    ws = await _connect(fleet, operator)
    # From 0, while twenty more requests are committed: caught up from the log, then live.
    traffic = asyncio.gather(*(_ask(fleet, fleet.key) for _ in range(20)))
    await _subscribe(ws, "requests", 0)
    await traffic
    seen = await _items(ws, _completed(21))
    assert [i["position"] for i in seen] == _request_positions(fleet, None)


async def test_a_request_s_tokens_come_from_the_log_in_order(fleet: Fleet) -> None:
    a = await _key(fleet, "a")
    request_id = await _ask(fleet, a, stream=False)
    status, story = await fleet.get(f"/api/advanced-ai/requests/{request_id}", a)
    assert status == 200
    answer = next(s for s in story["steps"] if s["type"] == "RequestCompleted")["data"]["text"]
    ws = await _connect(fleet, a)
    await _subscribe(ws, f"tokens:{request_id}", 0)
    items = await _items(ws, lambda i: "".join(t for x in i for t, _ in x["deltas"]) == answer)
    assert [i["seq"] for i in items] == sorted(i["seq"] for i in items)
    # Another tenant subscribing to the same request's tokens hears nothing of them.
    b = await _connect(fleet, await _key(fleet, "b"))
    await _subscribe(b, f"tokens:{request_id}", 0)
    await b.send_json({"op": "ping"})
    assert await b.receive_json(timeout=5) == {"type": "pong"}


async def test_from_position_is_for_the_log_s_topics_only(fleet: Fleet) -> None:
    ws = await _connect(fleet, fleet.key)
    await ws.send_json({"op": "subscribe", "topics": ["ops"], "from_position": 0})
    error = await ws.receive_json(timeout=5)
    assert (error["type"], error["error"]["field"]) == ("error", "from_position")


async def test_figures_say_where_the_projections_are_at_most_once_a_second(
    fleet: Fleet,
) -> None:
    ws = await _connect(fleet, fleet.key)
    await ws.send_json({"op": "subscribe", "topics": ["figures"]})
    assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
    await _ask(fleet, fleet.key)
    position = fleet.store.head()
    async with asyncio.timeout(10):
        while True:
            message = await ws.receive_json()
            assert message["topic"] == "figures"
            if message["payload"]["position"] >= position:
                break


async def test_a_feed_that_cannot_read_the_log_closes_its_client(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "log.db"), durability="normal")
    store.append("request-r", [NewEvent("RequestReceived", {"request_id": "r"}, {})])
    hub = StreamHub()
    closes: list[int] = []
    subscriber = hub.connect(lambda code, _reason: closes.append(code))
    feed = LogFeed(store, hub, subscriber, None)
    await feed.subscribe(["requests"], 0, {})
    # The log goes away before the catch-up has read it.
    store.close()
    async with asyncio.timeout(5):
        while not closes:
            await asyncio.sleep(0.01)
    assert closes == [CLOSE_FEED_FAILED]
    await feed.close()
