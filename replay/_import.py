"""`atom replay import`: append events from JSON Lines, idempotently, a checked batch at a time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import orjson

from eventstore import DuplicateEventConflict, EventStore, NewEvent, StreamAppend

BATCH_LINES = 1000

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "atom:replay:import")


class BadLine(ValueError):
    """A line of the input that cannot be imported; `line` is its number, from 1."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """How many event lines were read, and how many of them the log did not hold yet."""

    lines: int
    appended: int

    @property
    def already_present(self) -> int:
        return self.lines - self.appended


def derived_event_id(line: int, content: list[Any]) -> str:
    """uuid5 over the line number and the event's canonical JSON (sorted keys), for lines
    without an event_id: stable across imports, distinct for identical lines of one file."""
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode()
    return str(uuid.uuid5(_NAMESPACE, f"{line}:{canonical}"))


def _expect(line: int, key: str, ok: bool, what: str) -> None:
    if not ok:
        raise BadLine(line, f"{key!r} must be {what}")


def parse_line(line: int, raw: bytes) -> tuple[str, NewEvent]:
    """The stream and event a line holds. recorded_at is kept, so that a log exported into an
    empty one is the same log, hash for hash; the other keys the log assigns (position,
    stream_version, hash) are ignored."""
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadLine(line, f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise BadLine(line, "not a JSON object")
    for key in ("stream_id", "type", "data"):
        if key not in obj:
            raise BadLine(line, f"missing {key!r}")
    stream_id, type_, data = obj["stream_id"], obj["type"], obj["data"]
    metadata = obj.get("metadata", {})
    schema_version = obj.get("schema_version", 1)
    event_id = obj.get("event_id")
    recorded_at = obj.get("recorded_at")
    _expect(line, "stream_id", isinstance(stream_id, str) and stream_id != "", "a non-empty string")
    _expect(line, "type", isinstance(type_, str) and type_ != "", "a non-empty string")
    _expect(line, "data", isinstance(data, dict), "an object")
    _expect(line, "metadata", isinstance(metadata, dict), "an object")
    _expect(
        line,
        "schema_version",
        type(schema_version) is int and schema_version >= 1,
        "a positive integer",
    )
    _expect(
        line,
        "event_id",
        event_id is None or (isinstance(event_id, str) and event_id != ""),
        "a non-empty string",
    )
    _expect(line, "recorded_at", recorded_at is None or _is_time(recorded_at), "an ISO 8601 time")
    if event_id is None:
        event_id = derived_event_id(line, [stream_id, type_, schema_version, data, metadata])
    return stream_id, NewEvent(type_, data, metadata, event_id, schema_version, recorded_at)


def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def import_lines(
    store: EventStore, lines: Iterable[bytes], batch_lines: int = BATCH_LINES
) -> ImportSummary:
    """Append each line's event to its stream, a batch of lines as one atomic append.

    A batch is parsed whole before any of it is sent, and is written all or not at all.
    Lines already in the log (same event_id, same content) are recognised and not added
    again. Blank lines are skipped.
    """
    numbered = ((number, raw) for number, raw in enumerate(lines, 1) if raw.strip())
    read = appended = 0
    while batch := list(islice(numbered, batch_lines)):
        parsed = [(number, *parse_line(number, raw)) for number, raw in batch]
        head = store.head()
        try:
            results = store.append_batch(
                [StreamAppend(stream, [event]) for _, stream, event in parsed]
            )
        except DuplicateEventConflict as exc:
            number = next(n for n, _, e in parsed if e.event_id == exc.event_id)
            raise BadLine(
                number, f"{exc} (nothing of lines {batch[0][0]}-{batch[-1][0]} was imported)"
            ) from exc
        # A re-appended event_id answers with its original position, at or below head.
        appended += sum(positions[0] > head for positions in results)
        read += len(batch)
    return ImportSummary(read, appended)
