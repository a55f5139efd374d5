"""Projections: pure folds over the log, stored with their checkpoint in one transaction."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from ._projection_table import SQLiteProjectionTable
from ._protocol import EventStore, ProjectionTable
from .errors import ConcurrentRunner, EventStoreError
from .events import RecordedEvent
from .subscription import POLL_INTERVAL, Subscription

S = TypeVar("S")

# Rows a live projection decodes at once when it is behind: bounds the memory a burst takes.
_LIVE_PAGE = 256


class Projection(Protocol[S]):
    """A fold: `apply(state, event) -> state`, starting from `initial()`.

    State is JSON data (dicts with string keys, lists, numbers, strings, None) so it can be
    stored and compared. The runner never reuses a state it has passed to `apply`, so an
    implementation may update it in place and return it. Bump `version` when the fold changes:
    the runner then rebuilds from position 0.

    A projection may also declare `types`, a frozenset of the event types its fold reads (any
    other event leaves its state unchanged): `LiveProjections` then neither decodes nor hands
    it the others.
    """

    name: str
    version: int

    def initial(self) -> S: ...

    def apply(self, state: S, event: RecordedEvent) -> S: ...


def fold(projection: Projection[S], events: Iterable[RecordedEvent], state: S | None = None) -> S:
    """Fold events into a projection's state, from `initial()` unless a state is given."""
    current = projection.initial() if state is None else state
    apply = projection.apply
    for event in events:
        current = apply(current, event)
    return current


def _types_of(projection: Projection[Any]) -> frozenset[str] | None:
    types = getattr(projection, "types", None)
    return None if types is None else frozenset(types)


def canonical(state: Any) -> bytes:
    """The state's bytes as stored; two states are equal when these are."""
    return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)


def _table(store: EventStore, db_path: str | None) -> ProjectionTable:
    """The table beside the log, or one in the SQLite file at `db_path`."""
    return store.projection_table() if db_path is None else SQLiteProjectionTable(db_path)


class ProjectionRunner:
    """Keeps one projection up to date with the log and stores it with its checkpoint.

    State and checkpoint are written in one transaction, so a runner killed at any moment
    resumes from the stored checkpoint + 1 without counting any event twice.
    """

    def __init__(
        self,
        store: EventStore,
        projection: Projection[Any],
        *,
        db_path: str | None = None,
        page_size: int = 5000,
    ) -> None:
        self._store = store
        self.projection = projection
        self._page_size = page_size
        self._table = _table(store, db_path)
        self._lock = threading.Lock()
        self._advanced = threading.Condition()
        self.position, self.state = self._table.load(projection)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def process(self, events: list[RecordedEvent]) -> None:
        """Fold a page of events that follow the checkpoint and store the result."""
        with self._lock:
            if not events:
                return
            if events[0].position != self.position + 1:
                raise EventStoreError(
                    f"projection {self.projection.name!r} at {self.position} was given "
                    f"position {events[0].position}"
                )
            stored = self.position
            self.state = fold(self.projection, events, self.state)
            self.position = events[-1].position
            self._table.save_many([(self.projection, stored, self.position, canonical(self.state))])
        with self._advanced:
            self._advanced.notify_all()

    def catch_up(self, until: int | None = None) -> int:
        """Fold every committed event (up to `until`); returns the new checkpoint."""
        while until is None or self.position < until:
            page = self._store.read_page(self.position, self._page_size)
            if until is not None:
                page = [e for e in page if e.position <= until]
            if not page:
                break
            self.process(page)
        return self.position

    def start(self, poll_interval: float = POLL_INTERVAL) -> None:
        """Follow the log on a background thread."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._follow,
            args=(poll_interval,),
            name=f"projection-{self.projection.name}",
            daemon=True,
        )
        self._thread.start()

    def _follow(self, poll_interval: float) -> None:
        while not self._stopping.is_set():
            page = self._store.read_page(self.position, self._page_size)
            if page:
                self.process(page)
            else:
                self._store.wait_for(self.position + 1, timeout=poll_interval)

    def wait_until(self, position: int, timeout: float | None = None) -> bool:
        """Block until the projection includes `position` (read your own writes)."""
        with self._advanced:
            return self._advanced.wait_for(lambda: self.position >= position, timeout=timeout)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self.stop()
        self._table.close()


class LiveProjections:
    """Several projections kept current on the event loop, saved from a thread now and then.

    Folding on the loop keeps reads consistent without locks (handlers run on the same
    thread); state and checkpoint are still written together, so a restart resumes exactly.
    """

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection[Any]],
        *,
        db_path: str | None = None,
        save_every_s: float = 1.0,
    ) -> None:
        self._store = store
        self._projections = {p.name: p for p in projections}
        self._folds = [(p.name, p, _types_of(p)) for p in projections]
        # Events no projection reads are not even decoded (when every projection says which).
        self._types: frozenset[str] | None = frozenset()
        for _, _, types in self._folds:
            self._types = None if types is None or self._types is None else self._types | types
        self._table = _table(store, db_path)
        self._save_every_s = save_every_s
        self._states: dict[str, Any] = {}
        self._positions: dict[str, int] = {}
        self._saved: dict[str, int] = {}
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        # (position, tiebreak, future) of callers waiting to read their own writes
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._saving = asyncio.Lock()
        self.position = 0

    def state(self, name: str) -> Any:
        """The projection's current state: read it, never change it."""
        return self._states[name]

    async def start(self) -> None:
        """Load stored states, catch up with the log, then follow it."""
        for name, projection in self._projections.items():
            position, state = await asyncio.to_thread(self._table.load, projection)
            self._positions[name] = self._saved[name] = position
            self._states[name] = state
        self.position = min(self._positions.values(), default=self._store.head())
        self._subscription = Subscription(
            self._store, self.position, types=self._types, page_size=_LIVE_PAGE
        )
        self._task = asyncio.create_task(self._follow(), name="live-projections")

    async def _follow(self) -> None:
        assert self._subscription is not None
        loop = asyncio.get_running_loop()
        next_save = loop.time() + self._save_every_s
        saving: asyncio.Task[None] | None = None
        try:
            async for events, last in self._subscription.pages():
                for event in events:
                    self._apply(event)
                self._advance(last)
                waiters = self._waiters
                while waiters and waiters[0][0] <= last:
                    _, _, waiter = heapq.heappop(waiters)
                    if not waiter.done():
                        waiter.set_result(None)
                if loop.time() >= next_save and (saving is None or saving.done()):
                    if saving is not None:
                        saving.result()  # a failed save (another runner) stops the follower
                    # Saved beside the fold, not instead of it: while a save waits for its
                    # thread and the file's write lock, the projections keep up with the log.
                    saving = asyncio.create_task(self.save(), name="live-projections-save")
                    next_save = loop.time() + self._save_every_s
        finally:
            if saving is not None:
                await saving

    def _apply(self, event: RecordedEvent) -> None:
        position, kind = event.position, event.type
        positions, states = self._positions, self._states
        for name, projection, types in self._folds:
            if (types is None or kind in types) and position > positions[name]:
                states[name] = projection.apply(states[name], event)
                positions[name] = position

    def _advance(self, position: int) -> None:
        """Every projection has seen the log up to `position` (events it skips included)."""
        for name, known in self._positions.items():
            if known < position:
                self._positions[name] = position
        self.position = max(self.position, position)

    async def catch_up(self, timeout: float | None = None) -> bool:
        """Wait until every projection includes the log's head as it is now, another
        process's commits included (read what anyone has written)."""
        head = await asyncio.to_thread(self._store.head)
        if self._subscription is not None and self.position < head:
            self._subscription.poke()
        return await self.wait_until(head, timeout)

    async def wait_until(self, position: int, timeout: float | None = None) -> bool:
        """Wait until every projection includes `position` (read your own writes)."""
        if self.position >= position:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (position, next(self._tiebreak), waiter))
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        return True

    async def save(self) -> None:
        """Store every projection that moved since it was last stored, in one transaction."""
        # One save at a time: two would both start from the same stored checkpoint.
        async with self._saving:
            # Serialised here, on the loop, so the thread never sees a state change under it.
            saves = []
            for name, projection in self._projections.items():
                position = self._positions[name]
                if position != self._saved[name]:
                    state = canonical(self._states[name])
                    saves.append((projection, self._saved[name], position, state))
            if not saves:
                return
            try:
                await asyncio.to_thread(self._table.save_many, saves)
            except ConcurrentRunner:
                # Another process follows the same log and saved first (several gateways on
                # one PostgreSQL log). Its states are folds of the same events, as good as
                # ours at their checkpoints: take those as saved, and save over them next time.
                stored = await asyncio.to_thread(self._table.stored)
                for projection, _, _, _ in saves:
                    version, checkpoint, _ = stored.get(projection.name, (None, 0, b""))
                    if version == projection.version:
                        self._saved[projection.name] = checkpoint
                return
            for projection, _, position, _ in saves:
                self._saved[projection.name] = position

    async def stop(self) -> None:
        """Stop following and store the final states."""
        if self._subscription is not None:
            # Not cancelled: a save in flight on its thread must finish and be accounted for.
            self._subscription.close()
        if self._task is not None:
            await self._task
        await self.save()
        self._table.close()
