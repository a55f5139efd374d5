"""`atom serve`: open the log, start the actors and the app, and shut down without losing a write.

On SIGTERM or SIGINT the server stops accepting connections, closes WebSockets, lets requests
in flight finish within the grace period, runs the cleanup hooks, stops the actors and closes
the log (which commits everything queued), then returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import signal
import sys
from collections.abc import Iterator
from typing import Final, TextIO

from aiohttp import web

from atom_actors.config import Config
from atom_actors.gateway import Gateway
from atom_actors.projections import all_projections
from atom_actors.system import ActorSystem
from eventstore import open_store

from .app import create_app
from .auth import Role
from .keys import issue
from .services import Limits, Services, build_services


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _bootstrap_admin(services: Services) -> str | None:
    """Issue an admin key when the log has no usable one; returns the key (shown once)."""
    if any(r.role == Role.ADMIN.label and not r.revoked for r in services.keys.records()):
        return None
    issued = issue(Role.ADMIN, "admin (created by atom serve)", by="atom serve")
    positions = await asyncio.wrap_future(services.store.append_batch_future(issued.parts))
    await services.keys.wait_for(positions[-1][-1])
    return issued.key


def with_gateway(services: Services) -> Services:
    """The services with a gateway over their actors, projections and hub."""
    assert services.actors is not None
    hub = services.hub

    gateway = Gateway(
        services.store,
        services.actors,
        services.projections,
        publish=hub.publish,
        listening=hub.listening,
        reservation_ttl_s=services.config.reservation_ttl_s,
    )
    # Cleanup hooks run in reverse: the gateway's background work ends before the projections.
    services.on_cleanup.append(gateway.drain)
    return dataclasses.replace(services, gateway=gateway)


def _announce(out: TextIO, url: str, admin_key: str | None) -> None:
    if admin_key is not None:
        print(
            "atom: this log had no admin key, so one was created; it is shown only once:", file=out
        )
        print(admin_key, file=out)
        print(
            f'atom: try it: curl -H "Authorization: Bearer {admin_key}" '
            f"{url}/api/advanced-ai/streaming/status",
            file=out,
        )
    print(f"atom: serving on {url}", file=out, flush=True)


LISTEN_BACKLOG: Final = 2048
"""Connections the kernel holds for accept (aiohttp's default: 128). A burst of clients
past it, as a thousand streams starting within a second on a busy loop were, is dropped by
the kernel mid-handshake and ends in resets."""

GC_THRESHOLDS: Final = (10_000, 20, 100)
"""The cyclic collector's thresholds while serving (Python's default: 700, 10, 10)."""


@contextlib.contextmanager
def _collecting_less() -> Iterator[None]:
    """Run the cyclic collector far less often while serving, once everything is loaded.

    Nearly all of a request's objects are freed by reference counting; at the default
    thresholds the collector still ran every few requests and a full pass every second,
    about 8% of the server's time with pauses of 20-30 ms (measured at 900 requests/s).
    What exists at start-up is frozen, so the rare full pass skips it.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


async def serve(
    config: Config,
    *,
    limits: Limits | None = None,
    grace_s: float = 10.0,
    out: TextIO = sys.stdout,
) -> int:
    """Serve `config` until SIGTERM or SIGINT; returns the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    store = open_store(config.db_path, durability=config.durability)
    try:
        actors = ActorSystem(store, config.models)
        # Starting only spawns the actors: local models load on their own threads meanwhile.
        await asyncio.to_thread(actors.start, loop)
        try:
            services = with_gateway(
                build_services(
                    store, config, actors=actors, limits=limits, projections=all_projections()
                )
            )
            runner = web.AppRunner(create_app(services), shutdown_timeout=grace_s, access_log=None)
            await runner.setup()
            try:
                admin_key = await _bootstrap_admin(services)
                site = web.TCPSite(runner, config.host, config.port, backlog=LISTEN_BACKLOG)
                await site.start()
                port = runner.addresses[0][1]
                with _collecting_less():
                    _announce(out, _url(config.host, port), admin_key)
                    await stop.wait()
                    print(
                        f"atom: stopping; requests in flight have {grace_s:g}s",
                        file=out,
                        flush=True,
                    )
            finally:
                await runner.cleanup()
        finally:
            await actors.aclose()
    finally:
        store.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    print("atom: stopped", file=out, flush=True)
    return 0
