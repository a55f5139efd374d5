"""Events as they are appended and as they are read back."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NO_STREAM: Final = -1
"""Expected version of a stream that must not exist yet (versions start at 0)."""

ANY: Final = _Marker("ANY")
"""Expected version that accepts the stream in any state."""

ExpectedVersion = int | _Marker


_ID_BATCH: Final = 256
_HEX_VARIANT: Final = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
_fresh_ids: list[str] = []
os.register_at_fork(after_in_child=_fresh_ids.clear)


def _random_ids() -> list[str]:
    """Version 7 UUIDs: the time in ms, then 74 random bits; one read of the OS's source."""
    ms = f"{time.time_ns() // 1_000_000:012x}"
    time_and_version = f"{ms[:8]}-{ms[8:]}-7"
    raw = os.urandom(10 * _ID_BATCH).hex()
    return [
        f"{time_and_version}{r[:3]}-{_HEX_VARIANT[r[3]]}{r[4:7]}-{r[7:19]}"
        for r in (raw[i : i + 20] for i in range(0, len(raw), 20))
    ]


def new_event_id() -> str:
    """A random, time-ordered UUID (version 7), for event, request and call ids.

    Time-ordered, a new id lands at the end of the log's indexes (event_id, and stream_id for
    request streams) instead of at a random page: the writer spent a third more CPU with
    random (version 4) ids. os.urandom is read for 256 ids at once: one system call per id
    cost more than the rest of an append, and each let another thread take the GIL. A forked
    child draws its own.
    """
    while True:
        try:
            return _fresh_ids.pop()  # atomic under the GIL, so safe from any thread
        except IndexError:
            _fresh_ids.extend(_random_ids())


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. event_id makes appends idempotent: retry with the same one."""

    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=new_event_id)
    schema_version: int = 1
    recorded_at: str | None = None
    """Set only when moving a log (`atom replay import`); the writer stamps its clock otherwise."""


class RecordedEvent(NamedTuple):
    """An event as the log holds it, after upcasting to the current schema version."""

    # A NamedTuple rather than a frozen dataclass: rebuilding projections constructs one per
    # stored row, and a tuple is built about four times faster.
    position: int
    stream_id: str
    stream_version: int
    event_id: str
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: str
    hash: str

    @property
    def correlation_id(self) -> str | None:
        value = self.metadata.get("correlation_id")
        return value if isinstance(value, str) else None

    @property
    def causation_id(self) -> str | None:
        value = self.metadata.get("causation_id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Guard:
    """A condition an append is committed on, decided under the log's write lock.

    `check` is given every event of the `types` named that other processes committed after
    position `after` (what its appender may not have seen yet), and returns None to let the
    append be written, or why not. Several processes appending to one log thus decide on
    everything committed before them: a check that passes cannot be raced. Checks run on the
    committing thread and must be quick.
    """

    after: int
    check: Callable[[Sequence[RecordedEvent]], str | None]
    types: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's part of an atomic batch that may span several streams."""

    stream_id: str
    events: Sequence[NewEvent]
    expected_version: ExpectedVersion = ANY
