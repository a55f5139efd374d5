"""The event store's errors: one base class, one subclass per thing a caller can act on."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base class of every error the event store raises."""


class WrongExpectedVersion(EventStoreError):
    """An append's expected version did not match the stream; `actual` is the version found."""

    def __init__(self, stream_id: str, expected: object, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r}: expected version {expected}, actual version {actual}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class DuplicateEventConflict(EventStoreError):
    """An event_id was appended before with other content (or only part of a batch was)."""

    def __init__(self, event_id: str, reason: str) -> None:
        super().__init__(f"event_id {event_id!r}: {reason}")
        self.event_id = event_id


class GuardRefused(EventStoreError):
    """An append's guard refused it, under the log's write lock; nothing of it was written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotAnEventLog(EventStoreError):
    """The file is missing, is not SQLite, or the file or PostgreSQL database holds no ATOM
    event log."""


class LogUnavailable(EventStoreError):
    """The log's database cannot be reached: the server is down, refuses us, or has no such
    database (ATOM creates a log's tables, never a database)."""


class LogFormatTooNew(EventStoreError):
    """The log was written by a newer version of ATOM than this one."""


class StoreClosed(EventStoreError):
    """The store was closed; no more appends are taken."""


class UpcastError(EventStoreError):
    """An event's stored schema version has no upcaster path to the current one."""


class ConcurrentRunner(EventStoreError):
    """Another runner moved this projection's checkpoint under our feet."""
