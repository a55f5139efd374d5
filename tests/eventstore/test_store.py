from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import cast

import pytest

from eventstore import (
    ANY,
    LOG_FORMAT,
    NO_STREAM,
    DuplicateEventConflict,
    Durability,
    EventStore,
    LogFormatTooNew,
    NewEvent,
    NotAnEventLog,
    SQLiteReader,
    SQLiteStore,
    StoreClosed,
    StreamAppend,
    Upcasters,
    WrongExpectedVersion,
    open_reader,
    open_store,
    verify_rows,
)
from eventstore._writer import GroupCommitWriter
from tests.logs import DriverError, WriteLocked, execute


def ev(type_: str = "Happened", **data: object) -> NewEvent:
    return NewEvent(type_, data)


def test_positions_are_gap_free_and_in_commit_order(store: EventStore) -> None:
    assert store.append("a", [ev(n=1), ev(n=2)]) == [1, 2]
    assert store.append("b", [ev(n=3)]) == [3]
    assert store.append("a", [ev(n=4)]) == [4]
    assert [e.position for e in store.read_all()] == [1, 2, 3, 4]
    assert [e.data["n"] for e in store.read_all()] == [1, 2, 3, 4]
    assert store.head() == 4


def test_stream_versions_start_at_zero_and_read_back_in_order(store: EventStore) -> None:
    store.append("a", [ev(n=1)])
    store.append("b", [ev(n=2)])
    store.append("a", [ev(n=3)])
    events = store.read_stream("a")
    assert [(e.stream_version, e.data["n"]) for e in events] == [(0, 1), (1, 3)]
    assert store.stream_version("a") == 1
    assert store.stream_version("missing") == NO_STREAM
    assert [e.data["n"] for e in store.read_stream("a", from_version=1)] == [3]


def test_expected_version_no_stream(store: EventStore) -> None:
    store.append("a", [ev()], NO_STREAM)
    with pytest.raises(WrongExpectedVersion) as info:
        store.append("a", [ev()], NO_STREAM)
    assert info.value.actual == 0
    assert info.value.stream_id == "a"


def test_expected_version_int_carries_the_actual_version(store: EventStore) -> None:
    store.append("a", [ev(), ev(), ev()])
    store.append("a", [ev()], 2)
    with pytest.raises(WrongExpectedVersion) as info:
        store.append("a", [ev()], 1)
    assert info.value.expected == 1
    assert info.value.actual == 3
    assert "actual version 3" in str(info.value)
    with pytest.raises(WrongExpectedVersion) as missing:
        store.append("new", [ev()], 0)
    assert missing.value.actual == NO_STREAM


def test_expected_version_any_appends_whatever_the_state(store: EventStore) -> None:
    assert store.append("a", [ev()], ANY) == [1]
    assert store.append("a", [ev()], ANY) == [2]


def test_a_rejected_batch_writes_nothing(store: EventStore) -> None:
    store.append("a", [ev()])
    with pytest.raises(WrongExpectedVersion):
        store.append("a", [ev(n=1), ev(n=2), ev(n=3)], NO_STREAM)
    assert store.head() == 1
    assert len(store.read_stream("a")) == 1


def test_same_event_id_same_content_returns_the_original_positions(store: EventStore) -> None:
    batch = [ev(n=1), ev(n=2)]
    first = store.append("a", batch)
    store.append("b", [ev()])
    # A retry after a lost acknowledgement, even with a now-stale expected version.
    assert store.append("a", batch, NO_STREAM) == first
    assert store.head() == 3


def test_same_event_id_other_content_is_a_conflict(store: EventStore) -> None:
    original = ev(n=1)
    store.append("a", [original])
    forged = NewEvent(original.type, {"n": 2}, event_id=original.event_id)
    with pytest.raises(DuplicateEventConflict):
        store.append("a", [forged])
    moved = NewEvent(original.type, {"n": 1}, event_id=original.event_id)
    with pytest.raises(DuplicateEventConflict):
        store.append("other-stream", [moved])
    assert store.head() == 1


def test_a_batch_partly_appended_before_is_a_conflict(store: EventStore) -> None:
    old = ev(n=1)
    store.append("a", [old])
    with pytest.raises(DuplicateEventConflict, match="part of this batch"):
        store.append("a", [old, ev(n=2)])
    assert store.head() == 1


def test_duplicate_event_id_within_one_group_commit(store: EventStore, location: str) -> None:
    same = ev(n=1)
    with WriteLocked(location):
        store.append_future("sentinel", [ev()])
        _wait_until_taken(store)
        first = store.append_future("a", [same])
        second = store.append_future("a", [same])
    assert first.result() == second.result() == [2]
    assert store.head() == 2
    assert store.stats.commits == 2


def test_a_failing_request_does_not_affect_others_in_its_group(
    store: EventStore, location: str
) -> None:
    with WriteLocked(location):
        # The writer takes the first append and blocks on the lock; the next three queue
        # behind it and so travel in one group.
        first = store.append_future("first", [ev()])
        _wait_until_taken(store)
        good = store.append_future("a", [ev()], NO_STREAM)
        bad = store.append_future("a", [ev()], NO_STREAM)
        also_good = store.append_future("b", [ev()], NO_STREAM)
    assert first.result() == [1]
    assert good.result() == [2]
    with pytest.raises(WrongExpectedVersion):
        bad.result()
    assert also_good.result() == [3]
    assert store.stats.commits == 2
    assert store.stats.appends == 4


def test_batch_with_repeated_event_id_is_refused_before_queueing(store: EventStore) -> None:
    e = ev()
    with pytest.raises(ValueError, match="same event_id twice"):
        store.append("a", [e, e])
    with pytest.raises(ValueError):
        store.append("a", [])


def test_data_that_is_not_json_is_refused_before_queueing(store: EventStore) -> None:
    with pytest.raises(ValueError, match="cannot be stored as JSON"):
        store.append("a", [ev(n=2**70)])
    with pytest.raises(ValueError, match="cannot be stored as JSON"):
        store.append("a", [ev(n=object())])
    assert store.head() == 0


def test_triggers_refuse_update_and_delete(store: EventStore, location: str) -> None:
    store.append("a", [ev(n=1)])
    with pytest.raises(DriverError, match="append-only"):
        execute(location, "UPDATE events SET data = '{}' WHERE position = 1")
    with pytest.raises(DriverError, match="append-only"):
        execute(location, "DELETE FROM events")
    assert store.read_stream("a")[0].data == {"n": 1}


def test_group_commit_acknowledges_only_after_commit(store: EventStore, location: str) -> None:
    lock = WriteLocked(location)
    with lock:
        futures = [store.append_future(f"s{i}", [ev(i=i)]) for i in range(50)]
        # The writer cannot commit while another connection holds the write lock.
        assert not any(f.done() for f in futures)
    positions = sorted(p for f in futures for p in f.result())
    assert positions == list(range(1, 51))
    # Queued while the lock was held, the 50 appends shared a few transactions.
    assert store.stats.commits <= 3
    # Acknowledged means visible to any other connection.
    assert execute(location, "SELECT count(*) FROM events") == [(50,)]


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_durability_sets_sqlite_synchronous(db_path: str, durability: str) -> None:
    with SQLiteStore(db_path, durability=durability) as s:
        level = s._conn.execute("PRAGMA synchronous").fetchone()[0]
        mode = s._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert level == {"full": 2, "normal": 1}[durability]
    assert Durability(durability).value == durability


def test_correlation_and_causation_ids_round_trip(store: EventStore) -> None:
    store.append(
        "a",
        [NewEvent("A", {}, {"correlation_id": "req-1", "causation_id": "evt-0", "actor": "x"})],
    )
    e = store.read_stream("a")[0]
    assert (e.correlation_id, e.causation_id) == ("req-1", "evt-0")
    assert e.metadata["actor"] == "x"


def test_upcasting_on_read_leaves_the_log_untouched(location: str) -> None:
    with open_store(location) as s:
        s.append("a", [NewEvent("Priced", {"usd": 2}, schema_version=1)])
        s.append("a", [NewEvent("Priced", {"cost": {"usd": 3}}, schema_version=2)])
    upcasters = Upcasters()
    upcasters.register("Priced", 1, lambda d: {"cost": {"usd": d["usd"]}})
    with open_store(location, upcasters=upcasters) as s:
        events = s.read_stream("a")
        assert [(e.schema_version, e.data) for e in events] == [
            (2, {"cost": {"usd": 2}}),
            (2, {"cost": {"usd": 3}}),
        ]
        assert verify_rows(s.iter_raw()).ok
        raw = [row[6] for row in s.iter_raw()]
    assert raw[0] == '{"usd":2}'


def test_appending_after_close_is_refused(location: str) -> None:
    s = open_store(location)
    s.close()
    with pytest.raises(StoreClosed):
        s.append("a", [ev()])


def test_close_commits_what_was_queued(location: str) -> None:
    s = open_store(location)
    futures = [s.append_future("a", [ev(i=i)]) for i in range(200)]
    s.close()
    assert all(f.done() and not f.exception() for f in futures)
    with open_store(location) as again:
        assert again.head() == 200


def test_opening_a_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(NotAnEventLog, match="no such file"):
        SQLiteStore(str(tmp_path / "nope.db"), create=False)


def test_opening_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "text.db"
    path.write_text("hello, not a database\n" * 10)
    with pytest.raises(NotAnEventLog, match="not an SQLite database"):
        SQLiteStore(str(path))
    assert path.read_text().startswith("hello")


def test_opening_an_sqlite_file_that_is_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(NotAnEventLog, match="not an ATOM event log"):
        SQLiteStore(str(path))


def test_opening_a_log_from_a_newer_atom(db_path: str) -> None:
    SQLiteStore(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {LOG_FORMAT + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(LogFormatTooNew, match="newer ATOM"):
        SQLiteStore(db_path)


async def test_append_async_never_blocks_the_loop(store: EventStore, location: str) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    lock = WriteLocked(location)
    lock.__enter__()
    append = asyncio.create_task(store.append_async("a", [ev()]))
    await asyncio.sleep(0.05)
    # The append waits for the write lock while the loop keeps running other tasks.
    assert not append.done()
    before = ticks
    await asyncio.sleep(0.05)
    assert ticks > before
    lock.__exit__(None, None, None)
    assert await append == [1]
    assert [e.position for e in await store.read_page_async(0)] == [1]
    assert len(await store.read_stream_async("a")) == 1
    task.cancel()


def _wait_until_taken(store: EventStore) -> None:
    queue = cast(GroupCommitWriter, store)._queue
    for _ in range(1000):
        if queue.empty():
            return
        time.sleep(0.001)
    raise AssertionError("the writer did not take the queued append")


def test_a_batch_over_several_streams_is_all_or_nothing(store: EventStore) -> None:
    store.append("b", [ev()])
    parts = [
        StreamAppend("a", [ev(n=1), ev(n=2)], NO_STREAM),
        StreamAppend("b", [ev(n=3)], NO_STREAM),
    ]
    with pytest.raises(WrongExpectedVersion) as info:
        store.append_batch(parts)
    assert info.value.stream_id == "b"
    assert store.head() == 1
    assert store.stream_version("a") == NO_STREAM
    parts[1] = StreamAppend("b", parts[1].events, 0)
    assert store.append_batch(parts) == [[2, 3], [4]]
    # Retried whole, the batch is recognised and nothing is added.
    assert store.append_batch(parts) == [[2, 3], [4]]
    assert store.head() == 4


def test_a_failed_unit_in_a_group_leaves_no_trace(store: EventStore, location: str) -> None:
    with WriteLocked(location):
        store.append_future("first", [ev()])
        _wait_until_taken(store)
        before = store.append_future("a", [ev(n=1)])
        doomed = store.append_batch_future(
            [StreamAppend("a", [ev(n=2)]), StreamAppend("z", [ev(n=3)], 5)]
        )
        after = store.append_future("a", [ev(n=4)], 0)
    assert before.result() == [2]
    with pytest.raises(WrongExpectedVersion):
        doomed.result()
    # The doomed unit's event for "a" was undone, so "a" is still at version 0 for the next.
    assert after.result() == [3]
    assert [e.data["n"] for e in store.read_stream("a")] == [1, 4]
    assert verify_rows(store.iter_raw()).ok


def test_a_reader_changes_nothing_and_sees_the_writer(location: str) -> None:
    with open_store(location) as store:
        store.append("a", [ev(n=1)])
        with open_reader(location) as reader:
            assert [e.data for e in reader.read_all()] == [{"n": 1}]
            store.append("a", [ev(n=2)])
            assert reader.head() == 2
            assert reader.stream_version("a") == 1


def test_an_sqlite_reader_cannot_write(db_path: str) -> None:
    SQLiteStore(db_path).close()
    with SQLiteReader(db_path) as reader, pytest.raises(sqlite3.OperationalError):
        reader._reader().execute("INSERT INTO events (position) VALUES (99)")


def test_a_reader_refuses_what_is_not_a_log(tmp_path: Path) -> None:
    with pytest.raises(NotAnEventLog, match="no such file"):
        SQLiteReader(str(tmp_path / "missing.db"))
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(NotAnEventLog, match="not an ATOM event log"):
        SQLiteReader(str(empty))
