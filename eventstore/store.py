"""The SQLite event store: one writer thread with group commit, readers on their own connections."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ._chain import GENESIS
from ._projection_table import SQLiteProjectionTable
from ._schema import BUSY_TIMEOUT_MS, Durability, connect
from ._writer import GroupCommitWriter, Known, UniqueViolation
from .errors import EventStoreError
from .events import ANY, ExpectedVersion, Guard, NewEvent, StreamAppend
from .reader import COLUMNS, Row, SQLiteReader
from .upcasting import Upcasters

_SQL_VARIABLES: Final = 500
_INSERT: Final = f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
_WRITER_CACHE_KIB: Final = 2048
_CHECKPOINT_EVENTS: Final = 20_000
_CHECKPOINT_SECONDS: Final = 1.0


class SQLiteStore(SQLiteReader, GroupCommitWriter):
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
        self._conn = connect(str(path), create=create, durability=self.durability)
        SQLiteReader.__init__(self, str(path), upcasters=upcasters)
        self._init_writer(max_group_events=max_group_events, head=self._read_head()[0])
        # The writer never checkpoints: copying the WAL back into the database file would
        # stall every appender behind it. A thread of its own does that between commits.
        self._conn.execute("PRAGMA wal_autocheckpoint = 0")
        # Ids are time-ordered, so the indexes on event_id and (stream_id, stream_version)
        # take their inserts at the end, like the table: a small page cache holds every hot
        # page, and the writer's memory stops growing with the log early.
        self._conn.execute(f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
        self._checkpoint_due = threading.Event()
        self._uncheckpointed = 0
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="eventstore-checkpoint", daemon=True
        )
        self._start_writer()
        self._checkpointer.start()

    def append_now(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
        *,
        guard: Guard | None = None,
    ) -> asyncio.Future[list[int]]:
        """append_soon, but committed on the calling loop's thread when the writer has nothing
        queued and durability is normal: two thread hand-overs saved, the loop held meanwhile.

        For an appender that knows it is alone (one request in flight); under load, appends go
        through the writer so that group commit shares a transaction among them.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[int]] = loop.create_future()
        parts = [StreamAppend(stream_id, events, expected_version)]
        append = self._unit(parts, waiter=waiter, loop=loop, single=True, guard=guard)
        if self.durability is Durability.NORMAL and self._commit_lock.acquire(False):
            try:
                with self._close_lock:
                    alone = not self._closed and self._queued == 0
                if alone and self._begun_at_once():
                    self._commit_group([append])
                    return waiter
            finally:
                self._commit_lock.release()
        self._put(append)
        return waiter

    def _begun_at_once(self) -> bool:
        """Begin the write transaction if no other connection holds the file's write lock: the
        loop must not wait for one (another process's append, a projection's save)."""
        conn = self._conn
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return True

    # ------------------------------------------------------------------- the SQL statements

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _in_transaction(self) -> bool:
        return self._conn.in_transaction

    def _read_head(self) -> tuple[int, str]:
        row = self._conn.execute(
            "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
        ).fetchone()
        return (0, GENESIS) if row is None else (row[0], row[1])

    def _existing_ids(self, ids: list[str]) -> dict[str, Known]:
        found: dict[str, Known] = {}
        for i in range(0, len(ids), _SQL_VARIABLES):
            chunk = ids[i : i + _SQL_VARIABLES]
            for row in self._conn.execute(
                "SELECT event_id, position, stream_id, type, schema_version, data, metadata "
                f"FROM events WHERE event_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                found[row[0]] = row
        return found

    def _max_versions(self, streams: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for i in range(0, len(streams), _SQL_VARIABLES):
            chunk = streams[i : i + _SQL_VARIABLES]
            for stream_id, version in self._conn.execute(
                "SELECT stream_id, max(stream_version) FROM events "
                f"WHERE stream_id IN ({','.join('?' * len(chunk))}) GROUP BY stream_id",
                chunk,
            ):
                found[stream_id] = version
        return found

    def _versions_after(self, position: int) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT stream_id, max(stream_version) FROM events WHERE position > ? "
            "GROUP BY stream_id",
            (position,),
        )
        return dict(rows)

    def _rows_between(self, after: int, until: int, types: frozenset[str] | None) -> list[Row]:
        query = f"SELECT {COLUMNS} FROM events WHERE position > ? AND position <= ?"
        arguments: list[object] = [after, until]
        if types is not None:
            query += f" AND type IN ({','.join('?' * len(types))})"
            arguments.extend(sorted(types))
        return self._conn.execute(query + " ORDER BY position", arguments).fetchall()

    def _insert(self, rows: list[Row]) -> None:
        try:
            self._conn.executemany(_INSERT, rows)
        except sqlite3.IntegrityError as exc:
            raise UniqueViolation(str(exc)) from exc

    def _commit(self, head: int) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        self._conn.execute("ROLLBACK")

    def _close_writer(self) -> None:
        self._conn.close()

    def _committed_group(self, events: int) -> None:
        self._uncheckpointed += events
        if self._uncheckpointed >= _CHECKPOINT_EVENTS:
            self._uncheckpointed = 0
            self._checkpoint_due.set()

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        while not self._closed:
            self._checkpoint_due.wait(timeout=_CHECKPOINT_SECONDS)
            self._checkpoint_due.clear()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        # After a clean close the database file alone holds the whole log.
        self._writer.join()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()

    # ------------------------------------------------------------------------------ the rest

    def projection_table(self) -> SQLiteProjectionTable:
        """The log file's own `projections` table."""
        return SQLiteProjectionTable(self.path)

    def check_writable(self, timeout: float = 1.0) -> None:
        """Take the file's write lock and let it go: fails on a read-only file, disk or mount."""
        try:
            # A connection of its own: the writer's belongs to the writer thread. mode=rw: a
            # log that has vanished must fail the check, not be created empty.
            uri = f"{Path(self.path).absolute().as_uri()}?mode=rw"
            conn = sqlite3.connect(uri, uri=True, timeout=timeout)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise EventStoreError(f"the event log is not writable: {exc}") from exc

    def close(self) -> None:
        """Commit what is queued, then stop the writer and close every connection."""
        if not self._stop_writer():
            return
        self._checkpoint_due.set()
        self._checkpointer.join()
        super().close()
