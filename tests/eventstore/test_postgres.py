"""What only the PostgreSQL store has to show: several processes appending at once while readers
never see a gap, commits pushed to every process, its schema, durability and connections."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from eventstore import (
    LOG_FORMAT,
    EventStoreError,
    LogFormatTooNew,
    LogUnavailable,
    NewEvent,
    NotAnEventLog,
    Subscription,
    open_reader,
    open_store,
    verify_rows,
)
from eventstore._chain import GENESIS, event_hash
from eventstore.postgres import PostgresReader, PostgresStore
from tests.logs import DriverError, execute

ROOT = Path(__file__).parents[2]

# Each writer process appends from three threads at once, one small batch at a time, so that
# its writer commits many short transactions and the processes' commits interleave.
_WRITER = """
import sys, threading
from eventstore import NewEvent, open_store
location, name, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open_store(location) as store:
    def run(t):
        for i in range(batches):
            size = 1 + (i + t) % 3
            store.append(f"{name}-{t}", [NewEvent("Chunk", {"i": i, "j": j}) for j in range(size)])
    threads = [threading.Thread(target=run, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
"""
WRITERS, BATCHES = 4, 60
EVENTS = WRITERS * sum(1 + (i + t) % 3 for t in range(3) for i in range(BATCHES))


def _writers(location: str, batches: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, "-c", _WRITER, location, f"w{k}", str(batches)], cwd=ROOT)
        for k in range(WRITERS)
    ]


def test_readers_never_see_a_position_before_a_lower_one_while_processes_append(
    postgres_url: str,
) -> None:
    open_store(postgres_url).close()
    writers = _writers(postgres_url, BATCHES)
    seen, previous, reads, switches, last_writer = 0, GENESIS, 0, 0, ""
    with open_reader(postgres_url) as reader:
        while True:
            running = any(w.poll() is None for w in writers)
            rows = reader.read_rows(seen, 500)
            reads += 1
            for row in rows:
                # Gap-free in commit order: what a reader sees next is always the next position,
                # so a position seen later can never be lower than one seen before.
                assert row[0] == seen + 1, f"read {row[0]} after {seen}"
                assert event_hash(previous, *row[:9]) == row[9], f"chain broken at {row[0]}"
                writer = row[1].partition("-")[0]
                switches += writer != last_writer
                seen, previous, last_writer = row[0], row[9], writer
            if not running and not rows:
                break
    assert [w.wait() for w in writers] == [0] * WRITERS
    assert seen == EVENTS
    # The processes did append at once: the log switches between them again and again, and
    # the reader read while they did.
    assert switches > WRITERS * 3
    assert reads > 10


def test_the_multi_process_log_verifies_with_every_stream_in_order(postgres_url: str) -> None:
    open_store(postgres_url).close()
    assert [w.wait() for w in _writers(postgres_url, 20)] == [0] * WRITERS
    with open_reader(postgres_url) as reader:
        report = verify_rows(reader.iter_raw())
        assert report.ok, report.problem
        assert report.streams == WRITERS * 3
        for k in range(WRITERS):
            events = reader.read_stream(f"w{k}-0")
            assert [(e.data["i"], e.data["j"]) for e in events] == [
                (i, j) for i in range(20) for j in range(1 + i % 3)
            ]


_APPEND_TEN = """
import sys
from eventstore import NewEvent, open_store
with open_store(sys.argv[1]) as store:
    for i in range(10):
        store.append("other", [NewEvent("FromThere", {"i": i})])
"""


async def test_a_subscriber_hears_another_process_by_notification_not_polling(
    postgres_url: str,
) -> None:
    with open_store(postgres_url) as store:
        # Polling once an hour: only a notification can bring the other process's events.
        subscription = Subscription(store, after=0, poll_interval=3600)
        positions: list[int] = []

        async def follow() -> None:
            async for event in subscription:
                positions.append(event.position)
                if len(positions) == 10:
                    subscription.close()

        follower = asyncio.create_task(follow())
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _APPEND_TEN, postgres_url, cwd=ROOT
        )
        assert await child.wait() == 0
        await asyncio.wait_for(follower, 20)
    assert positions == list(range(1, 11))


def test_wait_for_returns_when_another_process_commits(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        woken = threading.Event()

        def wait() -> None:
            if store.wait_for(10, timeout=3600):
                woken.set()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        subprocess.run([sys.executable, "-c", _APPEND_TEN, postgres_url], cwd=ROOT, check=True)
        assert woken.wait(20)


def test_the_writer_reconnects_and_the_listener_listens_again(postgres_url: str) -> None:
    with open_store(postgres_url) as store, open_store(postgres_url) as other:
        assert isinstance(store, PostgresStore)
        store.append("s", [NewEvent("Before", {})])
        execute(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE pid IN ({store._writer_pid}, {store._listen_conn.info.backend_pid})",
        )
        # The append that meets the broken connection is committed on a new one.
        assert store.append("s", [NewEvent("After", {})]) == [2]
        other.append("o", [NewEvent("Elsewhere", {})])
        assert store.wait_for(3, timeout=20)
        assert [e.type for e in store.read_all()] == ["Before", "After", "Elsewhere"]


@pytest.mark.parametrize(("durability", "setting"), [("full", "on"), ("normal", "off")])
def test_durability_sets_synchronous_commit(
    postgres_url: str, durability: str, setting: str
) -> None:
    with open_store(postgres_url, durability=durability) as store:
        assert isinstance(store, PostgresStore)
        assert store._conn.execute("SHOW synchronous_commit").fetchone() == (setting,)
        store._conn.rollback()


def test_truncate_is_refused_and_a_reader_cannot_write(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        store.append("a", [NewEvent("Kept", {})])
    with pytest.raises(DriverError, match="append-only: TRUNCATE refused"):
        execute(postgres_url, "TRUNCATE events")
    with open_reader(postgres_url) as reader:
        assert isinstance(reader, PostgresReader) and not isinstance(reader, PostgresStore)
        with reader._pool.connection() as conn, pytest.raises(DriverError, match="read-only"):
            conn.execute("INSERT INTO atom_log (format) VALUES (1)")
        assert reader.head() == 1


def test_several_processes_creating_the_log_at_once_make_one(postgres_url: str) -> None:
    stores: list[PostgresStore] = []
    barrier = threading.Barrier(4)

    def make() -> None:
        barrier.wait()
        stores.append(PostgresStore(postgres_url))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stores) == 4
    for store in stores:
        store.append("s", [NewEvent("Hello", {})])
        store.close()
    assert execute(postgres_url, "SELECT count(*) FROM atom_log") == [(1,)]


def test_opening_a_database_without_a_log(postgres_url: str) -> None:
    with pytest.raises(NotAnEventLog, match="not an ATOM event log"):
        open_store(postgres_url, create=False)
    with pytest.raises(NotAnEventLog, match="not an ATOM event log"):
        open_reader(postgres_url)
    execute(postgres_url, "CREATE TABLE events (id integer)")
    with pytest.raises(NotAnEventLog, match="'events' table that is not an ATOM event log"):
        open_store(postgres_url)


def test_opening_a_log_from_a_newer_atom(postgres_url: str) -> None:
    open_store(postgres_url).close()
    execute(postgres_url, f"UPDATE atom_log SET format = {LOG_FORMAT + 1}")
    with pytest.raises(LogFormatTooNew, match="newer ATOM"):
        open_store(postgres_url)


def test_a_database_that_cannot_be_reached_names_the_url_without_its_password(
    postgres_url: str,
) -> None:
    absent = postgres_url.replace("postgres:@/", "postgres:secret@/").replace(
        "/atom_test_", "/no_such_database_"
    )
    with pytest.raises(LogUnavailable, match="no_such_database") as caught:
        open_store(absent)
    assert "secret" not in str(caught.value)
    assert isinstance(caught.value, EventStoreError)
