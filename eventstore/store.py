"""The SQLite event store: one writer thread with group commit, readers on their own connections."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ._chain import GENESIS, event_hash
from ._schema import BUSY_TIMEOUT_MS, Durability, connect
from .errors import DuplicateEventConflict, EventStoreError, StoreClosed, WrongExpectedVersion
from .events import ANY, NO_STREAM, ExpectedVersion, NewEvent
from .reader import COLUMNS, READ_PAGE, LogReader, Row
from .upcasting import Upcasters

log = logging.getLogger(__name__)

_SQL_VARIABLES: Final = 500
_INSERT: Final = f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
_VERSION_CACHE: Final = 2_000
"""Streams whose last version the writer keeps: a request's stream is written twice, ms apart."""
_WRITER_CACHE_KIB: Final = 2048
_CHECKPOINT_EVENTS: Final = 20_000
_CHECKPOINT_SECONDS: Final = 1.0
_RECENT_ROWS: Final = 4096

# (event_id, type, schema_version, data json, metadata json)
_Serialised = tuple[str, str, int, str, str]
# what the log already holds for an event_id: (event_id, position, stream_id, type,
# schema_version, data, metadata)
_Known = tuple[Any, ...]


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's part of an atomic batch that may span several streams."""

    stream_id: str
    events: Sequence[NewEvent]
    expected_version: ExpectedVersion = ANY


@dataclass(frozen=True, slots=True)
class _Part:
    stream_id: str
    expected: ExpectedVersion
    rows: list[_Serialised]


@dataclass(frozen=True, slots=True)
class _Append:
    """One appender's atomic unit, serialised by the appender so the writer only writes.

    Its outcome goes to `future` (any thread), or to `waiter` on `loop` (asyncio): the waiters
    of one loop in a group commit are all resolved by a single wake-up of that loop. A `single`
    waiter is given its one part's positions, not the list of every part's.
    """

    parts: list[_Part]
    future: Future[list[list[int]]] | None = None
    waiter: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    single: bool = False


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of the writer: how many transactions carried how many appends."""

    commits: int
    appends: int
    events: int


def _serialise(stream_id: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> _Part:
    if not events:
        raise ValueError("append needs at least one event")
    if not isinstance(stream_id, str) or not stream_id:
        raise ValueError("stream_id must be a non-empty string")
    try:
        rows = [
            (e.event_id, e.type, e.schema_version, _dumps(e.data), _dumps(dict(e.metadata)))
            for e in events
        ]
    except TypeError as exc:
        raise ValueError(f"an event's data or metadata cannot be stored as JSON: {exc}") from exc
    return _Part(stream_id, expected, rows)


def _resolve(
    outcomes: list[tuple[asyncio.Future[Any], Any]],
    listeners: list[Callable[[int], None]],
    head: int | None,
) -> None:
    """On a loop: give each waiter of a group commit its positions or its error, then have
    the loop's commit listeners told the new head, once what the waiters resume is queued:
    a request's answer goes before a subscriber's reading of the log."""
    for waiter, outcome in outcomes:
        if waiter.done():
            continue  # its appender gave up waiting (cancelled); the append stands
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
    if head is not None and listeners:
        asyncio.get_running_loop().call_soon(_tell, listeners, head)


def _tell(listeners: list[Callable[[int], None]], head: int) -> None:
    for listener in listeners:
        try:
            listener(head)
        except Exception:  # one listener's failure must not silence the others
            log.exception("a commit listener failed")


def _first(future: Future[list[list[int]]]) -> Future[list[int]]:
    """A future of the single part's positions, for one-stream appends."""
    single: Future[list[int]] = Future()

    def done(f: Future[list[list[int]]]) -> None:
        exc = f.exception()
        if exc is not None:
            single.set_exception(exc)
        else:
            single.set_result(f.result()[0])

    future.add_done_callback(done)
    return single


class EventStore(LogReader):
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
        self.durability = Durability(durability)
        # Opening here surfaces a bad file to the caller instead of the writer thread.
        self._write_conn = connect(str(path), create=create, durability=self.durability)
        super().__init__(str(path), upcasters=upcasters)
        self._max_group_events = max_group_events
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        # One committer at a time: the writer thread, or a loop committing inline (append_now).
        self._commit_lock = threading.Lock()
        # Appends queued to the writer and not yet committed (under _close_lock): an inline
        # commit is allowed only at 0, so that it can never overtake one of them.
        self._queued = 0
        self._committed = threading.Condition()
        self._head = self._written_head = self._read_head(self._write_conn)[0]
        # Last version of recently written streams; valid while no other process writes.
        self._versions: dict[str, int] = {}
        self._listeners: list[Callable[[int], None]] = []
        # Listeners run on their event loop, in the wake-up that resolves its appenders. The
        # writer reads the mapping without a lock: changes replace it, under this one.
        self._loop_listeners: dict[asyncio.AbstractEventLoop, list[Callable[[int], None]]] = {}
        self._loop_listeners_lock = threading.Lock()
        # The rows this store committed last, in position order without a gap: in-process
        # subscribers read them here instead of querying the file they were just written to.
        self._recent: deque[Row] = deque(maxlen=_RECENT_ROWS)
        self._recent_lock = threading.Lock()
        self._commits = self._appends = self._events = 0
        # The writer never checkpoints: copying the WAL back into the database file would
        # stall every appender behind it. A thread of its own does that between commits.
        self._write_conn.execute("PRAGMA wal_autocheckpoint = 0")
        # Ids are time-ordered, so the indexes on event_id and (stream_id, stream_version)
        # take their inserts at the end, like the table: a small page cache holds every hot
        # page, and the writer's memory stops growing with the log early.
        self._write_conn.execute(f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
        self._checkpoint_due = threading.Event()
        self._uncheckpointed = 0
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="eventstore-checkpoint", daemon=True
        )
        self._writer = threading.Thread(
            target=self._write_loop, name="eventstore-writer", daemon=True
        )
        self._writer.start()
        self._checkpointer.start()

    # ----------------------------------------------------------------------------- appends

    def append_batch_future(self, parts: Sequence[StreamAppend]) -> Future[list[list[int]]]:
        """Queue an atomic batch over several streams: all of it is appended, or none."""
        if not parts:
            raise ValueError("a batch needs at least one stream append")
        future: Future[list[list[int]]] = Future()
        self._put(self._unit(parts, future=future))
        return future

    def append_soon(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> asyncio.Future[list[int]]:
        """Queue an atomic batch to one stream from the running event loop.

        The asyncio future gives its positions once committed; the writer wakes the loop once
        per group commit for all its waiters, where `append_future` costs a wake-up each.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[int]] = loop.create_future()
        parts = [StreamAppend(stream_id, events, expected_version)]
        self._put(self._unit(parts, waiter=waiter, loop=loop, single=True))
        return waiter

    def append_now(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY
    ) -> asyncio.Future[list[int]]:
        """append_soon, but committed on the calling loop's thread when the writer has nothing
        queued and durability is normal: two thread hand-overs saved, the loop held meanwhile.

        For an appender that knows it is alone (one request in flight); under load, appends go
        through the writer so that group commit shares a transaction among them.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[int]] = loop.create_future()
        parts = [StreamAppend(stream_id, events, expected_version)]
        append = self._unit(parts, waiter=waiter, loop=loop, single=True)
        if self.durability is Durability.NORMAL and self._commit_lock.acquire(False):
            try:
                with self._close_lock:
                    alone = not self._closed and self._queued == 0
                if alone and self._begun_at_once():
                    self._commit_group(self._write_conn, [append])
                    return waiter
            finally:
                self._commit_lock.release()
        self._put(append)
        return waiter

    def _begun_at_once(self) -> bool:
        """Begin the write transaction if no other connection holds the file's write lock: the
        loop must not wait for one (another process's append, a projection's save)."""
        conn = self._write_conn
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return True

    @staticmethod
    def _unit(
        parts: Sequence[StreamAppend],
        *,
        future: Future[list[list[int]]] | None = None,
        waiter: asyncio.Future[Any] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        single: bool = False,
    ) -> _Append:
        """An appender's parts serialised and checked, ready for whichever thread commits."""
        if not parts:
            raise ValueError("a batch needs at least one stream append")
        serialised = [_serialise(p.stream_id, p.events, p.expected_version) for p in parts]
        ids = [row[0] for part in serialised for row in part.rows]
        if len(ids) > 1 and len(set(ids)) != len(ids):
            raise ValueError("a batch holds the same event_id twice")
        return _Append(serialised, future, waiter, loop, single)

    def _put(self, append: _Append) -> None:
        """Queue an append for the writer thread."""
        with self._close_lock:
            if self._closed:
                raise StoreClosed("the event store is closed")
            self._queued += 1
            self._queue.put(append)

    def append_batch(self, parts: Sequence[StreamAppend]) -> list[list[int]]:
        """Append an atomic batch over several streams; returns each part's positions."""
        return self.append_batch_future(parts).result()

    def append_future(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> Future[list[int]]:
        """Queue an atomic batch to one stream; the future gives its positions once committed."""
        return _first(self.append_batch_future([StreamAppend(stream_id, events, expected_version)]))

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
        return await self.append_soon(stream_id, events, expected_version)

    # ------------------------------------------------------------------------------ writer

    def _write_loop(self) -> None:
        conn = self._write_conn
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            size = sum(len(p.rows) for p in first.parts)
            while size < self._max_group_events:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                size += sum(len(p.rows) for p in item.parts)
            with self._commit_lock:
                self._commit_group(conn, group)
            with self._close_lock:
                self._queued -= len(group)
        with self._commit_lock:
            conn.close()

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        while not self._closed:
            self._checkpoint_due.wait(timeout=_CHECKPOINT_SECONDS)
            self._checkpoint_due.clear()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        # After a clean close the database file alone holds the whole log.
        self._writer.join()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Append]) -> None:
        try:
            # Retried event_ids are rare: insert optimistically and let the UNIQUE index
            # catch one; only then look up which ids exist and decide the group again. (A
            # savepoint would spare the second BEGIN, but costs a sub-journal on every insert.)
            try:
                outcomes, inserts, versions, head = self._write(conn, group, optimistic=True)
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK")
                outcomes, inserts, versions, head = self._write(conn, group, optimistic=False)
            conn.execute("COMMIT")
            if len(self._versions) > _VERSION_CACHE:
                # The streams known longest are the least likely to be appended to again.
                for stream_id in list(itertools.islice(self._versions, _VERSION_CACHE // 2)):
                    del self._versions[stream_id]
            self._versions.update(versions)
        except BaseException as exc:  # noqa: BLE001 - every appender learns of the failure
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._versions.clear()
            error = (
                exc
                if isinstance(exc, EventStoreError)
                else EventStoreError(f"commit failed: {exc}")
            )
            self._settle(group, [error] * len(group), None)
            return
        self._written_head = head
        self._commits += 1
        self._appends += len(group)
        self._events += len(inserts)
        self._uncheckpointed += len(inserts)
        if self._uncheckpointed >= _CHECKPOINT_EVENTS:
            self._uncheckpointed = 0
            self._checkpoint_due.set()
        with self._committed:
            self._head = max(self._head, head)
            self._committed.notify_all()
        self._remember(inserts)
        self._settle(group, outcomes, head)
        for listener in list(self._listeners):
            try:
                listener(head)
            except Exception:  # noqa: BLE001 - a listener's failure must never stop the writer
                self._listeners.remove(listener)

    def _remember(self, inserts: list[Row]) -> None:
        with self._recent_lock:
            self._recent.extend(inserts)

    def recent_rows(self, after: int, limit: int = READ_PAGE) -> list[Row] | None:
        """The rows after `after` that this store committed last, from memory, undecoded.

        [] when this store has committed nothing after `after` (another process may have:
        poll `read_rows` now and then); None when memory cannot tell (read `read_rows`).
        """
        with self._recent_lock:
            if not self._recent:
                return None
            first, last = self._recent[0][0], self._recent[-1][0]
            if after + 1 < first or after > last:
                return None
            # A follower asks for the newest rows: walk from the right end, not over the
            # thousands of rows before them (islice from the left cost 3% of a busy server).
            behind = last - after  # the rows after `after` are the newest `behind`
            wanted = min(behind, limit)
            rows = list(itertools.islice(reversed(self._recent), behind - wanted, behind))
            rows.reverse()
            return rows

    def _settle(
        self,
        group: list[_Append],
        outcomes: Sequence[list[list[int]] | BaseException],
        head: int | None,
    ) -> None:
        """Hand every appender of a group its outcome, and every loop listener the new head
        (None: nothing was committed): one wake-up per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for request, outcome in zip(group, outcomes, strict=True):
            if request.future is not None:
                if isinstance(outcome, BaseException):
                    request.future.set_exception(outcome)
                else:
                    request.future.set_result(outcome)
            elif request.waiter is not None and request.loop is not None:
                given = outcome[0] if request.single and isinstance(outcome, list) else outcome
                by_loop.setdefault(request.loop, []).append((request.waiter, given))
        listening = self._loop_listeners if head is not None else {}
        for loop in by_loop.keys() | listening.keys():
            # A loop closed meanwhile has nobody left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(
                    _resolve, by_loop.get(loop, []), listening.get(loop, []), head
                )

    def _write(
        self, conn: sqlite3.Connection, group: list[_Append], *, optimistic: bool
    ) -> tuple[list[list[list[int]] | EventStoreError], list[Row], dict[str, int], int]:
        """Begin a transaction and insert the group's rows; the caller commits."""
        if not conn.in_transaction:  # append_now has begun it already
            conn.execute("BEGIN IMMEDIATE")
        head, previous = self._read_head(conn)
        if head != self._written_head:
            # Another process appended since our last commit: cached versions may be stale,
            # and the recent rows would leave a gap before ours.
            self._versions.clear()
            with self._recent_lock:
                self._recent.clear()
        existing = None if optimistic else self._existing_ids(conn, group)
        outcomes, inserts, versions = self._plan(conn, group, head, previous, existing)
        conn.executemany(_INSERT, inserts)
        return outcomes, inserts, versions, inserts[-1][0] if inserts else head

    def _plan(
        self,
        conn: sqlite3.Connection,
        group: list[_Append],
        head: int,
        previous: str,
        existing: dict[str, _Known] | None,
    ) -> tuple[list[list[list[int]] | EventStoreError], list[Row], dict[str, int]]:
        """Decide every request of a group in memory, so the group needs one INSERT statement.

        Returns the outcome of each request, the rows to insert and the streams' new versions.
        With `existing` None the plan is optimistic: it assumes no event_id was seen before,
        and the UNIQUE index on event_id tells otherwise.
        """
        streams = {p.stream_id for r in group for p in r.parts}
        guessed: dict[str, int] = {}
        if existing is None:
            # A stream appended to with ANY only needs no look-up: taken as new, the UNIQUE
            # index on (stream_id, stream_version) says so if it is not (then the group is
            # decided again, with every version looked up). A guess is never cached.
            checked = {p.stream_id for r in group for p in r.parts if p.expected is not ANY}
            guessed = {s: NO_STREAM for s in streams - checked if s not in self._versions}
            streams = checked
        self._load_versions(conn, streams)
        versions: dict[str, int] = {}
        recorded_at = _now()
        outcomes: list[list[list[int]] | EventStoreError] = []
        inserts: list[Row] = []
        # event_ids written earlier in this same group, as the log would hold them
        fresh: dict[str, _Known] = {}
        for request in group:
            # A unit that fails leaves no trace: remember where it started to undo it.
            start_head, start_previous, kept = head, previous, len(inserts)
            undo: list[tuple[str, int | None]] = []
            try:
                result = []
                for part in request.parts:
                    undo.append((part.stream_id, versions.get(part.stream_id)))
                    positions, head, previous = self._plan_part(
                        conn, part, head, previous, recorded_at, existing, fresh, versions,
                        guessed, inserts,
                    )  # fmt: skip
                    result.append(positions)
                outcomes.append(result)
            except EventStoreError as exc:
                for row in inserts[kept:]:
                    fresh.pop(row[3], None)
                del inserts[kept:]
                for stream_id, old in reversed(undo):
                    if old is None:
                        versions.pop(stream_id, None)
                    else:
                        versions[stream_id] = old
                head, previous = start_head, start_previous
                outcomes.append(exc)
        return outcomes, inserts, versions

    def _plan_part(
        self,
        conn: sqlite3.Connection,
        part: _Part,
        head: int,
        previous: str,
        recorded_at: str,
        existing: dict[str, _Known] | None,
        fresh: dict[str, _Known],
        versions: dict[str, int],
        guessed: dict[str, int],
        inserts: list[Row],
    ) -> tuple[list[int], int, str]:
        stream_id = part.stream_id
        if existing is not None:
            known = [existing.get(row[0]) or fresh.get(row[0]) for row in part.rows]
            if any(known):
                return self._idempotent(part, known), head, previous
        actual = versions.get(stream_id)
        if actual is None:
            actual = self._versions.get(stream_id)
            if actual is None:
                actual = guessed[stream_id]
        if part.expected is not ANY and part.expected != actual:
            # A retry of an acknowledged append meets a moved stream: look its ids up
            # before calling it a conflict (the optimistic path has not looked).
            earlier = existing or self._existing_ids(conn, [_Append([part], Future())])
            known = [earlier.get(row[0]) for row in part.rows]
            if any(known):
                return self._idempotent(part, known), head, previous
            raise WrongExpectedVersion(stream_id, part.expected, actual)
        positions = []
        version = actual
        for event_id, type_, schema_version, data, metadata in part.rows:
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
            if existing is not None:
                fresh[event_id] = (event_id, head, stream_id, type_, schema_version, data, metadata)
            positions.append(head)
        versions[stream_id] = version
        return positions, head, previous

    @staticmethod
    def _existing_ids(conn: sqlite3.Connection, group: list[_Append]) -> dict[str, _Known]:
        ids = [row[0] for request in group for part in request.parts for row in part.rows]
        found: dict[str, _Known] = {}
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
    def _idempotent(part: _Part, known: list[_Known | None]) -> list[int]:
        positions = []
        for (event_id, type_, schema_version, data, metadata), row in zip(
            part.rows, known, strict=True
        ):
            if row is None:
                raise DuplicateEventConflict(
                    event_id, "part of this batch was appended before, part was not"
                )
            if (row[2], row[3], row[4], row[5], row[6]) != (
                part.stream_id,
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

    # ------------------------------------------------------------------- waiting for commits

    def wait_for(self, position: int, timeout: float | None = None) -> bool:
        """Block until `position` is committed by this store (or seen written by another)."""
        with self._committed:
            if self._committed.wait_for(lambda: self._head >= position, timeout=timeout):
                return True
        return self.head() >= position

    def add_commit_listener(
        self, listener: Callable[[int], None], loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Call `listener(head)` after every commit: on the writer thread (it must not block),
        or on `loop`, in the same wake-up that resolves that loop's appenders of the commit."""
        if loop is None:
            self._listeners.append(listener)
            return
        with self._loop_listeners_lock:
            listeners = {**self._loop_listeners}
            listeners[loop] = [*listeners.get(loop, []), listener]
            self._loop_listeners = listeners

    def remove_commit_listener(
        self, listener: Callable[[int], None], loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Stop calling a listener; ValueError if it was not added (for that loop)."""
        if loop is None:
            self._listeners.remove(listener)
            return
        with self._loop_listeners_lock:
            listeners = {**self._loop_listeners}
            remaining = [*listeners.get(loop, [])]
            remaining.remove(listener)
            if remaining:
                listeners[loop] = remaining
            else:
                del listeners[loop]
            self._loop_listeners = listeners

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
        self._checkpoint_due.set()
        self._checkpointer.join()
        super().close()

    def __enter__(self) -> EventStore:
        return self


class BufferedStream:
    """One stream's events, appended in order in as few atomic appends as its owner allows.

    For an asyncio owner such as a request: `add` only buffers, `flush` queues what is buffered
    as one atomic append, `commit` flushes and returns once every append made through it is
    committed. The writer commits in queue order, so the events are in the log in the order
    they were added, however they were grouped.
    """

    def __init__(
        self, store: EventStore, stream_id: str, *, alone: Callable[[], bool] | None = None
    ) -> None:
        self.store = store
        self.stream_id = stream_id
        # Asked at each flush: true when no other appender is about, so that committing on the
        # loop itself (append_now) beats waiting for the writer thread.
        self._alone = alone
        self._buffer: list[NewEvent] = []
        self._callbacks: list[tuple[int, Callable[[int], None]]] = []
        self._waiting: list[asyncio.Future[list[int]]] = []
        self.position = 0
        """The last committed position of this stream's events, once `commit` has returned."""

    def add(self, event: NewEvent, on_committed: Callable[[int], None] | None = None) -> None:
        """Buffer an event; `on_committed(position)` is called on the loop once it is committed,
        whether or not anyone waits for it."""
        if on_committed is not None:
            self._callbacks.append((len(self._buffer), on_committed))
        self._buffer.append(event)

    def flush(self) -> None:
        """Queue the buffered events as one atomic append; returns at once."""
        if not self._buffer:
            return
        alone = self._alone is not None and self._alone()
        append = self.store.append_now if alone else self.store.append_soon
        waiter = append(self.stream_id, self._buffer)
        for index, callback in self._callbacks:
            waiter.add_done_callback(_at(index, callback))
        self._buffer, self._callbacks = [], []
        self._waiting.append(waiter)

    async def commit(self) -> int:
        """Flush, then wait until every event added so far is committed; the last position.

        An append that failed raises here, and again at every later commit.
        """
        self.flush()
        waiting = self._waiting
        for waiter in waiting:
            # Shielded: a cancelled committer must not cancel what others wait for.
            positions = waiter.result() if waiter.done() else await asyncio.shield(waiter)
            self.position = max(self.position, positions[-1])
        self._waiting = [w for w in waiting if not w.done() or w.exception() is not None]
        return self.position


def _at(index: int, callback: Callable[[int], None]) -> Callable[[asyncio.Future[list[int]]], None]:
    def done(waiter: asyncio.Future[list[int]]) -> None:
        if not waiter.cancelled() and waiter.exception() is None:
            callback(waiter.result()[index])

    return done
