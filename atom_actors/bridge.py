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
    reply: Future[T] = Future()
    try:
        ref.tell(build(reply))
    except pykka.ActorDeadError as exc:
        raise ActorGone(f"{ref} is not running") from exc
    waiting = asyncio.wrap_future(reply)
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=LIVENESS_CHECK_S)
            if done:
                return waiting.result()
            if not ref.is_alive():
                raise ActorGone(f"{ref} stopped before answering")
    except BaseException:
        # Cancelling tells the actor nobody waits any more (see `answer`); if it is too late
        # for that, the answer goes to `orphan`.
        if not reply.cancel() and orphan is not None:
            reply.add_done_callback(lambda f: _adopt(f, orphan))
        waiting.cancel()
        raise


def _adopt(reply: Future[T], orphan: Callable[[T], None]) -> None:
    if not reply.cancelled() and reply.exception() is None:
        orphan(reply.result())


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
