"""The WebSocket's topics served from the log: `requests` and `tokens:<id>` from a position.

A client that subscribes with `from_position` gets every item of those topics recorded after
that position, then the new ones as they are committed, each once and in log order: a page
that reconnects after a restart resumes from the last position it saw with no gap and no
duplicate. One follower per connection reads the log from where it stood when the first such
subscription came (eventstore's Subscription: from memory for this process's commits). A
topic asked for from an earlier position is caught up first from the log (the request's
stream for `tokens:<id>`, the log's range for `requests`) while the follower holds that
topic's new items back, then the held items follow: the catch-up reads up to where the
follower stood when it began, and the follower gives everything after, so nothing is sent
twice or missed. Items are the feed's (atom_actors.feed) and carry their position; a
topic's items from one page of the log go out as one message, so that a busy log costs the
server one WebSocket frame per page rather than one per request.

Nothing of this runs while no client asks for it: the gateway's path is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any, Final

from atom_actors.events import request_stream
from atom_actors.feed import STATES, TOKENS, request_id_of, request_news, token_news
from atom_actors.folding import tenancy_of_event
from eventstore import EventStore, RecordedEvent, Subscription

from .hub import Filter, StreamHub, Subscriber, matches

log = logging.getLogger("atom.api")

TYPES: Final = frozenset({*STATES, TOKENS})
CLOSE_FEED_FAILED: Final = 1011
"""The connection is closed when its feed cannot go on: the client reconnects and resumes."""
PAGE: Final = 256
MARK_EVERY_S: Final = 1.0
"""How often an idle feed tells its client how far it has read the log."""


def is_log_topic(topic: str) -> bool:
    """Whether `topic` can be served from the log (subscribed with `from_position`)."""
    return topic == "requests" or topic.startswith("tokens:")


class LogFeed:
    """One connection's log-served topics and the follower that feeds them."""

    def __init__(
        self, store: EventStore, hub: StreamHub, subscriber: Subscriber, audience: str | None
    ) -> None:
        self._store = store
        self._hub = hub
        self._subscriber = subscriber
        self._audience = audience
        # Live topics: their filter, and the position up to which their items are not wanted.
        self._live: dict[str, tuple[Filter, int]] = {}
        # Topics catching up: what the follower found for them meanwhile.
        self._held: dict[str, list[dict[str, Any]]] = {}
        self._catching_up: dict[str, asyncio.Task[None]] = {}
        self._subscription: Subscription | None = None
        self._follower: asyncio.Task[None] | None = None
        self.position = 0
        """The follower's place: every item up to it has been routed, none after it."""

    async def subscribe(self, topics: Iterable[str], after: int, filter_: Filter) -> None:
        """Serve `topics` from the log, from the items after position `after`."""
        if self._subscription is None:
            self.position = await asyncio.to_thread(self._store.head)
            self._subscription = Subscription(self._store, self.position, types=TYPES,
                                              page_size=PAGE)  # fmt: skip
            self._follower = self._start(self._follow(self._subscription))
        for topic in topics:
            self.unsubscribe([topic])
            if after >= self.position:
                self._live[topic] = (filter_, after)
                continue
            self._held[topic] = []
            self._catching_up[topic] = self._start(
                self._catch_up(topic, after, self.position, filter_)
            )

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A reader of the log failed (the log closed under it, a database gone): rather than
        leave the client waiting for items that will not come, close it; it resumes later."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("a WebSocket's log feed stopped", exc_info=task.exception())
        self._subscriber.close(CLOSE_FEED_FAILED, "the log's feed stopped: resume later")

    @property
    def topics(self) -> set[str]:
        return {*self._live, *self._held}

    def unsubscribe(self, topics: Iterable[str]) -> None:
        for topic in topics:
            self._live.pop(topic, None)
            self._held.pop(topic, None)
            task = self._catching_up.pop(topic, None)
            if task is not None:
                task.cancel()

    async def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        tasks = [t for t in (self._follower, *self._catching_up.values()) if t is not None]
        for task in tasks:
            task.cancel()
        # A task that failed has been reported (and its client closed) already.
        await asyncio.gather(*tasks, return_exceptions=True)

    # The follower.

    async def _follow(self, subscription: Subscription) -> None:
        marked = time.monotonic()
        async for events, last in subscription.pages():
            found: dict[str, list[dict[str, Any]]] = {}
            for event in events:
                routed = self._route(event)
                if routed is not None:
                    found.setdefault(routed[0], []).append(routed[1])
            sent = False
            for topic, items in found.items():
                sent = self._send(topic, items, self._live[topic][0]) or sent
            self.position = last
            now = time.monotonic()
            if sent:
                marked = now
            elif now - marked >= MARK_EVERY_S and not self._held:
                # Nothing for this client lately: let it know how far it may resume from.
                self._hub.send(self._subscriber, {"type": "position", "position": last})
                marked = now
            await self._subscriber.room()

    def _route(self, event: RecordedEvent) -> tuple[str, dict[str, Any]] | None:
        """The live topic and item `event` makes for this client, if any (held ones are
        kept back for their catch-up)."""
        if self._audience is not None and tenancy_of_event(event) != self._audience:
            return None
        topic, item = _item(event)
        held = self._held.get(topic)
        if held is not None:
            held.append(item)
            return None
        live = self._live.get(topic)
        if live is None or event.position <= live[1]:
            return None
        return topic, item

    def _send(self, topic: str, items: list[dict[str, Any]], filter_: Filter) -> bool:
        """Send a topic's items as one message (a page of the log at a time)."""
        if filter_:
            items = [item for item in items if matches(filter_, item)]
        if not items:
            return False
        self._hub.send(self._subscriber, {"type": "events", "topic": topic, "payloads": items})
        return True

    # Catching a topic up.

    async def _catch_up(self, topic: str, after: int, until: int, filter_: Filter) -> None:
        """Send the topic's items in (after, until], then what the follower held, then go live."""
        async for events in self._recorded(topic, after, until):
            mine = [
                _item(event)[1]
                for event in events
                if self._audience is None or tenancy_of_event(event) == self._audience
            ]
            self._send(topic, mine, filter_)
            await self._subscriber.room()
        self._send(topic, self._held.pop(topic, []), filter_)
        # Held items are past `until`, and everything after them comes from the follower.
        self._live[topic] = (filter_, until)
        self._catching_up.pop(topic, None)

    async def _recorded(
        self, topic: str, after: int, until: int
    ) -> AsyncIterator[list[RecordedEvent]]:
        """The topic's events in (after, until], in pages."""
        if topic.startswith("tokens:"):
            stream = request_stream(topic.removeprefix("tokens:"))
            events = await self._store.read_stream_async(stream)
            yield [e for e in events if e.type == TOKENS and after < e.position <= until]
            return
        while after < until:
            rows = await self._store.read_rows_async(after, min(PAGE * 8, until - after))
            if not rows:
                return
            to_event = self._store.to_event
            yield [to_event(r) for r in rows if r[4] in STATES and r[0] <= until]
            after = rows[-1][0]


def _item(event: RecordedEvent) -> tuple[str, dict[str, Any]]:
    if event.type == TOKENS:
        return f"tokens:{request_id_of(event)}", token_news(event)
    return "requests", request_news(event)
