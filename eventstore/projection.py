"""Projections: pure folds over the log, stored with their checkpoint in one transaction."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

import orjson

from .errors import EventStoreError
from .events import RecordedEvent
from .store import EventStore
from .subscription import POLL_INTERVAL

S = TypeVar("S")

_DDL = """
CREATE TABLE IF NOT EXISTS projections (
    name     TEXT PRIMARY KEY,
    version  INTEGER NOT NULL,
    position INTEGER NOT NULL,
    state    TEXT    NOT NULL
)
"""


class Projection(Protocol[S]):
    """A fold: `apply(state, event) -> state`, starting from `initial()`.

    State is JSON data (dicts with string keys, lists, numbers, strings, None) so it can be
    stored and compared. The runner never reuses a state it has passed to `apply`, so an
    implementation may update it in place and return it. Bump `version` when the fold changes:
    the runner then rebuilds from position 0.
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


def canonical(state: Any) -> bytes:
    """The state's bytes as stored; two states are equal when these are."""
    return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)


class ConcurrentRunner(EventStoreError):
    """Another runner moved this projection's checkpoint under our feet."""


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
        self._conn = sqlite3.connect(
            db_path or store.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # The state can always be rebuilt from the log, so its commits need not reach the disk.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(_DDL)
        self._lock = threading.Lock()
        self._advanced = threading.Condition()
        self.position, self.state = self._load()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def _load(self) -> tuple[int, Any]:
        row = self._conn.execute(
            "SELECT version, position, state FROM projections WHERE name = ?",
            (self.projection.name,),
        ).fetchone()
        if row is None or row[0] != self.projection.version:
            return 0, self.projection.initial()
        return int(row[1]), orjson.loads(row[2])

    def _save(self, stored_position: int) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._conn.execute(
                "SELECT version, position FROM projections WHERE name = ?",
                (self.projection.name,),
            ).fetchone()
            if row is not None and row[0] == self.projection.version and row[1] != stored_position:
                raise ConcurrentRunner(
                    f"projection {self.projection.name!r}: checkpoint moved from "
                    f"{stored_position} to {row[1]} by another runner"
                )
            self._conn.execute(
                "INSERT INTO projections (name, version, position, state) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
                "position = excluded.position, state = excluded.state",
                (
                    self.projection.name,
                    self.projection.version,
                    self.position,
                    canonical(self.state).decode(),
                ),
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

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
            self._save(stored)
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
        self._conn.close()
