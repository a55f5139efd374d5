"""The SQLite event store: one writer thread with group commit, readers on their own connections."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ._chain import GENESIS, event_hash
from ._schema import Durability, connect
from .errors import (
    DuplicateEventConflict,
    EventStoreError,
    StoreClosed,
    WrongExpectedVersion,
)
from .events import ANY, NO_STREAM, ExpectedVersion, NewEvent, RecordedEvent
from .upcasting import Upcasters

_COLUMNS: Final = (
    "position, stream_id, stream_version, event_id, type, schema_version, data, metadata, "
    "recorded_at, hash"
)
_READ_PAGE: Final = 2000
_SQL_VARIABLES: Final = 500
_INSERT: Final = f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
_VERSION_CACHE: Final = 100_000

Row = tuple[int, str, int, str, str, int, str, str, str, str]


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class _Append:
    """One appender's request, serialised by the appender so the writer only writes."""

    stream_id: str
    expected: ExpectedVersion
    # (event_id, type, schema_version, data json, metadata json)
    rows: list[tuple[str, str, int, str, str]]
    future: Future[list[int]]


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of the writer: how many transactions carried how many appends."""

    commits: int
    appends: int
    events: int


class EventStore:
    """An append-only event log in one SQLite file.

    Thread-safe; use `append` from threads and `append_async` from asyncio. An append is
    acknowledged (its future resolved) only after the transaction holding it has committed.
    """

    def __init__(
        self,
        path: str,
        *,
        durability: Durability | str = Durability.FULL,
        upcasters: Upcasters | None = None,
        create: bool = True,
        max_group_events: int = 10_000,
    ) -> None:
        self.path = str(path)
        self.durability = Durability(durability)
        self.upcasters = upcasters or Upcasters()
        self._max_group_events = max_group_events
        # Opening here surfaces a bad file to the caller instead of the writer thread.
        self._write_conn = connect(self.path, create=create, durability=self.durability)
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._committed = threading.Condition()
        self._head = self._written_head = self._read_head(self._write_conn)[0]
        # Last version of recently written streams; valid while no other process writes.
        self._versions: dict[str, int] = {}
        self._listeners: list[Callable[[int], None]] = []
        self._commits = self._appends = self._events = 0
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eventstore-read")
        self._writer = threading.Thread(
            target=self._write_loop, name="eventstore-writer", daemon=True
        )
        self._writer.start()

    # ----------------------------------------------------------------------------- appends

    def append_future(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> Future[list[int]]:
        """Queue an atomic batch; the future gives its positions once committed."""
        if not events:
            raise ValueError("append needs at least one event")
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError("stream_id must be a non-empty string")
        ids = [e.event_id for e in events]
        if len(set(ids)) != len(ids):
            raise ValueError("a batch holds the same event_id twice")
        try:
            rows = [
                (e.event_id, e.type, e.schema_version, _dumps(e.data), _dumps(dict(e.metadata)))
                for e in events
            ]
        except TypeError as exc:
            raise ValueError(
                f"an event's data or metadata cannot be stored as JSON: {exc}"
            ) from exc
        future: Future[list[int]] = Future()
        with self._close_lock:
            if self._closed:
                raise StoreClosed("the event store is closed")
            self._queue.put(_Append(stream_id, expected_version, rows, future))
        return future

    def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> list[int]:
        """Append an atomic batch and block until it is committed; returns its positions."""
        return self.append_future(stream_id, events, expected_version).result()

    async def append_async(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> list[int]:
        """Append from asyncio without blocking the loop; returns once committed."""
        return await asyncio.wrap_future(self.append_future(stream_id, events, expected_version))

    # ------------------------------------------------------------------------------ writer

    def _write_loop(self) -> None:
        conn = self._write_conn
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            size = len(first.rows)
            while size < self._max_group_events:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                size += len(item.rows)
            self._commit_group(conn, group)
        conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Append]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            head, previous = self._read_head(conn)
            if head != self._written_head:
                # Another process appended since our last commit: cached versions may be stale.
                self._versions.clear()
            # Retried event_ids are rare: insert optimistically and let the UNIQUE index
            # catch one; only then look up which ids exist and decide the group again.
            outcomes, inserts, versions = self._plan(conn, group, head, previous, {})
            conn.execute("SAVEPOINT optimistic")
            try:
                conn.executemany(_INSERT, inserts)
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK TO optimistic")
                existing = self._existing_ids(conn, group)
                outcomes, inserts, versions = self._plan(conn, group, head, previous, existing)
                conn.executemany(_INSERT, inserts)
            conn.execute("RELEASE optimistic")
            conn.execute("COMMIT")
            if len(self._versions) > _VERSION_CACHE:
                self._versions.clear()
            self._versions.update(versions)
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._versions.clear()
            error = (
                exc
                if isinstance(exc, EventStoreError)
                else EventStoreError(f"commit failed: {exc}")
            )
            for request in group:
                request.future.set_exception(error)
            return
        if inserts:
            head = inserts[-1][0]
        self._written_head = head
        self._commits += 1
        self._appends += len(group)
        self._events += len(inserts)
        with self._committed:
            self._head = max(self._head, head)
            self._committed.notify_all()
        for request, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, list):
                request.future.set_result(outcome)
            else:
                request.future.set_exception(outcome)
        for listener in list(self._listeners):
            try:
                listener(head)
            except Exception:
                self._listeners.remove(listener)

    def _plan(
        self,
        conn: sqlite3.Connection,
        group: list[_Append],
        head: int,
        previous: str,
        existing: dict[str, tuple[Any, ...]],
    ) -> tuple[list[list[int] | EventStoreError], list[Row], dict[str, int]]:
        """Decide every request of a group in memory, so the group needs one INSERT statement.

        Returns the outcome of each request, the rows to insert and the streams' new versions.
        """
        self._load_versions(conn, {r.stream_id for r in group})
        versions: dict[str, int] = {}
        known_versions = self._versions
        recorded_at = _now()
        outcomes: list[list[int] | EventStoreError] = []
        inserts: list[Row] = []
        # event_ids written earlier in this same group, with their content and position
        fresh: dict[str, tuple[Any, ...]] = {}
        for request in group:
            try:
                known = [existing.get(row[0]) or fresh.get(row[0]) for row in request.rows]
                if any(known):
                    outcomes.append(self._idempotent(request, known))
                    continue
                actual = versions.get(request.stream_id)
                if actual is None:
                    actual = known_versions[request.stream_id]
                if request.expected is not ANY and request.expected != actual:
                    # A retry of an acknowledged append meets a moved stream: look its ids up
                    # before calling it a conflict (the optimistic path has not looked).
                    earlier = existing or self._existing_ids(conn, [request])
                    known = [earlier.get(row[0]) for row in request.rows]
                    if any(known):
                        outcomes.append(self._idempotent(request, known))
                        continue
                    raise WrongExpectedVersion(request.stream_id, request.expected, actual)
            except EventStoreError as exc:
                outcomes.append(exc)
                continue
            positions = []
            version = actual
            stream_id = request.stream_id
            for event_id, type_, schema_version, data, metadata in request.rows:
                head += 1
                version += 1
                previous = event_hash(
                    previous,
                    head,
                    stream_id,
                    version,
                    event_id,
                    type_,
                    schema_version,
                    data,
                    metadata,
                    recorded_at,
                )
                inserts.append(
                    (
                        head,
                        stream_id,
                        version,
                        event_id,
                        type_,
                        schema_version,
                        data,
                        metadata,
                        recorded_at,
                        previous,
                    )
                )
                fresh[event_id] = (event_id, head, stream_id, type_, schema_version, data, metadata)
                positions.append(head)
            versions[stream_id] = version
            outcomes.append(positions)
        return outcomes, inserts, versions

    @staticmethod
    def _existing_ids(conn: sqlite3.Connection, group: list[_Append]) -> dict[str, tuple[Any, ...]]:
        ids = [row[0] for request in group for row in request.rows]
        found: dict[str, tuple[Any, ...]] = {}
        for i in range(0, len(ids), _SQL_VARIABLES):
            chunk = ids[i : i + _SQL_VARIABLES]
            for row in conn.execute(
                "SELECT event_id, position, stream_id, type, schema_version, data, metadata "
                f"FROM events WHERE event_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                found[row[0]] = row
        return found

    def _load_versions(self, conn: sqlite3.Connection, streams: set[str]) -> None:
        missing = [s for s in streams if s not in self._versions]
        for i in range(0, len(missing), _SQL_VARIABLES):
            chunk = missing[i : i + _SQL_VARIABLES]
            for stream_id in chunk:
                self._versions[stream_id] = NO_STREAM
            for stream_id, version in conn.execute(
                "SELECT stream_id, max(stream_version) FROM events "
                f"WHERE stream_id IN ({','.join('?' * len(chunk))}) GROUP BY stream_id",
                chunk,
            ):
                self._versions[stream_id] = version

    @staticmethod
    def _idempotent(request: _Append, known: list[tuple[Any, ...] | None]) -> list[int]:
        positions = []
        for (event_id, type_, schema_version, data, metadata), row in zip(
            request.rows, known, strict=True
        ):
            if row is None:
                raise DuplicateEventConflict(
                    event_id, "part of this batch was appended before, part was not"
                )
            if (row[2], row[3], row[4], row[5], row[6]) != (
                request.stream_id,
                type_,
                schema_version,
                data,
                metadata,
            ):
                raise DuplicateEventConflict(event_id, "appended before with other content")
            positions.append(row[1])
        return positions

    @staticmethod
    def _read_head(conn: sqlite3.Connection) -> tuple[int, str]:
        row = conn.execute(
            "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
        ).fetchone()
        return (0, GENESIS) if row is None else (row[0], row[1])

    # ------------------------------------------------------------------------------- reads

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _to_event(self, row: Row) -> RecordedEvent:
        position, stream_id, stream_version, event_id, type_, schema_version, data, meta, at, h = (
            row
        )
        payload = orjson.loads(data)
        if self.upcasters.needs_upcast(type_, schema_version):
            schema_version, payload = self.upcasters.upcast(type_, schema_version, payload)
        return RecordedEvent(
            position,
            stream_id,
            stream_version,
            event_id,
            type_,
            schema_version,
            payload,
            orjson.loads(meta),
            at,
            h,
        )

    def head(self) -> int:
        """The last committed position in the log (0 when empty), whoever wrote it."""
        row = self._reader().execute("SELECT max(position) FROM events").fetchone()
        return int(row[0] or 0)

    def stream_version(self, stream_id: str) -> int:
        """The stream's last version, or NO_STREAM."""
        row = (
            self._reader()
            .execute("SELECT max(stream_version) FROM events WHERE stream_id = ?", (stream_id,))
            .fetchone()
        )
        return NO_STREAM if row[0] is None else int(row[0])

    def read_stream(self, stream_id: str, from_version: int = 0) -> list[RecordedEvent]:
        """The stream's events in version order, starting at `from_version`."""
        rows = (
            self._reader()
            .execute(
                f"SELECT {_COLUMNS} FROM events WHERE stream_id = ? AND stream_version >= ? "
                "ORDER BY stream_version",
                (stream_id, from_version),
            )
            .fetchall()
        )
        return [self._to_event(row) for row in rows]

    def read_page(self, after: int = 0, limit: int = _READ_PAGE) -> list[RecordedEvent]:
        """Up to `limit` events with positions greater than `after`, in order."""
        rows = (
            self._reader()
            .execute(
                f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (after, limit),
            )
            .fetchall()
        )
        return [self._to_event(row) for row in rows]

    def read_all(self, after: int = 0, *, until: int | None = None) -> Iterator[RecordedEvent]:
        """Every event after position `after` (up to `until`), read page by page."""
        while True:
            page = self.read_page(after)
            for event in page:
                if until is not None and event.position > until:
                    return
                yield event
            if len(page) < _READ_PAGE:
                return
            after = page[-1].position

    def iter_raw(self, after: int = 0) -> Iterator[Row]:
        """Rows exactly as stored, without decoding or upcasting (for verify and export)."""
        conn = self._reader()
        while True:
            rows: list[Row] = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (after, _READ_PAGE),
            ).fetchall()
            yield from rows
            if len(rows) < _READ_PAGE:
                return
            after = rows[-1][0]

    async def read_stream_async(self, stream_id: str, from_version: int = 0) -> list[RecordedEvent]:
        """read_stream from asyncio, on the store's reader threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.read_stream, stream_id, from_version)

    async def read_page_async(self, after: int = 0, limit: int = _READ_PAGE) -> list[RecordedEvent]:
        """read_page from asyncio, on the store's reader threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.read_page, after, limit)

    # ------------------------------------------------------------------- waiting for commits

    def wait_for(self, position: int, timeout: float | None = None) -> bool:
        """Block until `position` is committed by this store (or seen written by another)."""
        with self._committed:
            if self._committed.wait_for(lambda: self._head >= position, timeout=timeout):
                return True
        return self.head() >= position

    def add_commit_listener(self, listener: Callable[[int], None]) -> None:
        """Call `listener(head)` on the writer thread after every commit; it must not block."""
        self._listeners.append(listener)

    def remove_commit_listener(self, listener: Callable[[int], None]) -> None:
        self._listeners.remove(listener)

    @property
    def stats(self) -> WriterStats:
        return WriterStats(self._commits, self._appends, self._events)

    # ------------------------------------------------------------------------------ closing

    def close(self) -> None:
        """Commit what is queued, then stop the writer and close every connection."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._writer.join()
        self._executor.shutdown(wait=True)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
