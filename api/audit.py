"""The log's integrity as the console shows it: head, chain tip, and verifications on record.

A verification reads the whole log on a thread (`verify_rows`, as `atom replay verify` does)
and records what it found as LogVerified in stream `log-verifications`, so the last one is
itself on the record, survives a restart and is seen by every node.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from atom_actors.events import LogVerified
from eventstore import NO_STREAM, EventStore, VerifyReport, verify_rows

VERIFICATIONS: Final = "log-verifications"


class LogAudit:
    """Reads the log's head and tip, and runs one verification at a time."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._running = asyncio.Lock()

    @property
    def verifying(self) -> bool:
        return self._running.locked()

    async def status(self) -> dict[str, Any]:
        """Head position, its hash (the chain's tip) and time, and the last verification."""
        store = self._store
        head = await asyncio.to_thread(store.head)
        tip = await store.read_rows_async(head - 1, 1) if head else []
        return {
            "head": head,
            "chain_tip": tip[0][9] if tip else None,
            "head_recorded_at": tip[0][8] if tip else None,
            "last_verification": await self._last(),
            "verifying": self.verifying,
        }

    async def _last(self) -> dict[str, Any] | None:
        version = await asyncio.to_thread(self._store.stream_version, VERIFICATIONS)
        if version == NO_STREAM:
            return None
        [event] = await self._store.read_stream_async(VERIFICATIONS, version)
        return {**event.data, "position": event.position, "at": event.recorded_at}

    async def verify(self, by: str) -> dict[str, Any]:
        """Verify the whole log now and record the result; what was recorded."""
        async with self._running:
            started = time.perf_counter()
            report: VerifyReport = await asyncio.to_thread(
                lambda: verify_rows(self._store.iter_raw())
            )
            event = LogVerified(
                head=report.head,
                head_hash=report.head_hash,
                events=report.events,
                streams=report.streams,
                ok=report.ok,
                first_bad_position=report.first_bad_position,
                problem=report.problem,
                seconds=round(time.perf_counter() - started, 3),
                by=by,
            )
            [position] = await self._store.append_async(
                VERIFICATIONS, [event.new(api_key_id=by, actor="api")]
            )
            return {**event.data(), "position": position}
