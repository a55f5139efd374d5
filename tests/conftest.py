"""Fixtures every test package may use: a real PostgreSQL, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, started by the first test that needs it."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database of its own for this test."""
    with postgres_server.database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def log_location(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Where a test's event log lives, once per backend: an SQLite file, a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path_factory.mktemp("log") / "log.db")
    url: str = request.getfixturevalue("postgres_url")
    return url
