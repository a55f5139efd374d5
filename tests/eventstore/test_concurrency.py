"""Threads and processes appending to one log."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from eventstore import (
    EventStore,
    NewEvent,
    Subscription,
    WrongExpectedVersion,
    open_store,
    verify_rows,
)


def test_threads_racing_for_each_version_have_exactly_one_winner(store: EventStore) -> None:
    threads, rounds = 8, 25
    wins: list[tuple[int, int]] = []
    losses = 0
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def contend(k: int) -> None:
        nonlocal losses
        barrier.wait()
        for _ in range(rounds * threads):
            version = store.stream_version("contested")
            if version >= rounds - 1:
                return
            try:
                store.append("contested", [NewEvent("Won", {"by": k})], version)
            except WrongExpectedVersion as exc:
                assert exc.actual > version
                with lock:
                    losses += 1
                continue
            with lock:
                wins.append((version + 1, k))

    workers = [threading.Thread(target=contend, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(v for v, _ in wins) == list(range(rounds))
    events = store.read_stream("contested")
    assert [e.stream_version for e in events] == list(range(rounds))
    assert [e.data["by"] for e in events] == [k for _, k in sorted(wins)]
    assert [e.position for e in store.read_all()] == list(range(1, rounds + 1))
    assert verify_rows(store.iter_raw()).ok


_CHILD = """
import sys
from eventstore import NewEvent, open_store
location, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open_store(location) as store:
    futures = [store.append_future(f"{name}-{i % 5}", [NewEvent("FromChild", {"i": i})])
               for i in range(count)]
    for f in futures:
        f.result()
"""


def test_several_processes_append_to_one_log(location: str) -> None:
    open_store(location).close()
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, location, f"p{k}", "300"]) for k in range(3)
    ]
    with open_store(location) as store:
        for i in range(300):
            store.append(f"parent-{i % 5}", [NewEvent("FromParent", {"i": i})])
        for child in children:
            assert child.wait(timeout=60) == 0
        events = list(store.read_all())
        assert [e.position for e in events] == list(range(1, 1201))
        report = verify_rows(store.iter_raw())
        assert report.ok, report.problem
        assert report.streams == 20
        for k in range(3):
            assert sorted(e.data["i"] for e in events if e.stream_id.startswith(f"p{k}-")) == list(
                range(300)
            )


def test_a_subscriber_sees_another_process_events_within_a_second(location: str) -> None:
    with open_store(location) as store:
        store.append("before", [NewEvent("Old", {})])
        subscription = Subscription(store, after=0)
        seen: list[tuple[int, float]] = []

        def follow() -> None:
            for event in subscription:
                seen.append((event.position, time.monotonic()))
                if len(seen) == 11:
                    subscription.close()

        follower = threading.Thread(target=follow)
        follower.start()
        started = time.monotonic()
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, location, "other", "10"], timeout=60, check=True
        )
        assert child.returncode == 0
        finished = time.monotonic()
        follower.join(timeout=5)
        assert not follower.is_alive()
    assert [p for p, _ in seen] == list(range(1, 12))
    # The last event was committed before the child exited; a poll finds it soon after.
    assert seen[-1][1] - finished < 1.0
    assert seen[-1][1] > started
