"""The supervisor: starts a ModelActor per model and restarts a crashed one, one for one.

Restarts back off exponentially; past `max_restarts` within `window_s` the model is marked
down (ModelHealthChanged) instead of restarting in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from eventstore import EventStore

from .catalog import ModelSpec, missing_file
from .circuit import DEFAULT_CIRCUIT, CircuitPolicy
from .directory import Directory
from .events import ActorRestarted, ModelHealthChanged, model_stream
from .model import Gate, ModelActor, ProviderFactory, Refusal


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Back off base_delay_s * 2**(n-1), at most max_delay_s; give up past max_restarts."""

    max_restarts: int = 3
    window_s: float = 60.0
    base_delay_s: float = 0.1
    max_delay_s: float = 5.0

    def delay(self, restarts: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (restarts - 1)))


DEFAULT_RESTARTS = RestartPolicy()


@dataclass(frozen=True, slots=True)
class ChildFailed:
    model: str
    error: str


@dataclass(frozen=True, slots=True)
class Restart:
    model: str


class Supervisor(pykka.ThreadingActor):
    """Owns the model actors; the Directory tells callers which one answers for a model."""

    def __init__(
        self,
        specs: Sequence[ModelSpec],
        factory: ProviderFactory,
        *,
        store: EventStore,
        directory: Directory,
        loop: asyncio.AbstractEventLoop | None,
        policy: RestartPolicy = DEFAULT_RESTARTS,
        circuit_policy: CircuitPolicy = DEFAULT_CIRCUIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._specs = {spec.name: spec for spec in specs}
        self._factory = factory
        self._store = store
        self._directory = directory
        self._loop = loop
        self._policy = policy
        self._circuit_policy = circuit_policy
        self._clock = clock
        self._children: dict[str, pykka.ActorRef[Any]] = {}
        self._failures: dict[str, list[float]] = {}
        self._timers: list[threading.Timer] = []

    def on_start(self) -> None:
        for name in self._specs:
            self._start_child(name)

    def on_stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for ref in self._children.values():
            if ref.is_alive():
                ref.stop()
        self._children.clear()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildFailed):
            self._child_failed(message)
        elif isinstance(message, Restart):
            self._start_child(message.model)
        return None

    def _start_child(self, name: str) -> None:
        missing = missing_file(self._specs[name])
        if missing is not None:
            # Nothing to load: no actor, no crash loop, and callers are told why.
            self._directory.absent(name, Refusal.DOWN, f"model {name!r}: {missing}")
            return
        me = self.actor_ref

        def on_crash(model: str, error: BaseException) -> None:
            # When the supervisor itself is stopping, nobody restarts anything.
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(ChildFailed(model, repr(error)))

        gate = Gate(self._specs[name], self._circuit_policy)
        try:
            ref = ModelActor.start(
                self._specs[name],
                self._factory,
                store=self._store,
                loop=self._loop,
                on_crash=on_crash,
                gate=gate,
            )
        except Exception as exc:  # noqa: BLE001 - a failed start counts as a crash
            self._child_failed(ChildFailed(name, repr(exc)))
            return
        self._children[name] = ref
        self._directory.set(name, ref, gate)

    def _child_failed(self, message: ChildFailed) -> None:
        name = message.model
        self._children.pop(name, None)
        now = self._clock()
        recent = [t for t in self._failures.get(name, []) if now - t < self._policy.window_s]
        recent.append(now)
        self._failures[name] = recent
        stream = model_stream(name)
        if len(recent) > self._policy.max_restarts:
            reason = (
                f"model {name!r} is down: {len(recent)} crashes within "
                f"{self._policy.window_s:g}s (last: {message.error})"
            )
            down = ModelHealthChanged(model=name, previous="crashed", current="down", reason=reason)
            # On the record before anyone can be refused for it.
            self._store.append(stream, [down.new(actor="supervisor")])
            self._directory.absent(name, Refusal.DOWN, reason)
            return
        delay = self._policy.delay(len(recent))
        restarted = ActorRestarted(
            actor=f"model:{name}", restarts=len(recent), delay_s=delay, error=message.error
        )
        self._store.append(stream, [restarted.new(actor="supervisor")])
        self._directory.absent(
            name, Refusal.CRASHED, f"model {name!r} crashed ({message.error}); restarting"
        )
        me = self.actor_ref

        def restart() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(Restart(name))

        timer = threading.Timer(delay, restart)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()
