from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import (
    ConcurrentRunner,
    EventStore,
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    SQLiteStore,
    canonical,
    fold,
    open_store,
)


class Spend:
    """Calls and cost per model: the kind of fold the dashboard is built from."""

    name = "spend"
    version = 1

    def initial(self) -> dict[str, Any]:
        return {"models": {}, "events": 0}

    def apply(self, state: dict[str, Any], event: RecordedEvent) -> dict[str, Any]:
        state["events"] += 1
        if event.type == "Called":
            row = state["models"].setdefault(event.data["model"], {"calls": 0, "micro_usd": 0})
            row["calls"] += 1
            row["micro_usd"] += event.data["micro_usd"]
        return state


def _called(model: str, micro_usd: int) -> NewEvent:
    return NewEvent("Called", {"model": model, "micro_usd": micro_usd})


events_strategy = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 10_000), st.booleans()),
    min_size=1,
    max_size=60,
)


@settings(max_examples=25, deadline=None)
@given(events=events_strategy, cuts=st.lists(st.integers(0, 60), max_size=5))
def test_incremental_state_equals_rebuild_from_zero(
    tmp_path_factory: pytest.TempPathFactory, events: list[tuple[str, int, bool]], cuts: list[int]
) -> None:
    path = str(tmp_path_factory.mktemp("proj") / "log.db")
    with SQLiteStore(path) as store:
        for model, cost, noise in events:
            store.append("calls", [_called(model, cost) if not noise else NewEvent("Other", {})])
        # Incrementally, in arbitrary steps and with restarts in between.
        for cut in sorted(cuts):
            runner = ProjectionRunner(store, Spend(), page_size=7)
            runner.catch_up(until=cut)
            runner.close()
        runner = ProjectionRunner(store, Spend(), page_size=7)
        runner.catch_up()
        incremental = runner.state
        runner.close()
        rebuilt = fold(Spend(), store.read_all())
    assert canonical(incremental) == canonical(rebuilt)
    assert rebuilt["events"] == len(events)
    assert sum(m["calls"] for m in rebuilt["models"].values()) == sum(
        1 for *_, n in events if not n
    )


def test_state_and_checkpoint_survive_a_restart(store: EventStore) -> None:
    for i in range(100):
        store.append("calls", [_called("a", i)])
    runner = ProjectionRunner(store, Spend())
    assert runner.catch_up() == 100
    runner.close()
    store.append("calls", [_called("b", 5)])
    again = ProjectionRunner(store, Spend())
    assert again.position == 100
    again.catch_up()
    assert again.state["models"] == {
        "a": {"calls": 100, "micro_usd": sum(range(100))},
        "b": {"calls": 1, "micro_usd": 5},
    }
    again.close()


def test_a_new_projection_version_rebuilds_from_zero(store: EventStore) -> None:
    store.append("calls", [_called("a", 1), _called("a", 2)])
    runner = ProjectionRunner(store, Spend())
    runner.catch_up()
    runner.close()

    class SpendV2(Spend):
        version = 2

        def apply(self, state: dict[str, Any], event: RecordedEvent) -> dict[str, Any]:
            state = super().apply(state, event)
            state["v2"] = True
            return state

    upgraded = ProjectionRunner(store, SpendV2())
    assert upgraded.position == 0
    upgraded.catch_up()
    assert upgraded.state["events"] == 2 and upgraded.state["v2"] is True
    upgraded.close()


def test_wait_until_reads_your_own_writes(store: EventStore) -> None:
    runner = ProjectionRunner(store, Spend())
    runner.start(poll_interval=0.05)
    try:
        for i in range(20):
            position = store.append("calls", [_called("a", 1)])[-1]
            assert runner.wait_until(position, timeout=10)
            assert runner.state["models"]["a"]["calls"] == i + 1
    finally:
        runner.close()


def test_two_runners_on_one_projection_are_detected(store: EventStore) -> None:
    store.append("calls", [_called("a", 1)])
    first = ProjectionRunner(store, Spend())
    second = ProjectionRunner(store, Spend())
    first.catch_up()
    with pytest.raises(ConcurrentRunner):
        second.catch_up()
    first.close()
    second.close()


def test_a_state_stored_in_another_database(store: EventStore, tmp_path: Path) -> None:
    store.append("calls", [_called("a", 3)])
    runner = ProjectionRunner(store, Spend(), db_path=str(tmp_path / "projections.db"))
    runner.catch_up()
    runner.close()
    assert ProjectionRunner(store, Spend(), db_path=str(tmp_path / "projections.db")).position == 1


_RUNNER = """
import sys
from tests.eventstore.test_projection import Spend
from eventstore import ProjectionRunner, open_store
with open_store(sys.argv[1]) as store:
    runner = ProjectionRunner(store, Spend(), page_size=50)
    print("started", flush=True)
    runner.catch_up()
"""


@pytest.mark.slow
def test_a_runner_killed_mid_run_resumes_without_double_counting(location: str) -> None:
    rng = random.Random(7)
    with open_store(location) as store:
        futures = [
            store.append_future("calls", [_called(rng.choice("abc"), rng.randint(0, 99))])
            for _ in range(20_000)
        ]
        for f in futures:
            f.result()
        expected = canonical(fold(Spend(), store.read_all()))
    kills = 0
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, location],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        assert child.stdout is not None
        child.stdout.readline()
        time.sleep(rng.uniform(0.05, 0.4))
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        child.wait(timeout=30)
    assert kills >= 1
    with open_store(location) as store:
        runner = ProjectionRunner(store, Spend())
        assert runner.position > 0
        runner.catch_up()
        assert canonical(runner.state) == expected
        runner.close()
