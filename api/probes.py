"""Readiness checks that touch the real thing, remembered briefly so probes cannot flood it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from eventstore import EventStore, EventStoreError


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail}


def log_writable(store: EventStore, timeout: float = 1.0) -> Check:
    """Whether the log takes appends now: a read-only file, disk or mount, or a database that
    is down or read-only, fails."""
    try:
        store.check_writable(timeout)
    except EventStoreError as exc:
        return Check(False, str(exc))
    return Check(True, "writable")


class LogProbe:
    """`log_writable` at most once per `ttl` seconds, one check at a time."""

    def __init__(
        self, store: EventStore, *, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._last: tuple[float, Check] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> Check:
        async with self._lock:
            now = self._clock()
            if self._last is None or now - self._last[0] >= self._ttl:
                self._last = (now, await asyncio.to_thread(log_writable, self._store))
            return self._last[1]
