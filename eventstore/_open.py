"""Opening a log by its location: a `postgresql://` URL, or else the path of an SQLite file."""

from __future__ import annotations

from ._protocol import EventStore, LogReader
from ._schema import Durability
from .upcasting import Upcasters

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str) -> bool:
    """True when `location` names a PostgreSQL database rather than an SQLite file."""
    return location.startswith(_SCHEMES)


def open_store(
    location: str,
    *,
    durability: Durability | str = Durability.FULL,
    upcasters: Upcasters | None = None,
    create: bool = True,
    max_group_events: int = 10_000,
) -> EventStore:
    """Open the log at `location` for appending; `create=False` refuses a log that is absent."""
    if is_postgres(location):
        # Imported here: a process on an SQLite log never loads the PostgreSQL driver.
        from .postgres import PostgresStore

        return PostgresStore(
            location,
            durability=durability,
            upcasters=upcasters,
            create=create,
            max_group_events=max_group_events,
        )
    from .store import SQLiteStore

    return SQLiteStore(
        location,
        durability=durability,
        upcasters=upcasters,
        create=create,
        max_group_events=max_group_events,
    )


def open_reader(location: str, *, upcasters: Upcasters | None = None) -> LogReader:
    """Open the existing log at `location` for reading only."""
    if is_postgres(location):
        from .postgres import PostgresReader

        return PostgresReader(location, upcasters=upcasters)
    from .reader import SQLiteReader

    return SQLiteReader(location, upcasters=upcasters)
