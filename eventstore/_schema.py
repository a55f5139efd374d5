"""The log's SQLite schema, and opening a file as an event log (or refusing to)."""

from __future__ import annotations

import os
import sqlite3
from enum import StrEnum

from .errors import LogFormatTooNew, NotAnEventLog

LOG_FORMAT = 1
"""Stored in PRAGMA user_version; a log with a higher number was written by a newer ATOM."""

_SQLITE_MAGIC = b"SQLite format 3\x00"

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


class Durability(StrEnum):
    """FULL fsyncs every group commit (survives power loss); NORMAL survives a process crash."""

    FULL = "full"
    NORMAL = "normal"


def _check_file(path: str, *, create: bool) -> None:
    if not os.path.exists(path):
        if create:
            return
        raise NotAnEventLog(f"{path}: no such file")
    if os.path.isdir(path):
        raise NotAnEventLog(f"{path}: is a directory, not an event log")
    with open(path, "rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if head == b"" and create:
        return
    if head != _SQLITE_MAGIC:
        raise NotAnEventLog(f"{path}: not an SQLite database")


def connect(
    path: str, *, create: bool = True, durability: Durability = Durability.FULL
) -> sqlite3.Connection:
    """Open `path` as an event log, creating the schema when `create` and the file is new."""
    _check_file(path, create=create)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > LOG_FORMAT:
            raise LogFormatTooNew(
                f"{path}: written by a newer ATOM (log format {version}; this one reads "
                f"up to {LOG_FORMAT})"
            )
        has_events = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()
        if version == 0 and not has_events:
            other = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if other or not create:
                raise NotAnEventLog(f"{path}: an SQLite database, but not an ATOM event log")
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
