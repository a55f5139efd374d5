"""Subscriptions: catch up from a position, then follow new commits with no gap or duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Collection, Iterator

from ._protocol import EventStore
from .events import RecordedEvent
from .reader import READ_PAGE

POLL_INTERVAL = 0.1
"""How often a caught-up subscriber looks for events written by other processes."""


class Subscription:
    """Every event after `after`, in position order, forever (until closed).

    Positions are gap-free and committed in order, so reading `position > last seen` after
    every wake-up can neither skip nor repeat an event at the switch from catch-up to live.
    """

    def __init__(
        self,
        store: EventStore,
        after: int = 0,
        *,
        poll_interval: float = POLL_INTERVAL,
        types: Collection[str] | None = None,
        page_size: int = READ_PAGE,
    ) -> None:
        self._store = store
        self._page_size = page_size
        self.position = after
        self._poll = poll_interval
        self._closed = threading.Event()
        # Event types to decode and give (None: all); asynchronous iteration only.
        self._types = None if types is None else frozenset(types)
        # poke() asks the pages' loop to read the file now, not at the next poll.
        self._wake: asyncio.Event | None = None
        self._poked = False

    def close(self) -> None:
        self._closed.set()

    def poke(self) -> None:
        """Read the file for another process's commits now rather than at the next poll;
        from the loop that iterates the pages."""
        self._poked = True
        if self._wake is not None:
            self._wake.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __iter__(self) -> Iterator[RecordedEvent]:
        while not self._closed.is_set():
            page = self._store.read_page(self.position, self._page_size)
            if not page:
                self._store.wait_for(self.position + 1, timeout=self._poll)
                continue
            for event in page:
                if self._closed.is_set():
                    return
                self.position = event.position
                yield event

    async def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        async for events, last in self.pages():
            for event in events:
                if self._closed.is_set():
                    return
                self.position = event.position
                yield event
            self.position = last

    async def pages(self) -> AsyncIterator[tuple[list[RecordedEvent], int]]:
        """Each page of new events with the last position it covers, from asyncio.

        With `types`, only events of those types are decoded and given; the position still
        moves past the others, so the last position tells how far the log has been read.
        """
        loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()
        types = self._types

        def on_commit(_head: int) -> None:
            wake.set()

        # Called on this loop, in the wake-up that the commit's own appenders get.
        self._store.add_commit_listener(on_commit, loop)
        after = self.position
        polled = True
        try:
            while not self._closed.is_set():
                # Clear before reading: a commit landing after the read still wakes us.
                wake.clear()
                polled, self._poked = polled or self._poked, False
                # This store's own commits are read from memory (they wake us); another
                # process's only from the file, when the poll interval has passed.
                rows = None if polled else self._store.recent_rows(after, self._page_size)
                if rows is None:
                    rows = await self._store.read_rows_async(after, self._page_size)
                polled = False
                if not rows:
                    try:
                        async with asyncio.timeout(self._poll):
                            await wake.wait()
                    except TimeoutError:
                        polled = True
                    continue
                if self._closed.is_set():
                    return
                to_event = self._store.to_event
                events = [to_event(r) for r in rows if types is None or r[4] in types]
                after = self.position = rows[-1][0]
                yield events, after
        finally:
            with contextlib.suppress(ValueError):
                self._store.remove_commit_listener(on_commit, loop)
