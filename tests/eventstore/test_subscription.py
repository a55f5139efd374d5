from __future__ import annotations

import asyncio
import threading

from eventstore import EventStore, NewEvent, StreamAppend, Subscription


def _append_in_background(store: EventStore, count: int) -> threading.Thread:
    def run() -> None:
        for i in range(count):
            store.append(f"s{i % 7}", [NewEvent("Tick", {"i": i})])

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_catch_up_then_live_without_gap_or_duplicate(store: EventStore) -> None:
    for i in range(300):
        store.append("early", [NewEvent("Tick", {"i": i})])
    writer = _append_in_background(store, 700)
    subscription = Subscription(store, after=0)
    seen = []
    for event in subscription:
        seen.append(event.position)
        if len(seen) == 1000:
            subscription.close()
    writer.join()
    assert seen == list(range(1, 1001))


def test_subscription_starts_after_the_given_position(store: EventStore) -> None:
    for i in range(10):
        store.append("a", [NewEvent("Tick", {"i": i})])
    subscription = Subscription(store, after=7)
    seen = []
    for event in subscription:
        seen.append(event.data["i"])
        if len(seen) == 2:
            subscription.close()
    assert seen == [7, 8]
    assert subscription.position == 9


async def test_async_subscription_follows_live_appends(store: EventStore) -> None:
    for i in range(50):
        await store.append_async("early", [NewEvent("Tick", {"i": i})])
    subscription = Subscription(store, after=20)

    async def write() -> None:
        for i in range(200):
            await store.append_async(f"s{i % 3}", [NewEvent("Tick", {"i": i})])

    writer = asyncio.create_task(write())
    seen = []
    async for event in subscription:
        seen.append(event.position)
        if len(seen) == 230:
            subscription.close()
    await writer
    assert seen == list(range(21, 251))


async def test_a_loop_listener_is_told_on_the_loop_right_after_the_appender_resumes(
    store: EventStore,
) -> None:
    """Commit listeners on a loop ride the wake-up that resolves the loop's own appenders,
    and go after them: a request's answer before a subscriber's reading of the log."""
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, int]] = []

    def listener(head: int) -> None:
        seen.append((head, threading.get_ident()))

    store.add_commit_listener(listener, loop)
    positions = await store.append_async("s", [NewEvent("Noted", {"n": 1})])
    assert seen == []
    await asyncio.sleep(0)
    assert seen == [(positions[-1], threading.get_ident())]
    store.remove_commit_listener(listener, loop)
    await store.append_async("s", [NewEvent("Noted", {"n": 2})])
    await asyncio.sleep(0)
    assert len(seen) == 1


async def test_a_failing_loop_listener_leaves_the_others_and_the_appenders_be(
    store: EventStore,
) -> None:
    loop = asyncio.get_running_loop()
    heads: list[int] = []

    def broken(_head: int) -> None:
        raise RuntimeError("a listener bug")

    store.add_commit_listener(broken, loop)
    store.add_commit_listener(heads.append, loop)
    first = await store.append_async("s", [NewEvent("Noted", {"n": 1})])
    second = await store.append_async("s", [NewEvent("Noted", {"n": 2})])
    await asyncio.sleep(0)
    assert heads == [first[-1], second[-1]]


async def test_a_subscription_behind_reads_its_backlog_in_pages_of_at_most_page_size(
    store: EventStore,
) -> None:
    # A follower far behind never holds more than a page of decoded events at once.
    store.append_batch([StreamAppend(f"s{i}", [NewEvent("Tick", {"i": i})]) for i in range(1000)])
    subscription = Subscription(store, after=0, page_size=64)
    sizes: list[int] = []
    seen: list[int] = []
    async for events, last in subscription.pages():
        sizes.append(len(events))
        seen.extend(event.position for event in events)
        assert last == seen[-1]
        if last == 1000:
            subscription.close()
    assert seen == list(range(1, 1001))
    assert max(sizes) == 64
