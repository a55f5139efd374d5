"""Fixtures for the replay commands: the real `atom` executable and real log files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import NewEvent, open_store
from tests.logs import tamper as tamper_with

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


def write_story(location: str) -> str:
    """20 events over 4 streams, with nested data, unicode, floats and metadata, at `location`."""
    with open_store(location) as store:
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
    return location


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """An SQLite log of the 20 events of `write_story`."""
    return Path(write_story(str(tmp_path / "source.db")))


@pytest.fixture
def log_db(log_location: str) -> str:
    """The log of `write_story`, once in SQLite and once in PostgreSQL."""
    return write_story(log_location)


@pytest.fixture
def tamper() -> Callable[[str, str], None]:
    """Run one SQL statement on a log after dropping the triggers that keep it append-only."""
    return tamper_with
