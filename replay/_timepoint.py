"""POS|TIME: a point of the log named by a position or by an ISO 8601 time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from eventstore import LogReader

HELP = "a position (a whole number) or an ISO 8601 time, UTC unless it names its zone"

Timepoint = int | datetime
"""A position, or an aware time."""


class BadTimepoint(ValueError):
    """Text that is neither a position nor a time, or a position the log does not reach."""


def parse(text: str) -> Timepoint:
    """ "120" is a position; "2025-03-01T12:00:00+01:00" or "2025-03-01" a time."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTimepoint(f"{text!r} is neither a position nor an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _times(reader: LogReader) -> Iterator[tuple[int, datetime]]:
    # Every event is looked at: recorded_at follows the writer's clock, which may step back.
    for row in reader.iter_raw():
        yield row[0], datetime.fromisoformat(row[8])


def reached_at(reader: LogReader, point: Timepoint) -> int:
    """How far the log had come at `point`: the position itself, or the last one recorded at
    or before the time (0 before the first event)."""
    if isinstance(point, datetime):
        return max((p for p, at in _times(reader) if at <= point), default=0)
    head = reader.head()
    if point > head:
        raise BadTimepoint(f"position {point} is past the log's end ({head})")
    return point


def first_from(reader: LogReader, point: Timepoint) -> int:
    """The first position at or after `point`: the position itself, or the first one recorded
    at or after the time (past the log's end when there is none)."""
    if isinstance(point, datetime):
        return min((p for p, at in _times(reader) if at >= point), default=reader.head() + 1)
    return point
