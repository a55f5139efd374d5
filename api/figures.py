"""The `figures` topic: the log position the projections have reached, at most once a second.

A page that shows figures subscribes to `figures` and reads them again (the same JSON as
every other reader) when told that they moved, instead of being sent every request. With no
subscriber, the ticker only looks once a second whether there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from eventstore import LiveProjections

from .hub import StreamHub

TOPIC: Final = "figures"


class FiguresTicker:
    """Publishes `{"position": n}` on `figures` every `every_s` while the projections move."""

    def __init__(self, hub: StreamHub, projections: LiveProjections, every_s: float = 1.0) -> None:
        self._hub = hub
        self._projections = projections
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="figures-ticker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        told = -1
        while True:
            await asyncio.sleep(self._every_s)
            position = self._projections.position
            if position != told and self._hub.listening(TOPIC):
                self._hub.publish(TOPIC, {"position": position})
                told = position
