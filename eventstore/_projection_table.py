"""Projections' states and checkpoints in an SQLite file: one row each, saved atomically."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from .errors import ConcurrentRunner

_DDL = """
CREATE TABLE IF NOT EXISTS projections (
    name     TEXT PRIMARY KEY,
    version  INTEGER NOT NULL,
    position INTEGER NOT NULL,
    state    TEXT    NOT NULL
)
"""


class SQLiteProjectionTable:
    """The `projections` table of an SQLite file (the log's own, or another)."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # The state can always be rebuilt from the log, so its commits need not reach the disk.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(_DDL)
        self._lock = threading.Lock()

    def load(self, projection: Any) -> tuple[int, Any]:
        """The stored (checkpoint, state); (0, initial state) when absent or of another version."""
        with self._lock:
            row = self._conn.execute(
                "SELECT version, position, state FROM projections WHERE name = ?",
                (projection.name,),
            ).fetchone()
        if row is None or row[0] != projection.version:
            return 0, projection.initial()
        return int(row[1]), orjson.loads(row[2])

    def save_many(self, saves: Sequence[tuple[Any, int, int, bytes]]) -> None:
        """Several projections' (projection, stored_position, position, state) in one
        transaction: one hold of the log file's write lock, which the log's writer waits for."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for projection, stored_position, position, state in saves:
                    row = self._conn.execute(
                        "SELECT version, position FROM projections WHERE name = ?",
                        (projection.name,),
                    ).fetchone()
                    if (
                        row is not None
                        and row[0] == projection.version
                        and row[1] != stored_position
                    ):
                        raise ConcurrentRunner(
                            f"projection {projection.name!r}: checkpoint moved from "
                            f"{stored_position} to {row[1]} by another runner"
                        )
                    self._conn.execute(
                        "INSERT INTO projections (name, version, position, state) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                        "version = excluded.version, position = excluded.position, "
                        "state = excluded.state",
                        (projection.name, projection.version, position, state.decode()),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def stored(self) -> dict[str, tuple[int, int, bytes]]:
        """Every stored projection: name -> (version, checkpoint, state bytes)."""
        with self._lock:
            rows = self._conn.execute("SELECT name, version, position, state FROM projections")
            return {name: (v, p, state.encode()) for name, v, p, state in rows}

    def close(self) -> None:
        self._conn.close()
