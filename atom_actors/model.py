"""ModelActor: one per configured model; admission (a bulkhead), circuit breaker and health.

The actor does not run calls. It admits a call and hands back a Ticket naming the provider to
use; the asyncio side runs the call (network providers on the loop, blocking ones on the
worker thread the ticket names) and reports the outcome back as a Release message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pykka

from eventstore import EventStore

from .bridge import answer, fail
from .catalog import ModelSpec
from .circuit import DEFAULT_CIRCUIT, Circuit, CircuitPolicy, admit, record
from .events import ModelHealthChanged, model_stream
from .providers import AsyncProvider, BlockingProvider

log = logging.getLogger(__name__)

ProviderFactory = Callable[[ModelSpec], AsyncProvider | BlockingProvider]


class Refusal(StrEnum):
    """Why a call was not admitted."""

    CIRCUIT_OPEN = "circuit_open"
    OVERLOADED = "overloaded"
    CRASHED = "crashed"
    DOWN = "down"


class NotAdmitted(Exception):
    """A model refused a call before it started; `refusal` says why."""

    def __init__(self, model: str, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.model = model
        self.refusal = refusal
        self.message = message


class Ticket:
    """An admitted call: the provider to use and, for a blocking one, the thread to run it on."""

    def __init__(
        self,
        call_id: str,
        spec: ModelSpec,
        provider: AsyncProvider | BlockingProvider,
        executor: ThreadPoolExecutor | None,
        slot: int,
    ) -> None:
        self.call_id = call_id
        self.spec = spec
        self.provider = provider
        self.executor = executor
        self.slot = slot
        self.cancel = threading.Event()
        self.abort_reason: str | None = None
        self._on_abort: Callable[[str], None] | None = None

    def on_abort(self, callback: Callable[[str], None]) -> None:
        """Call `callback(reason)` (from the actor's thread) if the actor aborts this call."""
        self._on_abort = callback
        if self.abort_reason is not None:
            callback(self.abort_reason)

    def abort(self, reason: str) -> None:
        self.abort_reason = reason
        self.cancel.set()
        if self._on_abort is not None:
            self._on_abort(reason)


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    # The caller's doing (a bad request, a client that went away): says nothing of health.
    NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class Admit:
    call_id: str
    reply: Future[Ticket]


@dataclass(frozen=True, slots=True)
class Release:
    ticket: Ticket
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Crash:
    """A call met an error no provider should raise: the actor fails and is restarted."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class ModelStatus:
    model: str
    health: str
    in_flight: int
    queued: int
    consecutive_failures: int
    calls: int
    failures: int


@dataclass(frozen=True, slots=True)
class GetStatus:
    reply: Future[ModelStatus]


@dataclass(slots=True)
class _Slots:
    free: list[int] = field(default_factory=list)
    tickets: dict[str, Ticket] = field(default_factory=dict)


class ModelActor(pykka.ThreadingActor):
    """Holds one model's providers, its bulkhead of max_concurrency calls and its circuit."""

    def __init__(
        self,
        spec: ModelSpec,
        factory: ProviderFactory,
        *,
        store: EventStore,
        loop: asyncio.AbstractEventLoop | None,
        on_crash: Callable[[str, BaseException], None],
        circuit_policy: CircuitPolicy = DEFAULT_CIRCUIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.spec = spec
        self._factory = factory
        self._store = store
        self._loop = loop
        self._on_crash = on_crash
        self._policy = circuit_policy
        self._clock = clock
        self._circuit = Circuit()
        self._providers: list[AsyncProvider | BlockingProvider] = []
        self._executors: list[ThreadPoolExecutor | None] = []
        self._slots = _Slots()
        self._waiting: deque[Admit] = deque()
        self._calls = 0
        self._failures = 0

    # ----------------------------------------------------------------------------- lifecycle

    def on_start(self) -> None:
        try:
            self._load()
        except Exception as exc:
            # pykka stops an actor whose start fails without calling on_failure.
            self._on_crash(self.spec.name, exc)
            raise

    def _load(self) -> None:
        first = self._factory(self.spec)
        self._providers.append(first)
        if isinstance(first, BlockingProvider):
            # A blocking provider (a loaded llama.cpp model) serves one call at a time: one
            # copy and one thread per concurrent call.
            for _ in range(1, self.spec.max_concurrency):
                self._providers.append(self._factory(self.spec))
            self._executors = [
                ThreadPoolExecutor(1, thread_name_prefix=f"{self.spec.name}-{i}")
                for i in range(len(self._providers))
            ]
            self._slots.free = list(range(len(self._providers)))
        else:
            self._executors = [None]
            self._slots.free = [0] * self.spec.max_concurrency

    def on_stop(self) -> None:
        stopped = f"model {self.spec.name!r} stopped"
        self._shut_down(NotAdmitted(self.spec.name, Refusal.DOWN, stopped))

    def on_failure(self, exc_type: Any, exc_value: BaseException | None, tb: Any) -> None:
        error = exc_value or RuntimeError("unknown failure")
        self._shut_down(
            NotAdmitted(
                self.spec.name, Refusal.CRASHED, f"model {self.spec.name!r} crashed: {error!r}"
            )
        )
        self._on_crash(self.spec.name, error)

    def _shut_down(self, error: NotAdmitted) -> None:
        while self._waiting:
            fail(self._waiting.popleft().reply, error)
        for ticket in list(self._slots.tickets.values()):
            ticket.abort(error.message)
        for executor in self._executors:
            if executor is not None:
                executor.shutdown(wait=False)
        for provider in self._providers:
            self._close(provider)
        self._providers.clear()

    def _close(self, provider: AsyncProvider | BlockingProvider) -> None:
        if isinstance(provider, BlockingProvider):
            # Wait for nothing: a call still running on its thread sees its ticket cancelled.
            threading.Thread(target=provider.close, daemon=True).start()
        elif self._loop is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(provider.aclose(), self._loop)

    # ------------------------------------------------------------------------------ messages

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Admit):
            self._admit(message)
        elif isinstance(message, Release):
            self._release(message)
        elif isinstance(message, GetStatus):
            answer(message.reply, self._status())
        elif isinstance(message, Crash):
            raise message.error
        return None

    def _admit(self, message: Admit) -> None:
        now = self._clock()
        allowed, circuit = admit(self._circuit, self._policy, now)
        self._set_circuit(circuit, "cool-down over: one trial call")
        if not allowed:
            fail(message.reply, self._circuit_refusal(now))
        elif self._slots.free:
            self._grant(message)
        elif self.spec.admission == "refuse" or len(self._waiting) >= self.spec.max_queue:
            fail(
                message.reply,
                NotAdmitted(
                    self.spec.name,
                    Refusal.OVERLOADED,
                    f"model {self.spec.name!r} is at max_concurrency "
                    f"{self.spec.max_concurrency} with {len(self._waiting)} queued",
                ),
            )
        else:
            self._waiting.append(message)

    def _grant(self, message: Admit) -> None:
        slot = self._slots.free.pop()
        index = slot if self._executors[0] is not None else 0
        ticket = Ticket(
            message.call_id, self.spec, self._providers[index], self._executors[index], slot
        )
        if answer(message.reply, ticket):
            self._slots.tickets[message.call_id] = ticket
            self._calls += 1
        else:
            self._slots.free.append(slot)

    def _release(self, message: Release) -> None:
        ticket = self._slots.tickets.pop(message.ticket.call_id, None)
        if ticket is None:
            return
        self._slots.free.append(ticket.slot)
        now = self._clock()
        if message.outcome is Outcome.NEUTRAL:
            if self._circuit.probing:
                self._circuit = Circuit(self._circuit.state, self._circuit.failures,
                                        self._circuit.opened_at, probing=False)  # fmt: skip
        else:
            ok = message.outcome is Outcome.OK
            self._failures += not ok
            self._set_circuit(
                record(self._circuit, self._policy, now, ok=ok),
                "a call succeeded" if ok else f"{self._circuit.failures + 1} failures in a row",
            )
        if self._circuit.state.value == "open":
            refusal = self._circuit_refusal(now)
            while self._waiting:
                fail(self._waiting.popleft().reply, refusal)
        while self._slots.free and self._waiting:
            self._grant(self._waiting.popleft())

    def _circuit_refusal(self, now: float) -> NotAdmitted:
        wait = max(0.0, self._circuit.opened_at + self._policy.cooldown_s - now)
        return NotAdmitted(
            self.spec.name,
            Refusal.CIRCUIT_OPEN,
            f"model {self.spec.name!r}: circuit open after {self._circuit.failures} failures; "
            f"next trial in {wait:.1f}s",
        )

    def _set_circuit(self, circuit: Circuit, reason: str) -> None:
        previous = self._circuit.state
        self._circuit = circuit
        if circuit.state is not previous:
            event = ModelHealthChanged(self.spec.name, previous.value, circuit.state.value, reason)
            # Rare, and on the record before any caller is refused for it.
            self._store.append(model_stream(self.spec.name), [event.new()])

    def _status(self) -> ModelStatus:
        return ModelStatus(
            self.spec.name,
            self._circuit.state.value,
            len(self._slots.tickets),
            len(self._waiting),
            self._circuit.failures,
            self._calls,
            self._failures,
        )
