"""The store fixtures: each test that takes `store` or `location` runs once per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import EventStore, open_store


@pytest.fixture
def location(log_location: str) -> str:
    """The log's location: an SQLite path, then a PostgreSQL URL."""
    return log_location


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """An SQLite log's path, for the tests of what only SQLite has."""
    return str(tmp_path / "log.db")


@pytest.fixture
def store(location: str) -> Iterator[EventStore]:
    with open_store(location) as s:
        yield s
