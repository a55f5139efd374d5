"""Events as they are appended and as they are read back."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
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


def new_event_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. event_id makes appends idempotent: retry with the same one."""

    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=new_event_id)
    schema_version: int = 1


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
