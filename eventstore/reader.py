"""Reading an event log: by stream, by position, raw rows; never writing to it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Self

import orjson

from ._schema import check_log
from .events import NO_STREAM, RecordedEvent
from .upcasting import Upcasters

COLUMNS: Final = (
    "position, stream_id, stream_version, event_id, type, schema_version, data, metadata, "
    "recorded_at, hash"
)
READ_PAGE: Final = 2000
"""Rows read (and decoded) at once, at most, unless a reader asks for another page size."""
_READER_CACHE_KIB: Final = 256

Row = tuple[int, str, int, str, str, int, str, str, str, str]
"""A stored event exactly as in the table, in COLUMNS order."""


class RowReader:
    """What every backend's reader derives from four queries: decoding, paging, asyncio."""

    location: str

    def __init__(self, *, upcasters: Upcasters | None = None) -> None:
        self.upcasters = upcasters or Upcasters()
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eventstore-read")

    # The four queries a backend answers.

    def head(self) -> int:
        """The last committed position in the log (0 when empty), whoever wrote it."""
        raise NotImplementedError

    def stream_version(self, stream_id: str) -> int:
        """The stream's last version, or NO_STREAM."""
        raise NotImplementedError

    def _stream_rows(self, stream_id: str, from_version: int) -> list[Row]:
        raise NotImplementedError

    def read_rows(self, after: int = 0, limit: int = READ_PAGE) -> list[Row]:
        """Up to `limit` stored rows with positions greater than `after`, in order, undecoded."""
        raise NotImplementedError

    # Derived from them.

    def to_event(self, row: Row) -> RecordedEvent:
        """A stored row as an event, decoded and upcast."""
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

    def read_stream(self, stream_id: str, from_version: int = 0) -> list[RecordedEvent]:
        """The stream's events in version order, starting at `from_version`."""
        return [self.to_event(row) for row in self._stream_rows(stream_id, from_version)]

    def read_page(self, after: int = 0, limit: int = READ_PAGE) -> list[RecordedEvent]:
        """Up to `limit` events with positions greater than `after`, in order."""
        return [self.to_event(row) for row in self.read_rows(after, limit)]

    def read_all(self, after: int = 0, *, until: int | None = None) -> Iterator[RecordedEvent]:
        """Every event after position `after` (up to `until`), read page by page."""
        while True:
            page = self.read_page(after)
            for event in page:
                if until is not None and event.position > until:
                    return
                yield event
            if len(page) < READ_PAGE:
                return
            after = page[-1].position

    def iter_raw(self, after: int = 0) -> Iterator[Row]:
        """Rows exactly as stored, without decoding or upcasting (for verify and export)."""
        while True:
            rows = self.read_rows(after, READ_PAGE)
            yield from rows
            if len(rows) < READ_PAGE:
                return
            after = rows[-1][0]

    async def read_stream_async(self, stream_id: str, from_version: int = 0) -> list[RecordedEvent]:
        """read_stream from asyncio, on the store's reader threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.read_stream, stream_id, from_version)

    async def read_rows_async(self, after: int = 0, limit: int = READ_PAGE) -> list[Row]:
        """read_rows from asyncio, on the store's reader threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.read_rows, after, limit)

    async def read_page_async(self, after: int = 0, limit: int = READ_PAGE) -> list[RecordedEvent]:
        """read_page from asyncio, on the store's reader threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.read_page, after, limit)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SQLiteReader(RowReader):
    """Read access to an event log in an SQLite file, safe from any thread."""

    def __init__(self, path: str, *, upcasters: Upcasters | None = None) -> None:
        self.location = self.path = str(path)
        check_log(self.path)
        super().__init__(upcasters=upcasters)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA query_only = 1")
            # Reads are scans and look-ups by index; the OS caches the file. A small cache per
            # connection keeps a long-running reader's memory from growing with the log.
            conn.execute(f"PRAGMA cache_size = -{_READER_CACHE_KIB}")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def head(self) -> int:
        row = self._reader().execute("SELECT max(position) FROM events").fetchone()
        return int(row[0] or 0)

    def stream_version(self, stream_id: str) -> int:
        row = (
            self._reader()
            .execute("SELECT max(stream_version) FROM events WHERE stream_id = ?", (stream_id,))
            .fetchone()
        )
        return NO_STREAM if row[0] is None else int(row[0])

    def _stream_rows(self, stream_id: str, from_version: int) -> list[Row]:
        rows: list[Row] = (
            self._reader()
            .execute(
                f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND stream_version >= ? "
                "ORDER BY stream_version",
                (stream_id, from_version),
            )
            .fetchall()
        )
        return rows

    def read_rows(self, after: int = 0, limit: int = READ_PAGE) -> list[Row]:
        rows: list[Row] = (
            self._reader()
            .execute(
                f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (after, limit),
            )
            .fetchall()
        )
        return rows

    def stored_projections(self) -> dict[str, tuple[int, int, bytes]]:
        """The projections saved in the log's file (name -> version, checkpoint, state)."""
        conn = self._reader()
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projections'"
        ).fetchone()
        if not exists:
            return {}
        rows: list[tuple[Any, ...]] = conn.execute(
            "SELECT name, version, position, state FROM projections"
        ).fetchall()
        return {name: (v, p, state.encode()) for name, v, p, state in rows}

    def close(self) -> None:
        super().close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
