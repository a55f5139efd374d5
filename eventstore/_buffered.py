"""A stream's events buffered by their asyncio owner and appended in as few batches as it allows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ._protocol import EventStore
from .errors import GuardRefused
from .events import Guard, NewEvent


class BufferedStream:
    """One stream's events, appended in order in as few atomic appends as its owner allows.

    For an asyncio owner such as a request: `add` only buffers, `flush` queues what is buffered
    as one atomic append, `commit` flushes and returns once every append made through it is
    committed. The writer commits in queue order, so the events are in the log in the order
    they were added, however they were grouped.
    """

    def __init__(
        self, store: EventStore, stream_id: str, *, alone: Callable[[], bool] | None = None
    ) -> None:
        self.store = store
        self.stream_id = stream_id
        # Asked at each flush: true when no other appender is about, so that committing on the
        # loop itself (append_now) beats waiting for the writer thread.
        self._alone = alone
        self._buffer: list[NewEvent] = []
        self._callbacks: list[tuple[int, Callable[[int], None]]] = []
        self._waiting: list[asyncio.Future[list[int]]] = []
        # One guarded append at a time: a refused one gives its events back, and what the
        # next one flushes must follow them (a request's ensemble members reserve at once).
        self._guarded = asyncio.Lock()
        self.position = 0
        """The last committed position of this stream's events, once `commit` has returned."""

    def add(self, event: NewEvent, on_committed: Callable[[int], None] | None = None) -> None:
        """Buffer an event; `on_committed(position)` is called on the loop once it is committed,
        whether or not anyone waits for it."""
        if on_committed is not None:
            self._callbacks.append((len(self._buffer), on_committed))
        self._buffer.append(event)

    def withdraw(self, event: NewEvent) -> None:
        """Take a buffered event back out (one a refused guard kept from the log)."""
        at = next(i for i, e in enumerate(self._buffer) if e is event)
        del self._buffer[at]
        self._callbacks = [(i - (i > at), callback) for i, callback in self._callbacks if i != at]

    def flush(self, guard: Guard | None = None) -> asyncio.Future[list[int]] | None:
        """Queue the buffered events as one atomic append (written only if `guard` lets it);
        returns at once, with the append's future (None when nothing was buffered)."""
        if not self._buffer:
            return None
        alone = self._alone is not None and self._alone()
        append = self.store.append_now if alone else self.store.append_soon
        waiter = append(self.stream_id, self._buffer, guard=guard)
        for index, callback in self._callbacks:
            waiter.add_done_callback(_at(index, callback))
        self._buffer, self._callbacks = [], []
        self._waiting.append(waiter)
        return waiter

    async def commit(self, guard: Guard | None = None) -> int:
        """Flush, then wait until every event added so far is committed; the last position.

        An append that failed raises here, and again at every later commit; but one its
        `guard` refused gives its events back to the buffer (before any added since) and
        raises GuardRefused once, for its owner to withdraw what may not be written.
        """
        if guard is None:
            self.flush()
        else:
            async with self._guarded:
                events, callbacks = self._buffer, self._callbacks
                guarded = self.flush(guard)
                if guarded is not None:
                    try:
                        await asyncio.shield(guarded)
                    except GuardRefused:
                        self._waiting.remove(guarded)
                        self._buffer = [*events, *self._buffer]
                        shift = len(events)
                        self._callbacks = [
                            *callbacks,
                            *((i + shift, c) for i, c in self._callbacks),
                        ]
                        raise
        waiting = self._waiting
        for waiter in waiting:
            # Shielded: a cancelled committer must not cancel what others wait for.
            positions = waiter.result() if waiter.done() else await asyncio.shield(waiter)
            self.position = max(self.position, positions[-1])
        self._waiting = [w for w in waiting if not w.done() or w.exception() is not None]
        return self.position


def _at(index: int, callback: Callable[[int], None]) -> Callable[[asyncio.Future[list[int]]], None]:
    def done(waiter: asyncio.Future[list[int]]) -> None:
        if not waiter.cancelled() and waiter.exception() is None:
            callback(waiter.result()[index])

    return done
