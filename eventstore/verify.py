"""Verification of a log: positions gap-free, stream versions in order, the hash chain intact."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._chain import GENESIS, event_hash
from .reader import Row


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What verification found: `first_bad_position` is None when the log is intact."""

    events: int
    streams: int
    head: int
    head_hash: str
    first_bad_position: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_position is None


def verify_rows(rows: Iterable[Row]) -> VerifyReport:
    """Check stored rows in position order; stop at the first problem."""
    previous = GENESIS
    expected_position = 1
    versions: dict[str, int] = {}
    count = 0

    def bad(position: int, problem: str) -> VerifyReport:
        return VerifyReport(
            count, len(versions), expected_position - 1, previous, position, problem
        )

    for row in rows:
        position, stream_id, stream_version, event_id, type_, schema_version, data, meta, at, h = (
            row
        )
        if position != expected_position:
            return bad(
                expected_position,
                f"position {expected_position} is missing (next stored is {position})",
            )
        want_version = versions.get(stream_id, -1) + 1
        if stream_version != want_version:
            return bad(
                position,
                f"stream {stream_id!r} has version {stream_version} where {want_version} belongs",
            )
        computed = event_hash(
            previous,
            position,
            stream_id,
            stream_version,
            event_id,
            type_,
            schema_version,
            data,
            meta,
            at,
        )
        if computed != h:
            return bad(position, "hash mismatch: the event was altered or the chain reordered")
        versions[stream_id] = stream_version
        previous = h
        expected_position += 1
        count += 1
    return VerifyReport(count, len(versions), expected_position - 1, previous)
