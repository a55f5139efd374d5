"""StreamHub: topics, filtered subscriptions and a fan-out that never waits for a client.

Every subscriber has a bounded queue, in messages and in size. Publishing appends to the
queues of the matching subscribers and returns at once; a subscriber whose queue is full has
fallen behind and is cut (close code 4008) rather than slowing the publisher or anyone else.
Call `publish` from the event loop's thread: it is cheap when nobody listens to the topic.

The requests' news (`requests`, `tokens:<id>`) is published by the gateway alone, each item
for its tenancy's subscribers, and `figures` by the server (see figures.py): these are system
topics, which no client may publish to.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

CLOSE_SLOW_CONSUMER: Final = 4008
CLOSE_GOING_AWAY: Final = 1001
SYSTEM_TOPICS: Final = frozenset({"requests", "figures"})
SYSTEM_PREFIXES: Final = ("tokens:",)
QUEUE_SIZE: Final = 8 << 20
"""What a subscriber's queue may hold, in characters of its messages' JSON (bytes, for ASCII):
a count alone let a slow subscriber of an operator's 1 MB broadcasts hold gigabytes."""


def is_system_topic(topic: str) -> bool:
    """Whether only the gateway publishes to `topic` (a client could forge a tenant's news)."""
    return topic in SYSTEM_TOPICS or topic.startswith(SYSTEM_PREFIXES)


Filter = Mapping[str, Any]
OnClose = Callable[[int, str], None]


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: unlike Python's, true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(json_equal, a, b))
    return bool(a == b)


def matches(filter_: Filter, payload: Mapping[str, Any]) -> bool:
    """Whether a payload passes a filter: every field named in the filter equals its value."""
    return all(k in payload and json_equal(payload[k], v) for k, v in filter_.items())


@dataclass(slots=True)
class _Counts:
    """Messages queued, sent and dropped, and slow clients cut, for one audience."""

    queued: int = 0
    sent: int = 0
    dropped: int = 0
    cut: int = 0


class Subscriber:
    """One client's bounded queue of encoded messages; its writer drains it with `take`.

    `audience` is what it may see of the requests' news: only that tenancy's, or everything
    when None (operators).
    """

    def __init__(
        self,
        number: int,
        limit: int,
        on_close: OnClose,
        audience: str | None = None,
        counts: _Counts | None = None,
        *,
        max_size: int = QUEUE_SIZE,
    ) -> None:
        self.number = number
        self.audience = audience
        self.counts = counts or _Counts()
        self.topics: dict[str, Filter] = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self._limit = limit
        self._max_size = max_size
        self._size = 0
        self._queue: deque[str] = deque()
        self._ready = asyncio.Event()
        self._taken = asyncio.Event()
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def push(self, message: str) -> bool:
        """Queue a message; False when the queue is full, in messages or in size."""
        size = self._size + len(message)
        if len(self._queue) >= self._limit or size > self._max_size:
            return False
        self._queue.append(message)
        self._size = size
        self._ready.set()
        return True

    async def take(self) -> list[str]:
        """Every queued message, oldest first, once there is one; [] once closed."""
        await self._ready.wait()
        self._ready.clear()
        batch = list(self._queue)
        self._queue.clear()
        self._size = 0
        self._taken.set()
        return batch

    async def room(self, share: float = 0.5) -> None:
        """Wait until the queue is below `share` of its limit (or closed): a producer that can
        wait, such as a reader of the log, keeps the rest for those that cannot."""
        while not self.closed and (
            len(self._queue) >= self._limit * share or self._size >= self._max_size * share
        ):
            self._taken.clear()
            await self._taken.wait()

    def close(self, code: int, reason: str) -> int:
        """Close for good; returns how many queued messages were never taken."""
        if self.closed:
            return 0
        self.close_code, self.close_reason = code, reason
        dropped = len(self._queue)
        self._queue.clear()
        self._size = 0
        self._ready.set()
        self._taken.set()
        self._on_close(code, reason)
        return dropped


@dataclass(frozen=True, slots=True)
class HubStats:
    connections: int
    subscriptions: dict[str, int]
    published: int
    sent: int
    dropped: int
    slow_clients_cut: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "subscriptions": self.subscriptions,
            "messages_published": self.published,
            "messages_sent": self.sent,
            "messages_dropped": self.dropped,
            "slow_clients_cut": self.slow_clients_cut,
        }


class TooManySubscriptions(ValueError):
    """A connection asked for more topics than one connection may hold."""


class StreamHub:
    """Topics and their subscribers; the counters that /streaming/status reports."""

    def __init__(
        self, *, queue_limit: int = 4096, queue_size: int = QUEUE_SIZE, max_topics: int = 1000
    ) -> None:
        self.queue_limit = queue_limit
        self.queue_size = queue_size
        self.max_topics = max_topics
        self._topics: dict[str, dict[Subscriber, Filter]] = {}
        self._subscribers: set[Subscriber] = set()
        self._numbers = itertools.count(1)
        self._published = self._sent = self._dropped = self._cut = 0
        self._audiences: dict[str | None, _Counts] = {}

    def connect(self, on_close: OnClose, audience: str | None = None) -> Subscriber:
        """A new subscriber that sees `audience`'s news (None: all); `on_close(code, reason)`
        runs when the hub closes it."""
        counts = self._audiences.setdefault(audience, _Counts())
        subscriber = Subscriber(
            next(self._numbers), self.queue_limit, on_close, audience, counts,
            max_size=self.queue_size,
        )  # fmt: skip
        self._subscribers.add(subscriber)
        return subscriber

    def disconnect(self, subscriber: Subscriber) -> None:
        """Forget a subscriber whose client has gone."""
        self._forget(subscriber)
        self._drop(subscriber, subscriber.close(1000, "disconnected"))

    def subscribe(self, subscriber: Subscriber, topics: Iterable[str], filter_: Filter) -> None:
        """Subscribe to each topic; a topic already subscribed gets the new filter."""
        unique = list(dict.fromkeys(topics))
        added = sum(1 for t in unique if t not in subscriber.topics)
        if len(subscriber.topics) + added > self.max_topics:
            raise TooManySubscriptions(f"a connection may subscribe to {self.max_topics} topics")
        if subscriber.closed:
            return
        for topic in unique:
            subscriber.topics[topic] = filter_
            self._topics.setdefault(topic, {})[subscriber] = filter_

    def unsubscribe(self, subscriber: Subscriber, topics: Iterable[str]) -> None:
        for topic in topics:
            if topic in subscriber.topics:
                del subscriber.topics[topic]
                self._remove(topic, subscriber)

    def listening(self, topic: str) -> bool:
        """Whether anyone is subscribed to `topic` now."""
        return topic in self._topics

    def publish(self, topic: str, payload: Mapping[str, Any], audience: str | None = None) -> int:
        """Queue the payload for every matching subscriber allowed to see it (news of one
        audience's requests, or for everyone with `audience` None); how many got it."""
        self._published += 1
        subscribers = self._topics.get(topic)
        if not subscribers:
            return 0
        message: str | None = None
        delivered = 0
        slow: list[Subscriber] = []
        for subscriber, filter_ in subscribers.items():
            if audience is not None and subscriber.audience not in (None, audience):
                continue
            if filter_ and not matches(filter_, payload):
                continue
            if message is None:
                event = {"type": "event", "topic": topic, "payload": payload}
                message = orjson.dumps(event).decode()
            if subscriber.push(message):
                delivered += 1
                subscriber.counts.queued += 1
            else:
                slow.append(subscriber)
        for subscriber in slow:
            self._cut_slow(subscriber)
        return delivered

    def send(self, subscriber: Subscriber, message: Mapping[str, Any]) -> None:
        """Queue a message for one subscriber (a reply), behind what is already queued."""
        if not subscriber.closed and not subscriber.push(orjson.dumps(message).decode()):
            self._cut_slow(subscriber)

    def count_sent(self, subscriber: Subscriber, messages: int) -> None:
        """Called by writers for the messages they have written to their client."""
        self._sent += messages
        subscriber.counts.sent += messages

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        for subscriber in list(self._subscribers):
            self._forget(subscriber)
            self._drop(subscriber, subscriber.close(code, reason))

    def stats(self) -> HubStats:
        """Every connection's figures, as operators see them."""
        return HubStats(
            connections=len(self._subscribers),
            subscriptions={topic: len(subs) for topic, subs in self._topics.items()},
            published=self._published,
            sent=self._sent,
            dropped=self._dropped,
            slow_clients_cut=self._cut,
        )

    def stats_of(self, audience: str) -> HubStats:
        """The figures of one audience's own connections: what was queued for them, sent,
        dropped and cut, and the topics they hold."""
        mine = [s for s in self._subscribers if s.audience == audience]
        subscriptions: dict[str, int] = {}
        for subscriber in mine:
            for topic in subscriber.topics:
                subscriptions[topic] = subscriptions.get(topic, 0) + 1
        counts = self._audiences.get(audience, _Counts())
        return HubStats(
            connections=len(mine),
            subscriptions=subscriptions,
            published=counts.queued,
            sent=counts.sent,
            dropped=counts.dropped,
            slow_clients_cut=counts.cut,
        )

    def _drop(self, subscriber: Subscriber, messages: int) -> None:
        self._dropped += messages
        subscriber.counts.dropped += messages

    def _cut_slow(self, subscriber: Subscriber) -> None:
        self._forget(subscriber)
        self._cut += 1
        subscriber.counts.cut += 1
        # The message that did not fit is lost as well as the ones still queued.
        self._drop(subscriber, 1 + subscriber.close(CLOSE_SLOW_CONSUMER, "slow consumer"))

    def _forget(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        for topic in list(subscriber.topics):
            self._remove(topic, subscriber)
        subscriber.topics.clear()

    def _remove(self, topic: str, subscriber: Subscriber) -> None:
        subscribers = self._topics.get(topic)
        if subscribers is not None:
            subscribers.pop(subscriber, None)
            if not subscribers:
                del self._topics[topic]
