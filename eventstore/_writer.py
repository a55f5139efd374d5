"""Group commit, whatever the database: one writer thread decides and commits many appenders'
batches per transaction, and resolves each appender only after the commit."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ._chain import event_hash
from .errors import (
    DuplicateEventConflict,
    EventStoreError,
    GuardRefused,
    StoreClosed,
    WrongExpectedVersion,
)
from .events import ANY, NO_STREAM, ExpectedVersion, Guard, NewEvent, RecordedEvent, StreamAppend
from .reader import READ_PAGE, Row

log = logging.getLogger(__name__)

_VERSION_CACHE: Final = 2_000
"""Streams whose last version the writer keeps: a request's stream is written twice, ms apart."""
_RECENT_ROWS: Final = 4096
_FOREIGN_RANGES: Final = 10_000
"""Ranges of positions other processes committed that the writer remembers, for guards."""

# (event_id, type, schema_version, data json, metadata json, recorded_at or None)
_Serialised = tuple[str, str, int, str, str, str | None]
Known = tuple[Any, ...]
"""What the log already holds for an event_id: (event_id, position, stream_id, type,
schema_version, data, metadata)."""


class UniqueViolation(Exception):
    """A backend's insert met a UNIQUE index: an event_id or a stream version exists already."""


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class _Part:
    stream_id: str
    expected: ExpectedVersion
    rows: list[_Serialised]


@dataclass(frozen=True, slots=True)
class Append:
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
    guard: Guard | None = None


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
            (
                e.event_id,
                e.type,
                e.schema_version,
                _dumps(e.data),
                _dumps(dict(e.metadata)),
                e.recorded_at,
            )
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


class GroupCommitWriter:
    """The appends, the writer thread and its group commit, over a backend's few statements.

    A backend implements the statements (`_begin` ... `_rollback`) for its one write
    connection, which only the committing thread uses; everything else is shared, so that
    both backends decide a group the same way. Call `_start_writer` once the connection is open.
    """

    def _init_writer(self, *, max_group_events: int, head: int) -> None:
        self._max_group_events = max_group_events
        self._queue: queue.SimpleQueue[Append | None] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        # One committer at a time: the writer thread, or a loop committing inline (append_now).
        self._commit_lock = threading.Lock()
        # Appends queued to the writer and not yet committed (under _close_lock): an inline
        # commit is allowed only at 0, so that it can never overtake one of them.
        self._queued = 0
        self._committed = threading.Condition()
        # The highest position known committed (ours, or another process's when told), and
        # the last one this store wrote.
        self._head = self._written_head = head
        # What other processes committed, for guards: every position up to the floor (written
        # before this store opened, or too long ago to remember), and these ranges.
        self._foreign_floor = head
        self._foreign_after: list[int] = []
        self._foreign_until: list[int] = []
        # Last version of recently written streams; valid while no other process writes.
        self._versions: dict[str, int] = {}
        self._listeners: list[Callable[[int], None]] = []
        # Listeners run on their event loop, in the wake-up that resolves its appenders. The
        # writer reads the mapping without a lock: changes replace it, under this one.
        self._loop_listeners: dict[asyncio.AbstractEventLoop, list[Callable[[int], None]]] = {}
        self._loop_listeners_lock = threading.Lock()
        # The rows this store committed last, in position order without a gap: in-process
        # subscribers read them here instead of querying the log they were just written to.
        self._recent: deque[Row] = deque(maxlen=_RECENT_ROWS)
        self._recent_lock = threading.Lock()
        self._commits = self._appends = self._events = 0
        self._writer = threading.Thread(
            target=self._write_loop, name="eventstore-writer", daemon=True
        )

    def _start_writer(self) -> None:
        self._writer.start()

    # -------------------------------------------------------------- a backend's statements

    def _begin(self) -> None:
        """Begin the write transaction, holding the log's write lock until commit or rollback."""
        raise NotImplementedError

    def _in_transaction(self) -> bool:
        raise NotImplementedError

    def _read_head(self) -> tuple[int, str]:
        """The last (position, hash) in the log, inside the transaction."""
        raise NotImplementedError

    def _existing_ids(self, ids: list[str]) -> dict[str, Known]:
        """What the log holds for those of `ids` it has seen."""
        raise NotImplementedError

    def _max_versions(self, streams: list[str]) -> dict[str, int]:
        """The last version of those of `streams` that exist."""
        raise NotImplementedError

    def _versions_after(self, position: int) -> dict[str, int]:
        """The last version of every stream written after `position`."""
        raise NotImplementedError

    def _rows_between(self, after: int, until: int, types: frozenset[str] | None) -> list[Row]:
        """The rows at positions in (after, until], of `types` (None: all), in the transaction."""
        raise NotImplementedError

    def to_event(self, row: Row) -> RecordedEvent:
        raise NotImplementedError

    def _insert(self, rows: list[Row]) -> None:
        """Insert rows; raise UniqueViolation when an index refuses one (the transaction is
        then rolled back by the caller)."""
        raise NotImplementedError

    def _commit(self, head: int) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def _close_writer(self) -> None:
        """Close the write connection; called on the writer thread as it stops."""
        raise NotImplementedError

    def _clock(self) -> str:
        """The time stamped on the group's events, as stored."""
        return _now()

    def _committed_group(self, events: int) -> None:
        """Told after each successful commit of `events` rows, on the committing thread."""

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
        *,
        guard: Guard | None = None,
    ) -> asyncio.Future[list[int]]:
        """Queue an atomic batch to one stream from the running event loop.

        The asyncio future gives its positions once committed; the writer wakes the loop once
        per group commit for all its waiters, where `append_future` costs a wake-up each.
        With a `guard`, the batch is written only if the guard lets it (else GuardRefused).
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[int]] = loop.create_future()
        parts = [StreamAppend(stream_id, events, expected_version)]
        self._put(self._unit(parts, waiter=waiter, loop=loop, single=True, guard=guard))
        return waiter

    def append_now(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
        *,
        guard: Guard | None = None,
    ) -> asyncio.Future[list[int]]:
        """append_soon, unless the backend can commit on the loop's own thread (SQLite can)."""
        return self.append_soon(stream_id, events, expected_version, guard=guard)

    @staticmethod
    def _unit(
        parts: Sequence[StreamAppend],
        *,
        future: Future[list[list[int]]] | None = None,
        waiter: asyncio.Future[Any] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        single: bool = False,
        guard: Guard | None = None,
    ) -> Append:
        """An appender's parts serialised and checked, ready for whichever thread commits."""
        if not parts:
            raise ValueError("a batch needs at least one stream append")
        serialised = [_serialise(p.stream_id, p.events, p.expected_version) for p in parts]
        ids = [row[0] for part in serialised for row in part.rows]
        if len(ids) > 1 and len(set(ids)) != len(ids):
            raise ValueError("a batch holds the same event_id twice")
        return Append(serialised, future, waiter, loop, single, guard)

    def _put(self, append: Append) -> None:
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
                self._commit_group(group)
            with self._close_lock:
                self._queued -= len(group)
        with self._commit_lock:
            self._close_writer()

    def _commit_group(self, group: list[Append]) -> None:
        try:
            outcomes, inserts, head = self._commit_once(group)
        except BaseException as first:  # noqa: BLE001 - every appender learns of the failure
            self._abandon()
            outcome: BaseException | None = first
            if self._reconnects(first):
                # The connection broke (the server restarted, a node lost it): once, on a new
                # one. Appends are idempotent by event_id, so a group whose commit did land
                # is recognised, and its appenders get their original positions.
                try:
                    outcomes, inserts, head = self._commit_once(group)
                    outcome = None
                except BaseException as second:  # noqa: BLE001 - as the first
                    self._abandon()
                    outcome = second
            if outcome is not None:
                error = (
                    outcome
                    if isinstance(outcome, EventStoreError)
                    else EventStoreError(f"commit failed: {outcome}")
                )
                self._settle(group, [error] * len(group), None)
                return
        self._written_head = head
        self._commits += 1
        self._appends += len(group)
        self._events += len(inserts)
        self._committed_group(len(inserts))
        self._remember(inserts)
        self._advance(head)
        # Thread listeners first: they are told of a commit before its appenders resume.
        self._tell_threads(head)
        self._settle(group, outcomes, head)

    def _tell_threads(self, head: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(head)
            except Exception:  # noqa: BLE001 - a listener's failure must never stop the writer
                self._listeners.remove(listener)

    def _commit_once(
        self, group: list[Append]
    ) -> tuple[list[list[list[int]] | EventStoreError], list[Row], int]:
        # Retried event_ids are rare: insert optimistically and let the UNIQUE index catch
        # one; only then look up which ids exist and decide the group again. (A savepoint
        # would spare the second BEGIN, but costs SQLite a sub-journal on every insert.)
        try:
            outcomes, inserts, versions, head = self._write(group, optimistic=True)
        except UniqueViolation:
            self._rollback()
            outcomes, inserts, versions, head = self._write(group, optimistic=False)
        self._commit(head)
        if len(self._versions) > _VERSION_CACHE:
            # The streams known longest are the least likely to be appended to again.
            for stream_id in list(itertools.islice(self._versions, _VERSION_CACHE // 2)):
                del self._versions[stream_id]
        self._versions.update(versions)
        return outcomes, inserts, head

    def _abandon(self) -> None:
        """Roll back what a failed commit left, if the connection still can."""
        with contextlib.suppress(Exception):
            if self._in_transaction():
                self._rollback()
        self._versions.clear()

    def _reconnects(self, error: BaseException) -> bool:
        """Whether `error` broke the write connection and a new one is made at next begin."""
        return False

    def _advance(self, head: int) -> None:
        with self._committed:
            self._head = max(self._head, head)
            self._committed.notify_all()

    def _write(
        self, group: list[Append], *, optimistic: bool
    ) -> tuple[list[list[list[int]] | EventStoreError], list[Row], dict[str, int], int]:
        """Begin a transaction and insert the group's rows; the caller commits."""
        if not self._in_transaction():  # append_now has begun it already
            self._begin()
        head, previous = self._read_head()
        if head != self._written_head:
            # Another process appended since our last commit: the recent rows would leave a
            # gap before ours, and the versions of the streams it wrote are stale. Those are
            # read from its rows: forgetting every version instead cost a rolled-back group
            # each time writers alternate (an ANY append to a forgotten stream guesses it new).
            with self._recent_lock:
                self._recent.clear()
            if 0 <= head - self._written_head <= _VERSION_CACHE:
                self._versions.update(self._versions_after(self._written_head))
            else:
                self._versions.clear()
            self._note_foreign(self._written_head, head)
        existing = None if optimistic else self._existing_ids(_ids(group))
        refusals = self._guard(group, head)
        outcomes, inserts, versions = self._plan(group, head, previous, existing, refusals)
        if inserts:
            self._insert(inserts)
        return outcomes, inserts, versions, inserts[-1][0] if inserts else head

    def _note_foreign(self, after: int, until: int) -> None:
        """Positions (after, until] were committed by another process."""
        if self._foreign_until and self._foreign_until[-1] >= until:
            return  # the same group decided again
        self._foreign_after.append(after)
        self._foreign_until.append(until)
        if len(self._foreign_after) > _FOREIGN_RANGES:
            # Forgotten ranges fall under the floor: counted foreign, so a guard errs safe.
            half = _FOREIGN_RANGES // 2
            self._foreign_floor = self._foreign_until[half - 1]
            del self._foreign_after[:half], self._foreign_until[:half]

    def _is_foreign(self, position: int) -> bool:
        if position <= self._foreign_floor:
            return True
        # The ranges are in order: the one that could hold `position` is the last to start
        # before it.
        at = bisect.bisect_left(self._foreign_after, position) - 1
        return at >= 0 and position <= self._foreign_until[at]

    def _guard(self, group: list[Append], head: int) -> dict[int, GuardRefused]:
        """Ask each guarded append of the group whether it may be written: the ones refused,
        by their index in the group. Read under the write lock: nobody can append meanwhile."""
        guards = [(i, a.guard) for i, a in enumerate(group) if a.guard is not None]
        if not guards:
            return {}
        after = min(guard.after for _, guard in guards)
        foreign: list[RecordedEvent] = []
        if after < head and (
            after < self._foreign_floor or (self._foreign_until and self._foreign_until[-1] > after)
        ):
            wanted: set[str] | None = set()
            for _, guard in guards:
                if guard.types is None or wanted is None:
                    wanted = None
                else:
                    wanted |= guard.types
            rows = self._rows_between(after, head, None if wanted is None else frozenset(wanted))
            foreign = [self.to_event(row) for row in rows if self._is_foreign(row[0])]
        refusals = {}
        for index, guard in guards:
            seen = [
                e
                for e in foreign
                if e.position > guard.after and (guard.types is None or e.type in guard.types)
            ]
            reason = guard.check(seen)
            if reason is not None:
                refusals[index] = GuardRefused(reason)
        return refusals

    def _plan(
        self,
        group: list[Append],
        head: int,
        previous: str,
        existing: dict[str, Known] | None,
        refusals: dict[int, GuardRefused],
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
        self._load_versions(streams)
        versions: dict[str, int] = {}
        recorded_at = self._clock()
        outcomes: list[list[list[int]] | EventStoreError] = []
        inserts: list[Row] = []
        # event_ids written earlier in this same group, as the log would hold them
        fresh: dict[str, Known] = {}
        for index, request in enumerate(group):
            if index in refusals:
                outcomes.append(refusals[index])
                continue
            # A unit that fails leaves no trace: remember where it started to undo it.
            start_head, start_previous, kept = head, previous, len(inserts)
            undo: list[tuple[str, int | None]] = []
            try:
                result = []
                for part in request.parts:
                    undo.append((part.stream_id, versions.get(part.stream_id)))
                    positions, head, previous = self._plan_part(
                        part, head, previous, recorded_at, existing, fresh, versions, guessed,
                        inserts,
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
        part: _Part,
        head: int,
        previous: str,
        recorded_at: str,
        existing: dict[str, Known] | None,
        fresh: dict[str, Known],
        versions: dict[str, int],
        guessed: dict[str, int],
        inserts: list[Row],
    ) -> tuple[list[int], int, str]:
        stream_id = part.stream_id
        if existing is not None:
            known = [existing.get(row[0]) or fresh.get(row[0]) for row in part.rows]
            if any(known):
                return _idempotent(part, known), head, previous
        actual = versions.get(stream_id)
        if actual is None:
            actual = self._versions.get(stream_id)
            if actual is None:
                actual = guessed[stream_id]
        if part.expected is not ANY and part.expected != actual:
            # A retry of an acknowledged append meets a moved stream: look its ids up
            # before calling it a conflict (the optimistic path has not looked).
            earlier = existing or self._existing_ids([row[0] for row in part.rows])
            known = [earlier.get(row[0]) for row in part.rows]
            if any(known):
                return _idempotent(part, known), head, previous
            raise WrongExpectedVersion(stream_id, part.expected, actual)
        positions = []
        version = actual
        for event_id, type_, schema_version, data, metadata, given_at in part.rows:
            at = given_at or recorded_at
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
                at,
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
                    at,
                    previous,
                )
            )
            if existing is not None:
                fresh[event_id] = (event_id, head, stream_id, type_, schema_version, data, metadata)
            positions.append(head)
        versions[stream_id] = version
        return positions, head, previous

    def _load_versions(self, streams: set[str]) -> None:
        missing = [s for s in streams if s not in self._versions]
        if not missing:
            return
        found = self._max_versions(missing)
        for stream_id in missing:
            self._versions[stream_id] = found.get(stream_id, NO_STREAM)

    def _remember(self, inserts: list[Row]) -> None:
        with self._recent_lock:
            self._recent.extend(inserts)

    def recent_rows(self, after: int, limit: int = READ_PAGE) -> list[Row] | None:
        """The rows after `after` that this store committed last, from memory, undecoded.

        [] when no commit after `after` is known (another process may have made one unseen:
        poll `read_rows` now and then); None when memory cannot tell (read `read_rows`).
        """
        with self._recent_lock:
            if not self._recent:
                return None
            first, last = self._recent[0][0], self._recent[-1][0]
            if after + 1 < first or after > last or (after == last and self._head > last):
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
        group: list[Append],
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

    def _learned(self, head: int) -> None:
        """Another process committed up to `head`: wake waiters, subscribers and listeners."""
        with self._committed:
            if head <= self._head:
                return
            self._head = head
            self._committed.notify_all()
        self._tell_threads(head)
        self._settle([], [], head)

    # ------------------------------------------------------------------- waiting for commits

    def head(self) -> int:
        raise NotImplementedError

    def wait_for(self, position: int, timeout: float | None = None) -> bool:
        """Block until `position` is committed by this store (or seen written by another)."""
        with self._committed:
            if self._committed.wait_for(lambda: self._head >= position, timeout=timeout):
                return True
        return self.head() >= position

    def add_commit_listener(
        self, listener: Callable[[int], None], loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Call `listener(head)` after every commit: on the committing thread before the
        commit's appenders resume (it must not block), or on `loop`, in the same wake-up that
        resolves that loop's appenders of the commit."""
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

    def _stop_writer(self) -> bool:
        """Commit what is queued, then stop the writer; False if it was stopped already."""
        with self._close_lock:
            if self._closed:
                return False
            self._closed = True
            self._queue.put(None)
        self._writer.join()
        return True


def _ids(group: list[Append]) -> list[str]:
    return [row[0] for request in group for part in request.parts for row in part.rows]


def _idempotent(part: _Part, known: list[Known | None]) -> list[int]:
    positions = []
    for (event_id, type_, schema_version, data, metadata, _), row in zip(
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
