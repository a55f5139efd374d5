from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from eventstore import EventStore, LiveProjections, NewEvent, SQLiteProjectionTable, canonical, fold
from eventstore.postgres import PostgresProjectionTable
from tests.eventstore.test_projection import Spend


class Count:
    name = "count"
    version = 1

    def initial(self) -> int:
        return 0

    def apply(self, state: int, event: object) -> int:
        return state + 1


def called(model: str, micro_usd: int) -> NewEvent:
    return NewEvent("Called", {"model": model, "micro_usd": micro_usd})


async def test_live_projections_catch_up_follow_and_resume(store: EventStore) -> None:
    for i in range(50):
        await store.append_async("calls", [called("a", i)])
    live = LiveProjections(store, [Spend(), Count()], save_every_s=0.05)
    await live.start()
    position = (await store.append_async("calls", [called("b", 7)]))[-1]
    assert await live.wait_until(position, timeout=5)
    assert live.state("count") == 51
    assert live.state("spend")["models"]["b"] == {"calls": 1, "micro_usd": 7}
    await live.stop()

    for i in range(10):
        await store.append_async("calls", [called("c", i)])
    again = LiveProjections(store, [Spend(), Count()])
    await again.start()
    assert await again.wait_until(store.head(), timeout=5)
    assert again.state("count") == 61, "resumed from the stored checkpoint, nothing twice"
    assert canonical(again.state("spend")) == canonical(fold(Spend(), store.read_all()))
    await again.stop()


async def test_wait_until_times_out_for_a_position_not_yet_written(store: EventStore) -> None:
    live = LiveProjections(store, [Count()])
    await live.start()
    assert not await live.wait_until(10, timeout=0.2)
    waiting = asyncio.create_task(live.wait_until(3, timeout=5))
    for _ in range(3):
        await store.append_async("x", [called("a", 1)])
    assert await waiting
    await live.stop()


class HeldSaves:
    """Saves that wait on their thread until released: a slow disk, or a busy write lock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self.released = threading.Event(), threading.Event()
        for table in (SQLiteProjectionTable, PostgresProjectionTable):
            monkeypatch.setattr(table, "save_many", self._held(table.save_many))

    def _held(self, save_many: Any) -> Any:
        def held(table: Any, saves: Any) -> None:
            self.entered.set()
            self.released.wait(10)
            save_many(table, saves)

        return held

    async def started(self, store: EventStore) -> LiveProjections:
        """Live projections saving at every fold, with a save under way (held)."""
        live = LiveProjections(store, [Count()], save_every_s=0.0)
        await live.start()
        await store.append_async("x", [called("a", 1)])
        assert await asyncio.to_thread(self.entered.wait, 5)
        return live


async def stored_count(store: EventStore) -> tuple[int, int]:
    again = LiveProjections(store, [Count()])
    await again.start()
    stored = again.position, again.state("count")
    await again.stop()
    return stored


async def test_folding_goes_on_while_a_save_waits(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A save waits for its thread and the file's write lock; the log goes on meanwhile.
    saves = HeldSaves(monkeypatch)
    live = await saves.started(store)
    for _ in range(10):
        position = (await store.append_async("x", [called("a", 1)]))[-1]
    assert await live.wait_until(position, timeout=5), "the fold waited for the save"
    assert live.state("count") == 11
    saves.released.set()
    await live.stop()
    assert await stored_count(store) == (position, 11)


async def test_a_save_asked_for_during_the_periodic_one_waits_for_it(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both would start from the same stored checkpoint; the second must not see a rival runner.
    saves = HeldSaves(monkeypatch)
    live = await saves.started(store)
    position = (await store.append_async("x", [called("a", 1)]))[-1]
    assert await live.wait_until(position, timeout=5)
    asked = asyncio.create_task(live.save())
    await asyncio.sleep(0.05)
    saves.released.set()
    await asked
    await live.stop()
    assert await stored_count(store) == (position, 2)


async def test_live_projections_of_two_processes_on_one_log_both_save(store: EventStore) -> None:
    # Two gateways on one log keep the same projections: neither stops for the other's saves,
    # and what is stored is always a state with its own checkpoint.
    first, second = (LiveProjections(store, [Count()], save_every_s=0.0) for _ in range(2))
    await first.start()
    await second.start()
    for _ in range(20):
        position = (await store.append_async("x", [called("a", 1)]))[-1]
        await asyncio.gather(first.save(), second.save())
    assert await first.wait_until(position, timeout=5)
    assert await second.wait_until(position, timeout=5)
    await first.stop()
    await second.stop()
    stored_position, count = await stored_count(store)
    assert count == stored_position == position
