"""Fixtures for the replay commands: the real `atom` executable and real log files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import NewEvent, SQLiteStore

ATOM = str(Path(sys.executable).with_name("atom"))

Atom = Callable[..., subprocess.CompletedProcess[str]]


def _run_atom(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ATOM, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def atom() -> Atom:
    """Run `atom ARGS...` and return the finished process (stdout and stderr as text)."""
    return _run_atom


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """A log of 20 events over 4 streams, with nested data, unicode, floats and metadata."""
    path = tmp_path / "source.db"
    with SQLiteStore(str(path)) as store:
        for i in range(20):
            store.append(
                f"request-{i % 4}",
                [
                    NewEvent(
                        "TokensStreamed" if i % 3 else "RequestReceived",
                        {"i": i, "text": f"żółw {i}", "cost": i / 7, "nested": {"z": [i, None]}},
                        {"correlation_id": f"c{i % 4}", "actor": "test"},
                    )
                ],
            )
    return path


@pytest.fixture
def tamper() -> Callable[[Path, str], None]:
    """Run one SQL statement on a log after dropping the triggers that keep it append-only."""

    def run(path: Path, sql: str) -> None:
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("DROP TRIGGER events_are_never_updated")
            conn.execute("DROP TRIGGER events_are_never_deleted")
            conn.execute(sql)
        conn.close()

    return run
