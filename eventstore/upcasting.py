"""Upcasting: old events are read in the current shape, never rewritten in the log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import UpcastError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    """Steps that lift an event type's data from schema version N to N+1."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}
        self._current: dict[str, int] = {}

    def register(self, event_type: str, from_version: int, step: Upcaster) -> None:
        """Register the step from `from_version` to `from_version + 1` of `event_type`."""
        self._steps[(event_type, from_version)] = step
        self._current[event_type] = max(self._current.get(event_type, 1), from_version + 1)

    def current_version(self, event_type: str) -> int:
        return self._current.get(event_type, 1)

    def needs_upcast(self, event_type: str, version: int) -> bool:
        return version < self._current.get(event_type, version)

    def upcast(
        self, event_type: str, version: int, data: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """Return (current version, data in the current shape)."""
        target = self.current_version(event_type)
        while version < target:
            step = self._steps.get((event_type, version))
            if step is None:
                raise UpcastError(f"{event_type}: no upcaster from schema version {version}")
            data = step(data)
            version += 1
        return version, data
