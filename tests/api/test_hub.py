"""StreamHub's fan-out decisions, tested directly: filters, queues, cuts and counters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.hub import (
    CLOSE_SLOW_CONSUMER,
    StreamHub,
    Subscriber,
    TooManySubscriptions,
    json_equal,
    matches,
)
from atom_actors.principal import tenancy_of

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)


class Closes:
    """Records what the hub closed a subscriber with."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def __call__(self, code: int, reason: str) -> None:
        self.calls.append((code, reason))


def _connect(hub: StreamHub) -> tuple[Subscriber, Closes]:
    closes = Closes()
    return hub.connect(closes), closes


@given(st.dictionaries(st.text(max_size=3), scalars), st.dictionaries(st.text(max_size=3), scalars))
def test_a_filter_matches_when_every_field_it_names_is_equal(
    filter_: dict[str, Any], payload: dict[str, Any]
) -> None:
    expected = all(k in payload and json_equal(payload[k], v) for k, v in filter_.items())
    assert matches(filter_, payload) is expected
    assert matches({}, payload)
    assert matches(filter_, {**payload, **filter_})


def test_json_equality_tells_true_from_1() -> None:
    assert not json_equal(True, 1)
    assert not json_equal([1], [True])
    assert not json_equal({"a": 0}, {"a": False})
    assert json_equal(1, 1.0)
    assert json_equal({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})


async def test_publish_reaches_matching_subscribers_in_order() -> None:
    hub = StreamHub()
    everyone, _ = _connect(hub)
    gemma, _ = _connect(hub)
    hub.subscribe(everyone, ["requests"], {})
    hub.subscribe(gemma, ["requests"], {"model": "gemma"})
    assert hub.publish("requests", {"model": "gpt-4", "n": 1}) == 1
    assert hub.publish("requests", {"model": "gemma", "n": 2}) == 2
    assert hub.publish("nobody", {"n": 3}) == 0
    assert await everyone.take() == [
        '{"type":"event","topic":"requests","payload":{"model":"gpt-4","n":1}}',
        '{"type":"event","topic":"requests","payload":{"model":"gemma","n":2}}',
    ]
    assert await gemma.take() == [
        '{"type":"event","topic":"requests","payload":{"model":"gemma","n":2}}'
    ]
    assert hub.stats().published == 3


def test_resubscribing_replaces_the_filter_and_never_doubles_delivery() -> None:
    hub = StreamHub()
    subscriber, _ = _connect(hub)
    hub.subscribe(subscriber, ["t", "t"], {"a": 1})
    hub.subscribe(subscriber, ["t"], {"a": 2})
    assert hub.publish("t", {"a": 1}) == 0
    assert hub.publish("t", {"a": 2}) == 1
    assert subscriber.pending == 1
    assert hub.stats().subscriptions == {"t": 1}


async def test_a_full_queue_cuts_only_its_subscriber() -> None:
    hub = StreamHub(queue_limit=3)
    slow, slow_closes = _connect(hub)
    fast, _ = _connect(hub)
    hub.subscribe(slow, ["t", "u"], {})
    hub.subscribe(fast, ["t"], {})
    for n in range(3):
        assert hub.publish("t", {"n": n}) == 2
        assert len(await fast.take()) == 1
    assert hub.publish("t", {"n": 3}) == 1
    assert slow_closes.calls == [(CLOSE_SLOW_CONSUMER, "slow consumer")]
    assert slow.closed and slow.pending == 0 and slow.topics == {}
    stats = hub.stats()
    assert (stats.slow_clients_cut, stats.dropped, stats.connections) == (1, 4, 1)
    assert stats.subscriptions == {"t": 1}
    assert hub.publish("u", {"n": 4}) == 0
    assert hub.publish("t", {"n": 4}) == 1


async def test_a_queue_full_in_size_cuts_its_subscriber_before_its_count_is_reached() -> None:
    hub = StreamHub(queue_limit=1000, queue_size=10_000)
    slow, slow_closes = _connect(hub)
    fast, _ = _connect(hub)
    hub.subscribe(slow, ["t"], {})
    hub.subscribe(fast, ["t"], {})
    big = {"pad": "x" * 1000}
    published = 0
    while not slow.closed:
        assert hub.publish("t", big) >= 1
        published += 1
        assert len(await fast.take()) == 1
    # Ten messages of about 1,040 characters fill 10,000: the tenth does not fit.
    assert published == 10
    assert slow_closes.calls == [(CLOSE_SLOW_CONSUMER, "slow consumer")]
    # What was taken makes room again: the size counts only what is queued.
    for _ in range(20):
        hub.publish("t", big)
        assert len(await fast.take()) == 1
    assert not fast.closed


async def test_a_producer_that_can_wait_waits_for_room_instead_of_being_cut() -> None:
    hub = StreamHub(queue_limit=4)
    subscriber, closes = _connect(hub)
    for n in range(2):
        hub.send(subscriber, {"n": n})
    waiting = asyncio.create_task(subscriber.room())
    await asyncio.sleep(0)
    assert not waiting.done()
    # The writer takes what is queued: there is room again.
    assert len(await subscriber.take()) == 2
    await asyncio.wait_for(waiting, 1)
    hub.send(subscriber, {"n": 2})
    await asyncio.wait_for(subscriber.room(), 1)
    assert closes.calls == []


async def test_a_closed_subscriber_takes_nothing_and_stays_closed() -> None:
    hub = StreamHub()
    subscriber, closes = _connect(hub)
    hub.subscribe(subscriber, ["t"], {})
    hub.publish("t", {})
    hub.disconnect(subscriber)
    assert await subscriber.take() == []
    assert closes.calls == [(1000, "disconnected")]
    hub.subscribe(subscriber, ["t"], {})
    hub.send(subscriber, {"type": "pong"})
    assert hub.stats().subscriptions == {}
    assert (hub.stats().dropped, hub.stats().connections) == (1, 0)


def test_close_all_closes_every_subscriber_once() -> None:
    hub = StreamHub()
    connections = [_connect(hub) for _ in range(3)]
    hub.close_all()
    hub.close_all()
    assert [closes.calls for _, closes in connections] == [[(1001, "server shutting down")]] * 3
    assert hub.stats().connections == 0


def test_a_connection_holds_a_bounded_number_of_topics() -> None:
    hub = StreamHub(max_topics=2)
    subscriber, _ = _connect(hub)
    hub.subscribe(subscriber, ["a", "b"], {})
    hub.subscribe(subscriber, ["a"], {"x": 1})
    with pytest.raises(TooManySubscriptions, match="2 topics"):
        hub.subscribe(subscriber, ["c"], {})
    assert set(subscriber.topics) == {"a", "b"}


def test_a_requests_news_reaches_its_own_audience_and_the_operators_only() -> None:
    hub = StreamHub()
    tenant_a = hub.connect(Closes(), "tenant:a")
    tenant_b = hub.connect(Closes(), "tenant:b")
    operator = hub.connect(Closes())
    for subscriber in (tenant_a, tenant_b, operator):
        hub.subscribe(subscriber, ["tokens:r1"], {})
    assert hub.publish("tokens:r1", {"text": "secret"}, "tenant:a") == 2
    assert (tenant_a.pending, tenant_b.pending, operator.pending) == (1, 0, 1)
    # An operator's broadcast (no audience) is for every subscriber of the topic.
    assert hub.publish("tokens:r1", {"text": "notice"}) == 3


def test_a_trusted_tools_requests_are_for_operators_only() -> None:
    hub = StreamHub()
    tenantless = hub.connect(Closes(), tenancy_of("k1", None))
    operator = hub.connect(Closes())
    hub.subscribe(tenantless, ["requests"], {})
    hub.subscribe(operator, ["requests"], {})
    assert hub.publish("requests", {"state": "received"}, tenancy_of(None, None)) == 1
    assert operator.pending == 1 and tenantless.pending == 0


def test_a_key_without_a_tenant_is_a_tenancy_of_its_own() -> None:
    hub = StreamHub()
    first = hub.connect(Closes(), tenancy_of("k1", None))
    second = hub.connect(Closes(), tenancy_of("k2", None))
    for subscriber in (first, second):
        hub.subscribe(subscriber, ["requests"], {})
    assert hub.publish("requests", {"state": "received"}, tenancy_of("k1", None)) == 1
    assert (first.pending, second.pending) == (1, 0)
    assert len({tenancy_of("k1", None), tenancy_of("k2", None), tenancy_of("k1", "a")}) == 3
