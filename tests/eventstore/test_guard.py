"""Guarded appends: a condition decided under the log's write lock, over what others wrote.

Two stores on one log stand for two processes (two gateway nodes): each has its own writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

import pytest

from eventstore import (
    BufferedStream,
    EventStore,
    Guard,
    GuardRefused,
    NewEvent,
    RecordedEvent,
    open_store,
)


def took(n: int, by: str = "") -> NewEvent:
    return NewEvent("Took", {"n": n, "by": by})


def noted(n: int) -> NewEvent:
    return NewEvent("Noted", {"n": n})


class Seen:
    """A guard that lets everything through and keeps what it was shown."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []

    def __call__(self, events: Sequence[RecordedEvent]) -> str | None:
        self.events.extend(events)
        return None


def test_a_guard_sees_what_others_committed_after_its_position_and_nothing_of_its_own(
    store: EventStore, location: str
) -> None:
    store.append("mine", [took(1)])
    with open_store(location) as other:
        other.append("theirs", [took(2), noted(3)])
        store.append("mine", [took(4)])
        other.append("theirs", [took(5)])
        seen, typed = Seen(), Seen()
        positions = _guarded(store, "mine", [noted(6)], Guard(0, seen))
        assert [e.data["n"] for e in seen.events] == [2, 3, 5]
        _guarded(store, "mine", [noted(7)], Guard(positions[-1] - 3, typed, frozenset({"Took"})))
        assert [e.data["n"] for e in typed.events] == [5]


def test_a_refused_append_writes_nothing(store: EventStore, location: str) -> None:
    with open_store(location) as other:
        other.append("theirs", [took(1)])
    head = store.head()

    def refuse(events: Sequence[RecordedEvent]) -> str | None:
        return f"{len(events)} taken already"

    with pytest.raises(GuardRefused) as refused:
        _guarded(store, "mine", [took(2)], Guard(0, refuse))
    assert refused.value.reason == "1 taken already"
    assert store.head() == head and store.read_stream("mine") == []


def test_guarded_takers_on_two_writers_never_take_more_than_there_is(
    store: EventStore, location: str
) -> None:
    limit, attempts = 12, 15
    with open_store(location) as other:

        def taker(writer: EventStore, name: str) -> None:
            for _ in range(attempts):
                seen_at = writer.head()
                # What this taker saw: every Took up to where it looked.
                had = sum(1 for e in writer.read_all(until=seen_at) if e.type == "Took")

                def fits(events: Sequence[RecordedEvent], had: int = had) -> str | None:
                    return None if had + len(events) < limit else "none left"

                with contextlib.suppress(GuardRefused):
                    _guarded(writer, f"taker-{name}", [took(0, name)], Guard(seen_at, fits))

        threads = [
            threading.Thread(target=taker, args=(writer, name))
            # One taker a writer: a writer's own appenders account for each other themselves.
            for writer, name in ((store, "a"), (other, "b"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    taken = [e for e in store.read_all() if e.type == "Took"]
    # Each refusal was for want of room: every unit was taken, and never one more.
    assert len(taken) == limit
    assert len({e.data["by"] for e in taken}) > 1


async def test_a_refused_buffered_append_gives_its_events_back(store: EventStore) -> None:
    log = BufferedStream(store, "request-1")
    committed: list[int] = []
    log.add(noted(1), on_committed=committed.append)
    reserved = took(2)
    log.add(reserved)

    with pytest.raises(GuardRefused):
        await log.commit(Guard(0, lambda _events: "no room"))
    assert store.read_stream("request-1") == []
    # The owner takes back what may not be written; the rest follows with what comes next.
    log.withdraw(reserved)
    log.add(noted(3))
    await log.commit()
    assert [e.data["n"] for e in store.read_stream("request-1")] == [1, 3]
    assert committed == [store.read_stream("request-1")[0].position]


def _guarded(store: EventStore, stream: str, events: list[NewEvent], guard: Guard) -> list[int]:
    """Append with a guard from a thread, through the store's asyncio interface."""

    async def append() -> list[int]:
        return await store.append_soon(stream, events, guard=guard)

    return asyncio.run(append())
