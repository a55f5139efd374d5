"""The PostgreSQL event store: several processes append to one log, each through its own writer
with group commit; LISTEN/NOTIFY tells every process of every other's commits.

Positions stay gap-free and in commit order with concurrent writers because a writer assigns
them under `LOCK TABLE events IN EXCLUSIVE MODE`, held until its transaction commits: the
next writer reads the head only once the previous transaction is visible to every new
snapshot, so a reader can never see position N+1 before N, nor meet a lower position later.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC
from typing import Any, Final

import orjson
import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from ._chain import GENESIS
from ._pg_schema import channel, check_log, connect, create_log, redacted
from ._schema import Durability
from ._writer import GroupCommitWriter, Known, UniqueViolation
from .errors import ConcurrentRunner, EventStoreError, LogUnavailable
from .events import NO_STREAM
from .reader import COLUMNS, READ_PAGE, Row, RowReader
from .upcasting import Upcasters

_COPY: Final = f"COPY events ({COLUMNS}) FROM STDIN"
_READ_CONNECTIONS: Final = 4
_LISTEN_TIMEOUT_S: Final = 5.0
_RECONNECT_S: Final = 0.5
_CLOSING: Final = "closing"

_Conn = psycopg.Connection[tuple[Any, ...]]


def _read_only(conn: _Conn) -> None:
    conn.execute("SET default_transaction_read_only = on")


class PostgresReader(RowReader):
    """Read access to an event log in a PostgreSQL database, safe from any thread."""

    def __init__(self, url: str, *, upcasters: Upcasters | None = None) -> None:
        self.location = redacted(url)
        self._url = url
        check_log(url)
        super().__init__(upcasters=upcasters)
        # Reads are single statements: autocommit, so that each sees every commit made before
        # it, and no connection sits idle in a transaction; read-only, so a reader never writes.
        self._pool: ConnectionPool[_Conn] = ConnectionPool(
            url,
            kwargs={"autocommit": True},
            configure=_read_only,
            min_size=1,
            max_size=_READ_CONNECTIONS,
            num_workers=1,
            timeout=30.0,
            check=ConnectionPool.check_connection,
            open=True,
            name="eventstore-read",
        )

    def _fetch(self, query: str, params: Sequence[Any]) -> list[Any]:
        with _errors(self.location), self._pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    def head(self) -> int:
        rows = self._fetch("SELECT max(position) FROM events", ())
        return int(rows[0][0] or 0)

    def stream_version(self, stream_id: str) -> int:
        rows = self._fetch(
            "SELECT max(stream_version) FROM events WHERE stream_id = %s", (stream_id,)
        )
        return NO_STREAM if rows[0][0] is None else int(rows[0][0])

    def _stream_rows(self, stream_id: str, from_version: int) -> list[Row]:
        return self._fetch(
            f"SELECT {COLUMNS} FROM events WHERE stream_id = %s AND stream_version >= %s "
            "ORDER BY stream_version",
            (stream_id, from_version),
        )

    def read_rows(self, after: int = 0, limit: int = READ_PAGE) -> list[Row]:
        return self._fetch(
            f"SELECT {COLUMNS} FROM events WHERE position > %s ORDER BY position LIMIT %s",
            (after, limit),
        )

    def stored_projections(self) -> dict[str, tuple[int, int, bytes]]:
        """The projections saved beside the log (name -> version, checkpoint, state)."""
        rows = self._fetch("SELECT name, version, position, state FROM projections", ())
        return {name: (v, p, state.encode()) for name, v, p, state in rows}

    def close(self) -> None:
        super().close()
        self._pool.close()


class PostgresStore(PostgresReader, GroupCommitWriter):
    """An append-only event log in a PostgreSQL database, shared by any number of processes.

    Each store has one writer connection, which commits many appenders' batches per
    transaction (group commit), and one connection that LISTENs for every process's commits.
    `durability` FULL keeps `synchronous_commit` on: an append is acknowledged once its commit
    is flushed to the server's disk. NORMAL turns it off for the writer: acknowledged appends
    survive the crash of any ATOM process, and a crash of the server itself may lose the last
    fraction of a second of them (whole transactions, never leaving a gap).
    """

    def __init__(
        self,
        url: str,
        *,
        durability: Durability | str = Durability.FULL,
        upcasters: Upcasters | None = None,
        create: bool = True,
        max_group_events: int = 10_000,
    ) -> None:
        self.durability = Durability(durability)
        create_log(url, create=create)
        PostgresReader.__init__(self, url, upcasters=upcasters)
        try:
            self._conn = self._connect_writer()
            self._listen_conn = connect(url, autocommit=True)
        except BaseException:
            PostgresReader.close(self)
            raise
        self._channel = channel(self._listen_conn)
        self._listen_conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        self._tx_time = ""
        self._init_writer(max_group_events=max_group_events, head=self.head())
        self._listener = threading.Thread(
            target=self._listen_loop, name="eventstore-listen", daemon=True
        )
        self._start_writer()
        self._listener.start()

    def _connect_writer(self) -> _Conn:
        conn = connect(self._url, autocommit=False)
        conn.execute(
            "SELECT set_config('synchronous_commit', %s, false)",
            ("on" if self.durability is Durability.FULL else "off",),
        )
        conn.commit()
        self._writer_pid = conn.info.backend_pid
        return conn

    # ------------------------------------------------------------------- the SQL statements

    def _begin(self) -> None:
        if self._conn.closed or self._conn.broken:
            # The server restarted or the network failed: the group that met it has failed,
            # and this one starts on a new connection.
            self._conn = self._connect_writer()
        # Held until commit: the head read next is final, and our positions follow it.
        self._conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")

    def _reconnects(self, error: BaseException) -> bool:
        return isinstance(error, psycopg.OperationalError) and (
            self._conn.closed or self._conn.broken
        )

    def _in_transaction(self) -> bool:
        status = self._conn.info.transaction_status
        return not self._conn.closed and status != TransactionStatus.IDLE

    def _read_head(self) -> tuple[int, str]:
        # The server's clock stamps the events: one clock for every process, read under the
        # lock, so recorded_at grows with position whichever node wrote.
        row = self._conn.execute(
            "SELECT e.position, e.hash, clock_timestamp() FROM (SELECT 1) AS one LEFT JOIN "
            "(SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) AS e ON true"
        ).fetchone()
        assert row is not None
        position, hash_, now = row
        self._tx_time = now.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"
        return (0, GENESIS) if position is None else (int(position), str(hash_))

    def _clock(self) -> str:
        return self._tx_time

    def _existing_ids(self, ids: list[str]) -> dict[str, Known]:
        rows = self._conn.execute(
            "SELECT event_id, position, stream_id, type, schema_version, data, metadata "
            "FROM events WHERE event_id = ANY(%s)",
            (ids,),
        ).fetchall()
        return {row[0]: row for row in rows}

    def _max_versions(self, streams: list[str]) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT stream_id, max(stream_version) FROM events WHERE stream_id = ANY(%s) "
            "GROUP BY stream_id",
            (streams,),
        ).fetchall()
        return {stream_id: int(version) for stream_id, version in rows}

    def _versions_after(self, position: int) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT stream_id, max(stream_version) FROM events WHERE position > %s "
            "GROUP BY stream_id",
            (position,),
        ).fetchall()
        return {stream_id: int(version) for stream_id, version in rows}

    def _rows_between(self, after: int, until: int, types: frozenset[str] | None) -> list[Row]:
        query = f"SELECT {COLUMNS} FROM events WHERE position > %s AND position <= %s"
        if types is None:
            return self._conn.execute(query + " ORDER BY position", (after, until)).fetchall()
        return self._conn.execute(
            query + " AND type = ANY(%s) ORDER BY position", (after, until, sorted(types))
        ).fetchall()

    def _insert(self, rows: list[Row]) -> None:
        try:
            with self._conn.cursor() as cursor, cursor.copy(_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation as exc:
            raise UniqueViolation(str(exc)) from exc

    def _commit(self, head: int) -> None:
        # Delivered at commit, to every process LISTENing, in commit order.
        self._conn.execute("SELECT pg_notify(%s, %s)", (self._channel, str(head)))
        self._conn.commit()

    def _rollback(self) -> None:
        self._conn.rollback()

    def _close_writer(self) -> None:
        # Our own notification wakes our listener at once, where its timeout would take seconds.
        with contextlib.suppress(psycopg.Error):
            self._conn.execute("SELECT pg_notify(%s, %s)", (self._channel, _CLOSING))
            self._conn.commit()
        self._conn.close()

    # -------------------------------------------------------------------------- listening

    def _listen_loop(self) -> None:
        """Tell waiters, subscribers and listeners of every process's commits as they land."""
        while not self._closed:
            try:
                for notify in self._listen_conn.notifies(timeout=_LISTEN_TIMEOUT_S):
                    # Our own commits are told by the writer, after it has settled them.
                    if notify.payload.isdigit() and notify.pid != self._writer_pid:
                        self._learned(int(notify.payload))
                    elif self._closed:
                        break
            except psycopg.Error:
                if self._closed:
                    break
                self._relisten()
        self._listen_conn.close()

    def _relisten(self) -> None:
        """Listen again on a new connection, then catch up with what was missed meanwhile."""
        while not self._closed:
            try:
                self._listen_conn.close()
                self._listen_conn = connect(self._url, autocommit=True)
                self._listen_conn.execute(
                    sql.SQL("LISTEN {}").format(sql.Identifier(self._channel))
                )
                self._learned(self.head())
                return
            except EventStoreError:
                time.sleep(_RECONNECT_S)

    # ------------------------------------------------------------------------------ the rest

    def projection_table(self) -> PostgresProjectionTable:
        """The `projections` table beside the log's events."""
        return PostgresProjectionTable(self._url)

    def check_writable(self, timeout: float = 1.0) -> None:
        """Ask the server whether it takes writes into the log now (not a standby, not
        read-only, and we may insert)."""
        try:
            with psycopg.connect(
                self._url, autocommit=True, connect_timeout=max(1, int(timeout))
            ) as conn:
                row = conn.execute(
                    "SELECT NOT pg_is_in_recovery() "
                    "AND current_setting('default_transaction_read_only') = 'off' "
                    "AND has_table_privilege('events', 'INSERT')"
                ).fetchone()
        except psycopg.Error as exc:
            raise LogUnavailable(f"{self.location}: {exc}") from exc
        if not (row and row[0]):
            raise EventStoreError(f"{self.location}: the event log is not writable")

    def close(self) -> None:
        """Commit what is queued, then stop the writer and the listener, and disconnect."""
        if not self._stop_writer():
            return
        self._listener.join()
        PostgresReader.close(self)


class PostgresProjectionTable:
    """Projections' states and checkpoints in the log's database: one row each.

    A save is a compare-and-set in one statement: the row changes only if its checkpoint is
    still the one the runner started from, whichever process runs the other runner.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._where = redacted(url)
        self._lock = threading.Lock()
        self._conn = connect(url, autocommit=False)

    def _connection(self) -> _Conn:
        if self._conn.closed or self._conn.broken:
            self._conn = connect(self._url, autocommit=False)
        return self._conn

    def load(self, projection: Any) -> tuple[int, Any]:
        """The stored (checkpoint, state); (0, initial state) when absent or of another version."""
        with self._lock, _errors(self._where):
            conn = self._connection()
            row = conn.execute(
                "SELECT version, position, state FROM projections WHERE name = %s",
                (projection.name,),
            ).fetchone()
            conn.rollback()
        if row is None or row[0] != projection.version:
            return 0, projection.initial()
        return int(row[1]), orjson.loads(row[2])

    def save_many(self, saves: Sequence[tuple[Any, int, int, bytes]]) -> None:
        """Several projections' (projection, stored_position, position, state) in one
        transaction, each only if its stored checkpoint is still `stored_position`."""
        with self._lock, _errors(self._where):
            conn = self._connection()
            try:
                for projection, stored_position, position, state in saves:
                    saved = conn.execute(
                        "INSERT INTO projections AS p (name, version, position, state) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                        "version = excluded.version, position = excluded.position, "
                        "state = excluded.state "
                        "WHERE p.version <> excluded.version OR p.position = %s "
                        "RETURNING 1",
                        (projection.name, projection.version, position, state.decode(),
                         stored_position),
                    ).fetchone()  # fmt: skip
                    if saved is None:
                        raise ConcurrentRunner(
                            f"projection {projection.name!r}: checkpoint moved from "
                            f"{stored_position} by another runner"
                        )
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise

    def stored(self) -> dict[str, tuple[int, int, bytes]]:
        """Every stored projection: name -> (version, checkpoint, state bytes)."""
        with self._lock, _errors(self._where):
            conn = self._connection()
            rows = conn.execute("SELECT name, version, position, state FROM projections")
            found = {name: (v, p, state.encode()) for name, v, p, state in rows}
            conn.rollback()
            return found

    def close(self) -> None:
        self._conn.close()


@contextlib.contextmanager
def _errors(where: str) -> Iterator[None]:
    """Turn psycopg's errors into the event store's: callers never catch the driver's."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise LogUnavailable(f"{where}: {exc}") from exc
    except psycopg.Error as exc:
        raise EventStoreError(f"{where}: {exc}") from exc
