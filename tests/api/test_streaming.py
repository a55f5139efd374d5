"""Operator broadcasts: on the record first, then to the topic's subscribers."""

from __future__ import annotations

import asyncio

import pytest

from api.auth import Role
from tests.api.conftest import Api, bearer

EVENTS = "/api/advanced-ai/streaming/events"


async def test_a_broadcast_is_in_the_log_before_any_subscriber_hears_of_it(api: Api) -> None:
    store = api.services.store
    topic = "operator:deploy"
    async with api.http.ws_connect(api.ws_url(), headers=bearer(api.keys[Role.VIEWER])) as ws:
        await ws.send_json({"op": "subscribe", "topics": [topic], "filter": {"stage": "prod"}})
        assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
        key = api.keys[Role.OPERATOR]
        posting = asyncio.create_task(
            api.call("POST", EVENTS, key=key, json={"topic": topic, "payload": {"stage": "prod"}})
        )
        event = await ws.receive_json(timeout=5)
        # The moment the subscriber has it, the log already does.
        [recorded] = await store.read_stream_async(f"broadcast-{topic}")
        status, answer, _ = await posting
    assert event == {"type": "event", "topic": topic, "payload": {"stage": "prod"}}
    assert (status, answer) == (
        202,
        {"topic": topic, "position": recorded.position, "delivered": 1},
    )
    operator = api.services.keys.find(key)
    assert operator is not None
    assert recorded.type == "StreamEventPublished"
    assert recorded.data == {"topic": topic, "payload": {"stage": "prod"}, "by": operator.key_id}
    assert recorded.metadata == {"api_key_id": operator.key_id}


async def test_a_broadcast_nobody_listens_to_is_still_recorded(api: Api) -> None:
    body = {"topic": "deploys", "payload": {"n": 1}}
    status, answer, _ = await api.call("POST", EVENTS, key=api.keys[Role.ADMIN], json=body)
    assert (status, answer["delivered"]) == (202, 0)
    [recorded] = api.services.store.read_stream("broadcast-deploys")
    assert recorded.position == answer["position"]


@pytest.mark.parametrize("topic", ["requests", "tokens:01a2", "tokens:"])
async def test_nobody_publishes_on_the_gateways_own_topics(api: Api, topic: str) -> None:
    # A broadcast there would read as another tenant's request or tokens.
    body = {"topic": topic, "payload": {"request_id": "x", "state": "completed"}}
    status, answer, _ = await api.call("POST", EVENTS, key=api.keys[Role.ADMIN], json=body)
    assert status == 400 and answer["error"]["field"] == "topic"
    assert "the gateway's own" in answer["error"]["message"]
    assert api.services.store.read_stream(f"broadcast-{topic}") == []
