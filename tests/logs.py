"""Reaching a log behind its store's back, whichever database holds it: for the tests that
hold its write lock, count its rows, or try to change what is written."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg

from eventstore import is_postgres

DriverError = (sqlite3.Error, psycopg.Error)
"""What the database itself raises when it refuses a statement."""


def execute(location: str, statement: str) -> list[tuple[Any, ...]]:
    """Run one SQL statement on its own connection and commit; the rows it returns."""
    if is_postgres(location):
        with psycopg.connect(location, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []
    lite = sqlite3.connect(location, isolation_level=None)
    try:
        return lite.execute(statement).fetchall()
    finally:
        lite.close()


def tamper(location: str, statement: str) -> None:
    """Run a statement after dropping the triggers that keep the log append-only."""
    if is_postgres(location):
        drop = "DROP TRIGGER events_are_never_{} ON events"
    else:
        drop = "DROP TRIGGER events_are_never_{}"
    for kind in ("updated", "deleted"):
        execute(location, drop.format(kind))
    execute(location, statement)


class WriteLocked:
    """Hold the log's write lock from another connection, so that its writer must wait."""

    def __init__(self, location: str) -> None:
        self._location = location
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: psycopg.Connection[Any] | None = None

    def __enter__(self) -> WriteLocked:
        if is_postgres(self._location):
            self._postgres = psycopg.connect(self._location)
            self._postgres.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        else:
            self._sqlite = sqlite3.connect(
                self._location, isolation_level=None, check_same_thread=False
            )
            self._sqlite.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._postgres is not None:
            self._postgres.rollback()
            self._postgres.close()
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
