"""Asking an actor from asyncio without blocking the loop.

pykka futures block when awaited, so a message carries a concurrent.futures.Future that the
actor resolves; asyncio awaits it through `asyncio.wrap_future`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import pykka

T = TypeVar("T")

LIVENESS_CHECK_S = 0.25
"""How often a waiting ask checks that its actor is alive, so a crash never leaves it hanging."""


class ActorGone(Exception):
    """The actor stopped or crashed before it answered."""


async def ask(
    ref: pykka.ActorRef[Any],
    build: Callable[[Future[T]], object],
    orphan: Callable[[T], None] | None = None,
) -> T:
    """Send `build(reply)` to the actor and await the reply it sets.

    If the asker gives up (cancelled, or the actor died) after the actor has already
    answered, `orphan(value)` gets the value so that what it holds (a slot) is given back.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()
    reply: Future[T] = Future()

    def transfer(done: Future[T]) -> None:
        # On the loop: the asker may have given up meanwhile.
        if done.cancelled():
            return
        error = done.exception()
        if waiter.done():
            if orphan is not None and error is None:
                orphan(done.result())
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(done.result())

    timer: asyncio.TimerHandle | None = None

    def watchdog() -> None:
        nonlocal timer
        if waiter.done():
            return
        if not ref.is_alive():
            waiter.set_exception(ActorGone(f"{ref} stopped before answering"))
        else:
            timer = loop.call_later(LIVENESS_CHECK_S, watchdog)

    reply.add_done_callback(lambda done: loop.call_soon_threadsafe(transfer, done))
    try:
        ref.tell(build(reply))
    except pykka.ActorDeadError as exc:
        raise ActorGone(f"{ref} is not running") from exc
    timer = loop.call_later(LIVENESS_CHECK_S, watchdog)
    try:
        return await waiter
    finally:
        if timer is not None:
            timer.cancel()
        # Tells the actor nobody waits any more, if it has not answered yet (see `answer`).
        reply.cancel()


def answer(reply: Future[T], value: T) -> bool:
    """Resolve an ask from the actor's side; False when the asker has given up."""
    if not reply.set_running_or_notify_cancel():
        return False
    reply.set_result(value)
    return True


def fail(reply: Future[Any], error: BaseException) -> None:
    """Fail an ask from the actor's side, unless the asker has given up."""
    if reply.set_running_or_notify_cancel():
        reply.set_exception(error)
