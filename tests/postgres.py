"""A real PostgreSQL for the tests: one server per test session (the PyPI package pgserver,
PostgreSQL 16), and a fresh database per test."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

with warnings.catch_warnings():
    # It looks for $XDG_RUNTIME_DIR, unset in CI, and falls back to /tmp as we would.
    warnings.simplefilter("ignore")
    from pgserver.postgres_server import get_server

_names = itertools.count(1)


class PostgresServer:
    """A PostgreSQL server of our own, listening on a Unix socket only, removed at the end."""

    def __init__(self) -> None:
        # Not under pytest's basetemp: another pytest run on the machine prunes old basetemps,
        # and would delete a data directory still in use.
        self._directory = Path(tempfile.mkdtemp(prefix="atom-postgres-"))
        self._server = get_server(self._directory / "data", cleanup_mode="delete")

    def url(self, database: str = "postgres") -> str:
        url: str = self._server.get_uri(database)
        return url

    @contextmanager
    def database(self) -> Iterator[str]:
        """The URL of a new, empty database, dropped afterwards with whatever still uses it."""
        name = f"atom_test_{next(_names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(self.url(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        self._server.cleanup()
        shutil.rmtree(self._directory, ignore_errors=True)
