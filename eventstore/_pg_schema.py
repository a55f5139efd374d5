"""The log's PostgreSQL schema, and opening a database as an event log (or refusing to)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from ._schema import LOG_FORMAT
from .errors import LogFormatTooNew, LogUnavailable, NotAnEventLog

# The same columns as on SQLite, stored as the same text: the hash chain covers data and
# metadata as their JSON text, which jsonb would normalise (key order, spacing, numbers).
_DDL = [
    "CREATE TABLE atom_log (format integer NOT NULL)",
    """
    CREATE TABLE events (
        position       bigint  PRIMARY KEY,
        stream_id      text    NOT NULL,
        stream_version bigint  NOT NULL,
        event_id       text    NOT NULL UNIQUE,
        type           text    NOT NULL,
        schema_version integer NOT NULL,
        data           text    NOT NULL,
        metadata       text    NOT NULL,
        recorded_at    text    NOT NULL,
        hash           text    NOT NULL,
        UNIQUE (stream_id, stream_version)
    )
    """,
    """
    CREATE FUNCTION atom_events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the event log is append-only: % refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    "CREATE TRIGGER events_are_never_updated BEFORE UPDATE ON events "
    "FOR EACH ROW EXECUTE FUNCTION atom_events_are_append_only()",
    "CREATE TRIGGER events_are_never_deleted BEFORE DELETE ON events "
    "FOR EACH ROW EXECUTE FUNCTION atom_events_are_append_only()",
    "CREATE TRIGGER events_are_never_truncated BEFORE TRUNCATE ON events "
    "FOR EACH STATEMENT EXECUTE FUNCTION atom_events_are_append_only()",
    """
    CREATE TABLE projections (
        name     text    PRIMARY KEY,
        version  integer NOT NULL,
        position bigint  NOT NULL,
        state    text    NOT NULL
    )
    """,
]

_CREATORS_LOCK = 0x61746F6D  # "atom": serialises processes creating the schema at once


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rpartition("@")
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[2]}"))


def connect(url: str, *, autocommit: bool) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection to the log's database, or LogUnavailable."""
    try:
        return psycopg.connect(url, autocommit=autocommit)
    except psycopg.Error as exc:
        raise LogUnavailable(f"{redacted(url)}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _format(conn: psycopg.Connection[tuple[Any, ...]], where: str) -> int | None:
    """The log format of the database's event log, None when it holds none."""
    row = conn.execute(
        "SELECT to_regclass('atom_log') IS NOT NULL, to_regclass('events') IS NOT NULL"
    ).fetchone()
    assert row is not None
    has_log, has_events = row
    if not has_log:
        if has_events:
            raise NotAnEventLog(f"{where}: has an 'events' table that is not an ATOM event log")
        return None
    found = conn.execute("SELECT max(format) FROM atom_log").fetchone()
    version = int(found[0]) if found and found[0] is not None else 0
    if version > LOG_FORMAT:
        raise LogFormatTooNew(
            f"{where}: written by a newer ATOM (log format {version}; this one reads "
            f"up to {LOG_FORMAT})"
        )
    return version


def check_log(url: str) -> None:
    """Raise unless the database at `url` holds an event log this ATOM can read."""
    where = redacted(url)
    with connect(url, autocommit=True) as conn:
        if _format(conn, where) is None:
            raise NotAnEventLog(f"{where}: a PostgreSQL database, but not an ATOM event log")


def create_log(url: str, *, create: bool) -> None:
    """Make sure the database at `url` holds an event log, creating it if allowed."""
    where = redacted(url)
    with connect(url, autocommit=False) as conn:
        # Several processes may start on a fresh database at once: one creates, the others
        # wait for its commit and then find the log there.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATORS_LOCK,))
        if _format(conn, where) is None:
            if not create:
                raise NotAnEventLog(f"{where}: a PostgreSQL database, but not an ATOM event log")
            for statement in _DDL:
                conn.execute(statement)
            conn.execute("INSERT INTO atom_log (format) VALUES (%s)", (LOG_FORMAT,))
        conn.commit()


def channel(conn: psycopg.Connection[tuple[Any, ...]]) -> str:
    """The notification channel of the log in the connection's schema: NOTIFY reaches the whole
    database, so two logs in two schemas of one database must not wake each other."""
    row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None
    return f"atom_events.{row[0]}"
