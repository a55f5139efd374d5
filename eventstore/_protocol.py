"""What the rest of ATOM uses of an event log, whichever database holds it.

Two backends implement these protocols: SQLite (`SQLiteReader`, `SQLiteStore`) for one
process on one machine, PostgreSQL (`PostgresReader`, `PostgresStore`) for several processes
on one shared log. `open_reader` and `open_store` pick one by the log's location, and the
contract tests in tests/eventstore run once per backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, Self

from ._schema import Durability
from ._writer import WriterStats
from .events import ExpectedVersion, Guard, NewEvent, RecordedEvent, StreamAppend
from .reader import READ_PAGE, Row
from .upcasting import Upcasters


class ProjectionTable(Protocol):
    """Where projections keep their state and checkpoint: one row each, saved atomically."""

    def load(self, projection: Any) -> tuple[int, Any]:
        """The stored (checkpoint, state); (0, initial state) when absent or of another version."""
        ...

    def save_many(self, saves: Sequence[tuple[Any, int, int, bytes]]) -> None:
        """(projection, stored_position, position, state) each, in one transaction; each saved
        only if its checkpoint is still `stored_position` (else `ConcurrentRunner`)."""
        ...

    def stored(self) -> dict[str, tuple[int, int, bytes]]:
        """Every stored projection: name -> (version, checkpoint, state bytes)."""
        ...

    def close(self) -> None: ...


class LogReader(Protocol):
    """Read access to an event log, safe from any thread; opening it changes nothing."""

    @property
    def location(self) -> str:
        """The SQLite path or the PostgreSQL URL the log was opened at (without a password)."""
        ...

    upcasters: Upcasters

    def to_event(self, row: Row) -> RecordedEvent:
        """A stored row as an event, decoded and upcast."""
        ...

    def head(self) -> int:
        """The last committed position in the log (0 when empty), whoever wrote it."""
        ...

    def stream_version(self, stream_id: str) -> int:
        """The stream's last version, or NO_STREAM."""
        ...

    def read_stream(self, stream_id: str, from_version: int = 0) -> list[RecordedEvent]:
        """The stream's events in version order, starting at `from_version`."""
        ...

    def read_page(self, after: int = 0, limit: int = READ_PAGE) -> list[RecordedEvent]:
        """Up to `limit` events with positions greater than `after`, in order."""
        ...

    def read_rows(self, after: int = 0, limit: int = READ_PAGE) -> list[Row]:
        """Up to `limit` stored rows with positions greater than `after`, in order, undecoded."""
        ...

    def read_all(self, after: int = 0, *, until: int | None = None) -> Iterator[RecordedEvent]:
        """Every event after position `after` (up to `until`), read page by page."""
        ...

    def iter_raw(self, after: int = 0) -> Iterator[Row]:
        """Rows exactly as stored, without decoding or upcasting (for verify and export)."""
        ...

    async def read_stream_async(
        self, stream_id: str, from_version: int = 0
    ) -> list[RecordedEvent]: ...

    async def read_rows_async(self, after: int = 0, limit: int = READ_PAGE) -> list[Row]: ...

    async def read_page_async(
        self, after: int = 0, limit: int = READ_PAGE
    ) -> list[RecordedEvent]: ...

    def stored_projections(self) -> dict[str, tuple[int, int, bytes]]:
        """The projections saved beside the log (name -> version, checkpoint, state), read only."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class EventStore(LogReader, Protocol):
    """An append-only event log: atomic, idempotent appends acknowledged once committed.

    Positions are gap-free and in commit order; a stream's versions start at 0. Appends go
    through one writer per store, which commits many appenders' batches per transaction.
    """

    durability: Durability

    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ...
    ) -> list[int]:
        """Append an atomic batch and block until it is committed; returns its positions."""
        ...

    def append_future(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ...
    ) -> Future[list[int]]:
        """Queue an atomic batch to one stream; the future gives its positions once committed."""
        ...

    def append_batch(self, parts: Sequence[StreamAppend]) -> list[list[int]]:
        """Append an atomic batch over several streams: all or nothing; each part's positions."""
        ...

    def append_batch_future(self, parts: Sequence[StreamAppend]) -> Future[list[list[int]]]: ...

    async def append_async(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ...
    ) -> list[int]:
        """Append from asyncio without blocking the loop; returns once committed."""
        ...

    def append_soon(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ...,
        *,
        guard: Guard | None = None,
    ) -> asyncio.Future[list[int]]:
        """Queue an append from the running loop; the writer wakes the loop once per commit.
        With a `guard`, it is written only if the guard lets it (else GuardRefused)."""
        ...

    def append_now(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ...,
        *,
        guard: Guard | None = None,
    ) -> asyncio.Future[list[int]]:
        """append_soon, for an appender that knows it is alone: may commit on the loop itself."""
        ...

    def wait_for(self, position: int, timeout: float | None = None) -> bool:
        """Block until `position` is committed, by this store or (when told) another."""
        ...

    def add_commit_listener(
        self, listener: Callable[[int], None], loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Call `listener(head)` after every commit this store makes or learns of."""
        ...

    def remove_commit_listener(
        self, listener: Callable[[int], None], loop: asyncio.AbstractEventLoop | None = None
    ) -> None: ...

    def recent_rows(self, after: int, limit: int = READ_PAGE) -> list[Row] | None:
        """Rows after `after` from memory; [] when none is known to follow, None: read the log."""
        ...

    @property
    def stats(self) -> WriterStats:
        """The writer's counters: commits, appends, events."""
        ...

    def projection_table(self) -> ProjectionTable:
        """A table beside the log for projections' states and checkpoints (created if absent)."""
        ...

    def check_writable(self, timeout: float = 1.0) -> None:
        """Raise EventStoreError unless an append could be written now (a readiness probe)."""
        ...
