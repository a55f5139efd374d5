"""The log's SQLite schema, and opening a file as an event log (or refusing to)."""

from __future__ import annotations

import os
import sqlite3
from enum import StrEnum

from .errors import LogFormatTooNew, NotAnEventLog

LOG_FORMAT = 1
"""Stored in PRAGMA user_version; a log with a higher number was written by a newer ATOM."""

_DDL = """
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    event_id       TEXT    NOT NULL UNIQUE,
    type           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE TRIGGER IF NOT EXISTS events_are_never_updated BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_are_never_deleted BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: DELETE refused'); END;
"""


BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for another connection's write lock before it gives up."""


class Durability(StrEnum):
    """FULL fsyncs every group commit (survives power loss); NORMAL survives a process crash."""

    FULL = "full"
    NORMAL = "normal"


def _check_file(path: str, *, create: bool) -> None:
    # Never open() the file here: closing any descriptor of a database file drops every POSIX
    # lock this process holds on it, SQLite's included, and other processes would then
    # truncate a WAL still in use. SQLite itself tells a non-database apart (see _inspect).
    if os.path.isdir(path):
        raise NotAnEventLog(f"{path}: is a directory, not an event log")
    if not create and not os.path.exists(path):
        raise NotAnEventLog(f"{path}: no such file")


def _inspect(conn: sqlite3.Connection, path: str, *, create: bool) -> int:
    """Check the open file is an event log this ATOM reads; returns its log format."""
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise NotAnEventLog(f"{path}: not an SQLite database") from exc
    if version > LOG_FORMAT:
        raise LogFormatTooNew(
            f"{path}: written by a newer ATOM (log format {version}; this one reads "
            f"up to {LOG_FORMAT})"
        )
    has_events = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
    ).fetchone()
    if not has_events:
        other = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if other or not create:
            raise NotAnEventLog(f"{path}: an SQLite database, but not an ATOM event log")
    return version


def check_log(path: str) -> None:
    """Raise unless `path` is an existing event log this ATOM can read; writes nothing."""
    _check_file(path, create=False)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise NotAnEventLog(f"{path}: {exc}") from exc
    try:
        _inspect(conn, path, create=False)
    except sqlite3.DatabaseError as exc:
        raise NotAnEventLog(f"{path}: {exc}") from exc
    finally:
        conn.close()


def connect(
    path: str, *, create: bool = True, durability: Durability = Durability.FULL
) -> sqlite3.Connection:
    """Open `path` as an event log for writing, creating the schema when the file is new."""
    _check_file(path, create=create)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = _inspect(conn, path, create=create)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {durability.value.upper()}")
        if version == 0:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _split(_DDL):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {LOG_FORMAT}")
            conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise NotAnEventLog(f"{path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _split(script: str) -> list[str]:
    """Split the DDL into statements; triggers hold ';' inside BEGIN ... END."""
    statements: list[str] = []
    buffer = ""
    for line in script.strip().splitlines():
        buffer += line + "\n"
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return statements
