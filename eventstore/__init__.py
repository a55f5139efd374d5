"""ATOM's append-only event log on SQLite or PostgreSQL: stores, subscriptions, projections,
verification. `open_store` and `open_reader` pick the backend by the log's location."""

from ._buffered import BufferedStream
from ._open import is_postgres, open_reader, open_store
from ._projection_table import SQLiteProjectionTable
from ._protocol import EventStore, LogReader, ProjectionTable
from ._schema import LOG_FORMAT, Durability
from ._writer import WriterStats
from .errors import (
    ConcurrentRunner,
    DuplicateEventConflict,
    EventStoreError,
    GuardRefused,
    LogFormatTooNew,
    LogUnavailable,
    NotAnEventLog,
    StoreClosed,
    UpcastError,
    WrongExpectedVersion,
)
from .events import (
    ANY,
    NO_STREAM,
    ExpectedVersion,
    Guard,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    new_event_id,
)
from .projection import (
    LiveProjections,
    Projection,
    ProjectionRunner,
    canonical,
    fold,
)
from .reader import Row, SQLiteReader
from .store import SQLiteStore
from .subscription import Subscription
from .upcasting import Upcasters
from .verify import VerifyReport, verify_rows

__all__ = [
    "ANY",
    "LOG_FORMAT",
    "NO_STREAM",
    "BufferedStream",
    "ConcurrentRunner",
    "DuplicateEventConflict",
    "Durability",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "Guard",
    "GuardRefused",
    "LiveProjections",
    "LogFormatTooNew",
    "LogReader",
    "LogUnavailable",
    "NewEvent",
    "NotAnEventLog",
    "Projection",
    "ProjectionRunner",
    "ProjectionTable",
    "RecordedEvent",
    "Row",
    "SQLiteProjectionTable",
    "SQLiteReader",
    "SQLiteStore",
    "StoreClosed",
    "StreamAppend",
    "Subscription",
    "UpcastError",
    "Upcasters",
    "VerifyReport",
    "WriterStats",
    "WrongExpectedVersion",
    "canonical",
    "fold",
    "is_postgres",
    "new_event_id",
    "open_reader",
    "open_store",
    "verify_rows",
]
