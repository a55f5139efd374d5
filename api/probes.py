"""Readiness checks that touch the real thing, remembered briefly so probes cannot flood it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail}


def log_writable(path: str, timeout: float = 1.0) -> Check:
    """Take the log's write lock and let it go: fails on a read-only file, disk or mount."""
    try:
        # mode=rw: a log that has vanished must fail the check, not be created empty.
        uri = f"{Path(path).absolute().as_uri()}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check(False, f"the event log is not writable: {exc}")
    return Check(True, "writable")


class LogProbe:
    """`log_writable` at most once per `ttl` seconds, one check at a time."""

    def __init__(
        self, path: str, *, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = path
        self._ttl = ttl
        self._clock = clock
        self._last: tuple[float, Check] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> Check:
        async with self._lock:
            now = self._clock()
            if self._last is None or now - self._last[0] >= self._ttl:
                self._last = (now, await asyncio.to_thread(log_writable, self._path))
            return self._last[1]
