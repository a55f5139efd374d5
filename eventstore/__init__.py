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
from .events import ANY, NO_STREAM, ExpectedVersion, NewEvent, RecordedEvent
from .projection import ConcurrentRunner, Projection, ProjectionRunner, canonical, fold
from .store import EventStore, WriterStats
from .subscription import Subscription
from .upcasting import Upcasters
from .verify import VerifyReport, verify_rows

__all__ = [
    "ANY",
    "LOG_FORMAT",
    "NO_STREAM",
    "ConcurrentRunner",
    "DuplicateEventConflict",
    "Durability",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "LogFormatTooNew",
    "NewEvent",
    "NotAnEventLog",
    "Projection",
    "ProjectionRunner",
    "RecordedEvent",
    "StoreClosed",
    "Subscription",
    "UpcastError",
    "Upcasters",
    "VerifyReport",
    "WriterStats",
    "WrongExpectedVersion",
    "canonical",
    "fold",
    "verify_rows",
]
