"""Appends from asyncio with fewer wake-ups, a stream's events batched, own commits read from
memory, typed subscriptions, and ids drawn in bulk."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import uuid
from typing import Any

import pytest

from eventstore import (
    BufferedStream,
    DuplicateEventConflict,
    EventStore,
    LiveProjections,
    NewEvent,
    RecordedEvent,
    SQLiteStore,
    Subscription,
    new_event_id,
    open_store,
)


def tick(i: int, kind: str = "Tick") -> NewEvent:
    return NewEvent(kind, {"i": i})


async def test_append_soon_gives_positions_in_queue_order(store: EventStore) -> None:
    waiters = [store.append_soon(f"s{i % 3}", [tick(i), tick(i)]) for i in range(50)]
    positions = [await w for w in waiters]
    assert positions == [[2 * i + 1, 2 * i + 2] for i in range(50)]
    assert [e.data["i"] for e in store.read_page(0)] == [i // 2 for i in range(100)]


async def test_append_soon_reports_a_refused_append(store: EventStore) -> None:
    first = NewEvent("Tick", {"i": 1})
    await store.append_soon("s", [first])
    clash = NewEvent("Tick", {"i": 2}, event_id=first.event_id)
    with pytest.raises(DuplicateEventConflict):
        await store.append_soon("s", [clash])


def committing_threads(store: EventStore) -> list[str]:
    """The names of the threads that commit, one per commit (thread listeners run there)."""
    names: list[str] = []
    store.add_commit_listener(lambda _head: names.append(threading.current_thread().name))
    return names


async def test_append_now_commits_on_the_loop_when_nothing_is_queued(db_path: str) -> None:
    with SQLiteStore(db_path, durability="normal") as store:
        threads = committing_threads(store)
        assert await store.append_now("s", [tick(0)]) == [1]
        assert threads == [threading.current_thread().name]
        # Under full durability an fsync would hold the loop: the writer commits.
        threads.clear()
    with SQLiteStore(db_path, durability="full") as store:
        threads = committing_threads(store)
        assert await store.append_now("s", [tick(1)]) == [2]
        assert threads == ["eventstore-writer"]


async def test_append_now_checks_a_batch_like_append_soon(db_path: str) -> None:
    with SQLiteStore(db_path, durability="normal") as store:
        event = tick(0)
        with pytest.raises(ValueError, match="same event_id twice"):
            store.append_now("s", [event, event])
        assert store.head() == 0


async def test_append_now_never_overtakes_what_the_writer_holds(db_path: str) -> None:
    with SQLiteStore(db_path, durability="normal") as store:
        threads = committing_threads(store)
        appends = [store.append_soon if i % 3 else store.append_now for i in range(300)]
        waiters = [append(f"s{i % 5}", [tick(i)]) for i, append in enumerate(appends)]
        assert [await w for w in waiters] == [[i + 1] for i in range(300)]
        assert [e.data["i"] for e in store.read_page(0)] == list(range(300))
        # Both ways were taken: inline while the queue was empty, through the writer otherwise.
        assert {"eventstore-writer", threading.current_thread().name} <= set(threads)


async def test_append_now_leaves_a_busy_file_to_the_writer(db_path: str) -> None:
    # Another connection holds the file's write lock: the loop must not wait for it.
    with SQLiteStore(db_path, durability="normal") as store:
        threads = committing_threads(store)
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        waiter = store.append_now("s", [tick(0)])
        assert not waiter.done() and threads == []
        other.execute("COMMIT")
        other.close()
        assert await waiter == [1]
        assert threads == ["eventstore-writer"]
        # Resumed, we may run before the writer has let go of its commit lock.
        while store._commit_lock.locked():
            await asyncio.sleep(0.001)
        # The loop's own connection was left as it was: the next append commits inline.
        assert await store.append_now("s", [tick(1)]) == [2]
        assert threads == ["eventstore-writer", threading.current_thread().name]


async def test_append_now_on_postgresql_always_goes_through_the_writer(
    postgres_url: str,
) -> None:
    # Committing on the loop would hold it for round trips to the server, and for another
    # node's lock: the writer thread commits, whatever the durability.
    with open_store(postgres_url, durability="normal") as store:
        threads = committing_threads(store)
        assert await store.append_now("s", [tick(0)]) == [1]
        assert threads == ["eventstore-writer"]


async def test_a_stream_alone_commits_inline_and_in_company_through_the_writer(
    db_path: str,
) -> None:
    with SQLiteStore(db_path, durability="normal") as store:
        threads = committing_threads(store)
        alone = True
        log = BufferedStream(store, "request-1", alone=lambda: alone)
        log.add(tick(0))
        await log.commit()
        alone = False
        log.add(tick(1))
        await log.commit()
        assert threads == [threading.current_thread().name, "eventstore-writer"]
        assert [e.data["i"] for e in store.read_stream("request-1")] == [0, 1]


async def test_a_buffered_stream_appends_in_order_in_as_few_appends_as_flushed(
    store: EventStore,
) -> None:
    log = BufferedStream(store, "request-1")
    for i in range(3):
        log.add(tick(i))
    log.flush()
    log.add(tick(3))
    log.add(tick(4))
    before = store.stats.appends
    position = await log.commit()
    assert store.stats.appends - before == 2
    events = store.read_stream("request-1")
    assert [e.data["i"] for e in events] == [0, 1, 2, 3, 4]
    assert position == events[-1].position == log.position
    # Nothing left to append: a second commit returns at once with the same position.
    assert await log.commit() == position


async def test_on_committed_gets_the_events_position_even_if_nobody_waits(
    store: EventStore,
) -> None:
    log = BufferedStream(store, "s")
    seen: list[int] = []
    log.add(tick(0))
    log.add(tick(1), on_committed=seen.append)
    log.add(tick(2))
    log.flush()
    # Nobody commits; the callback still comes once the append is committed.
    for _ in range(200):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert seen == [store.read_stream("s")[1].position]


async def test_a_failed_append_fails_every_later_commit(store: EventStore) -> None:
    first = tick(0)
    await store.append_async("s", [first])
    log = BufferedStream(store, "s")
    log.add(NewEvent("Tick", {"i": 9}, event_id=first.event_id))
    log.flush()
    log.add(tick(1))
    with pytest.raises(DuplicateEventConflict):
        await log.commit()
    with pytest.raises(DuplicateEventConflict):
        await log.commit()


async def test_a_cancelled_committer_does_not_cancel_the_append(store: EventStore) -> None:
    log = BufferedStream(store, "s")
    seen: list[int] = []
    log.add(tick(0), on_committed=seen.append)
    task = asyncio.create_task(log.commit())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await log.commit() == store.read_stream("s")[0].position
    await asyncio.sleep(0)
    assert seen == [store.read_stream("s")[0].position]


async def test_own_commits_are_read_from_memory_and_another_writers_from_the_log(
    location: str,
) -> None:
    """Two stores on one log stand for two processes: no gap, no duplicate, in order."""
    with open_store(location) as ours, open_store(location) as theirs:
        subscription = Subscription(ours, after=0, poll_interval=0.02)
        seen: list[tuple[int, str]] = []

        async def follow() -> None:
            async for event in subscription:
                seen.append((event.position, event.stream_id))
                if len(seen) == 60:
                    subscription.close()

        follower = asyncio.create_task(follow())
        for round_ in range(6):
            for i in range(5):
                await ours.append_async("ours", [tick(round_ * 10 + i)])
            for i in range(5):
                theirs.append("theirs", [tick(round_ * 10 + 5 + i)])
        await asyncio.wait_for(follower, 10)
        assert [p for p, _ in seen] == list(range(1, 61))
        assert [s for _, s in seen] == (["ours"] * 5 + ["theirs"] * 5) * 6
        assert ours.recent_rows(60) in ([], None)


def test_recent_rows_are_the_logs_rows_or_none_once_forgotten(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eventstore._writer

    monkeypatch.setattr(eventstore._writer, "_RECENT_ROWS", 16)
    with open_store(location) as store:
        for i in range(0, 50, 5):
            store.append("s", [tick(j) for j in range(i, i + 5)])
        for after in range(52):
            for limit in (1, 3, 16, 100):
                rows = store.recent_rows(after, limit)
                if after < 50 - 16:
                    assert rows is None, (after, limit)
                elif after > 50:
                    assert rows is None
                else:
                    assert rows == store.read_rows(after, limit), (after, limit)


async def test_a_typed_subscription_skips_other_types_but_moves_past_them(
    store: EventStore,
) -> None:
    for i in range(10):
        await store.append_async("s", [tick(i, "Wanted" if i % 3 == 0 else "Other")])
    subscription = Subscription(store, after=0, types={"Wanted"})
    pages: list[tuple[list[int], int]] = []
    async for events, last in subscription.pages():
        pages.append(([e.data["i"] for e in events], last))
        if last == 10:
            subscription.close()
    assert [i for events, _ in pages for i in events] == [0, 3, 6, 9]
    assert pages[-1][1] == 10 and subscription.position == 10


class Counting:
    """Counts the events it folds; declares the one type it reads."""

    name = "counting"
    version = 1
    types = frozenset({"Wanted"})

    def __init__(self) -> None:
        self.seen: list[str] = []

    def initial(self) -> dict[str, Any]:
        return {"wanted": 0}

    def apply(self, state: dict[str, Any], event: RecordedEvent) -> dict[str, Any]:
        self.seen.append(event.type)
        state["wanted"] += 1
        return state


async def test_live_projections_fold_only_declared_types_and_wait_past_the_others(
    store: EventStore,
) -> None:
    counting = Counting()
    live = LiveProjections(store, [counting])
    await live.start()
    try:
        positions = []
        for i in range(9):
            positions += await store.append_async("s", [tick(i, "Wanted" if i < 3 else "Other")])
        # The last event is of a type nobody reads: waiting for it still returns.
        assert await live.wait_until(positions[-1], timeout=5)
        assert live.state("counting") == {"wanted": 3}
        assert counting.seen == ["Wanted"] * 3
        await live.save()
    finally:
        await live.stop()
    # The checkpoint covers the skipped events too: a restart does not read them again.
    again = LiveProjections(store, [Counting()])
    await again.start()
    try:
        assert again.position == positions[-1]
    finally:
        await again.stop()


def test_new_event_ids_are_time_ordered_uuid7_strings() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, value)
    # Ordered by their millisecond: a later batch of ids sorts after an earlier one.
    stamps = [value[:13] for value in ids]
    assert stamps == sorted(stamps)
    assert abs(int(ids[-1][:8] + ids[-1][9:13], 16) - time.time() * 1000) < 60_000


def test_a_forked_child_draws_ids_of_its_own() -> None:
    new_event_id()  # the parent has ids in reserve
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child != new_event_id()


def test_a_stream_a_new_writer_does_not_know_continues_its_versions(location: str) -> None:
    with open_store(location) as first:
        first.append("old", [tick(0), tick(1)])
    with open_store(location) as second:
        # One group: the old stream (taken as new at first, which the index refutes) and
        # new ones around it; every append lands with the right versions.
        futures = [second.append_future(f"new{i}", [tick(i)]) for i in range(5)]
        futures.append(second.append_future("old", [tick(2)]))
        futures += [second.append_future(f"new{i}", [tick(i)]) for i in range(5)]
        for future in futures:
            future.result()
        assert [e.stream_version for e in second.read_stream("old")] == [0, 1, 2]
        assert [e.stream_version for e in second.read_stream("new3")] == [0, 1]
        assert [e.position for e in second.read_page(0)] == list(range(1, 14))


def test_many_rows_in_one_group_keep_their_order(store: EventStore) -> None:
    futures = [store.append_future(f"s{i % 9}", [tick(i)] * 1) for i in range(700)]
    futures.append(store.append_future("big", [tick(i) for i in range(600)]))
    for future in futures:
        future.result()
    events = store.read_page(0, 5000)
    assert [e.data["i"] for e in events] == list(range(700)) + list(range(600))
    assert [e.stream_version for e in events if e.stream_id == "big"] == list(range(600))
