"""Subscriptions: catch up from a position, then follow new commits with no gap or duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

from .events import RecordedEvent
from .store import EventStore

POLL_INTERVAL = 0.1
"""How often a caught-up subscriber looks for events written by other processes."""


class Subscription:
    """Every event after `after`, in position order, forever (until closed).

    Positions are gap-free and committed in order, so reading `position > last seen` after
    every wake-up can neither skip nor repeat an event at the switch from catch-up to live.
    """

    def __init__(
        self, store: EventStore, after: int = 0, *, poll_interval: float = POLL_INTERVAL
    ) -> None:
        self._store = store
        self.position = after
        self._poll = poll_interval
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __iter__(self) -> Iterator[RecordedEvent]:
        while not self._closed.is_set():
            page = self._store.read_page(self.position)
            if not page:
                self._store.wait_for(self.position + 1, timeout=self._poll)
                continue
            for event in page:
                if self._closed.is_set():
                    return
                self.position = event.position
                yield event

    async def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def on_commit(_head: int) -> None:
            loop.call_soon_threadsafe(wake.set)

        self._store.add_commit_listener(on_commit)
        try:
            while not self._closed.is_set():
                # Clear before reading: a commit landing after the read still wakes us.
                wake.clear()
                page = await self._store.read_page_async(self.position)
                if not page:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self._poll)
                    continue
                for event in page:
                    if self._closed.is_set():
                        return
                    self.position = event.position
                    yield event
        finally:
            with contextlib.suppress(ValueError):
                self._store.remove_commit_listener(on_commit)
