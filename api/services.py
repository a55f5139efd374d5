"""What the routes work with: the log, the key ring, the hub, limits and metrics, in one object."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from atom_actors.config import Config
from atom_actors.gateway import Gateway
from atom_actors.projections import Budgets
from atom_actors.system import ActorSystem
from eventstore import EventStore, LiveProjections, Projection

from .audit import LogAudit
from .figures import FiguresTicker
from .hub import QUEUE_SIZE, StreamHub
from .keys import KeyRing, KeysProjection
from .metrics import Metrics, Reader
from .probes import LogProbe
from .ratelimit import Rate, RateLimiter

Hook = Callable[[], Awaitable[None]]

DEFAULT_RATE: Final = Rate(per_minute=600)


@dataclass(frozen=True, slots=True)
class Limits:
    """The HTTP layer's knobs."""

    max_body_bytes: int = 1 << 20
    rate: Rate | None = DEFAULT_RATE
    session_minutes: int = 15
    hub_queue: int = 4096
    hub_queue_size: int = QUEUE_SIZE
    ws_heartbeat_s: float = 30.0
    ws_close_grace_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Services:
    """Long-lived components shared by every request; `actors` and `gateway` are None in a
    server without models.

    `projections` folds the log on the event loop (the keys and any projection given to
    build_services), one subscription for all. `on_startup` hooks run in order when the app
    starts, `on_cleanup` hooks in reverse order after the last request has been answered.
    """

    store: EventStore
    config: Config
    limits: Limits
    projections: LiveProjections
    keys: KeyRing
    hub: StreamHub
    limiter: RateLimiter
    metrics: Metrics
    log_probe: LogProbe
    audit: LogAudit
    actors: ActorSystem | None = None
    gateway: Gateway | None = None
    # key_id -> the log position of that key's last write, for read-your-writes
    last_writes: dict[str, int] = field(default_factory=dict)
    on_startup: list[Hook] = field(default_factory=list)
    on_cleanup: list[Hook] = field(default_factory=list)


SERVICES: Final = web.AppKey("atom.services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


def build_services(
    store: EventStore,
    config: Config | None = None,
    *,
    actors: ActorSystem | None = None,
    limits: Limits | None = None,
    projections: Sequence[Projection[Any]] = (),
) -> Services:
    """Services over an open store; the projections follow the log while the app runs."""
    limits = limits or Limits()
    hub = StreamHub(queue_limit=limits.hub_queue, queue_size=limits.hub_queue_size)
    metrics = Metrics()
    _count_hub(metrics, hub)
    _count_log(metrics, store)
    # The keys and the budgets are the API's own to read (auth, admin routes), models or not.
    own: list[Projection[Any]] = [KeysProjection()]
    if not any(p.name == Budgets.name for p in projections):
        own.append(Budgets())
    live = LiveProjections(store, [*own, *projections])
    ticker = FiguresTicker(hub, live)

    async def follow_the_log() -> None:
        await live.start()
        # Caught up before the first request, or a valid key could be refused.
        await live.wait_until(await asyncio.to_thread(store.head))

    return Services(
        store=store,
        config=config or Config(),
        limits=limits,
        projections=live,
        keys=KeyRing(live),
        hub=hub,
        limiter=RateLimiter(limits.rate),
        metrics=metrics,
        log_probe=LogProbe(store),
        audit=LogAudit(store),
        actors=actors,
        on_startup=[follow_the_log, ticker.start],
        on_cleanup=[live.stop, ticker.stop],
    )


def _count_hub(metrics: Metrics, hub: StreamHub) -> None:
    def topic_kinds() -> dict[tuple[str, ...], float]:
        # By kind (the part before ':'): one series per request id would grow without end.
        kinds: dict[tuple[str, ...], float] = {}
        for topic, count in hub.stats().subscriptions.items():
            kind = (topic.partition(":")[0],)
            kinds[kind] = kinds.get(kind, 0) + count
        return kinds

    metrics.gauge(
        "atom_stream_connections",
        "Open WebSocket connections.",
        read=lambda: {(): hub.stats().connections},
    )
    metrics.gauge(
        "atom_stream_subscriptions",
        "Subscriptions by topic kind.",
        ("kind",),
        read=topic_kinds,
    )

    for name, field_, help_ in (
        ("atom_stream_messages_published_total", "published", "Messages published to the hub."),
        ("atom_stream_messages_sent_total", "sent", "Messages written to WebSocket clients."),
        ("atom_stream_messages_dropped_total", "dropped", "Messages never sent to a client."),
        ("atom_stream_slow_clients_cut_total", "slow_clients_cut", "Slow clients disconnected."),
    ):
        metrics.counter(name, help_, read=_hub_reader(hub, field_))


def _hub_reader(hub: StreamHub, field_: str) -> Reader:
    return lambda: {(): getattr(hub.stats(), field_)}


def _count_log(metrics: Metrics, store: EventStore) -> None:
    metrics.counter(
        "atom_log_events_total",
        "Events appended by this process.",
        read=lambda: {(): store.stats.events},
    )
    metrics.counter(
        "atom_log_appends_total",
        "Atomic appends by this process (one or more events each).",
        read=lambda: {(): store.stats.appends},
    )
    metrics.counter(
        "atom_log_commits_total",
        "Transactions committed by this process.",
        read=lambda: {(): store.stats.commits},
    )
