"""The store fixtures: each test that takes `store` or `location` runs once per backend."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventstore import EventStore, is_postgres, open_store
from tests.logs import execute


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


@pytest.fixture
def new_location(location: str, tmp_path: Path) -> Callable[[], str]:
    """Make the location of another empty log of the same backend, cheaply: an SQLite file,
    or a PostgreSQL schema of its own in the test's database."""
    numbers = itertools.count(1)

    def make() -> str:
        n = next(numbers)
        if not is_postgres(location):
            return str(tmp_path / f"log-{n}.db")
        execute(location, f"CREATE SCHEMA log_{n}")
        return f"{location}&options=-csearch_path%3Dlog_{n}"

    return make
