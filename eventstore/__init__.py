"""ATOM's append-only event log: an SQLite store, subscriptions, projections, verification."""

from ._schema import LOG_FORMAT, Durability
from .errors import (
    DuplicateEventConflict,
    EventStoreError,
    LogFormatTooNew,
    NotAnEventLog,
    StoreClosed,
    UpcastError,
    WrongExpectedVersion,
)
from .events import ANY, NO_STREAM, ExpectedVersion, NewEvent, RecordedEvent, new_event_id
from .projection import (
    ConcurrentRunner,
    LiveProjections,
    Projection,
    ProjectionRunner,
    ProjectionTable,
    canonical,
    fold,
)
from .reader import LogReader, Row
from .store import BufferedStream, EventStore, StreamAppend, WriterStats
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
    "LiveProjections",
    "LogFormatTooNew",
    "LogReader",
    "NewEvent",
    "NotAnEventLog",
    "Projection",
    "ProjectionRunner",
    "ProjectionTable",
    "RecordedEvent",
    "Row",
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
    "new_event_id",
    "verify_rows",
]
