"""ModelActor: one per configured model; admission (a bulkhead), circuit breaker and health.

The actor does not run calls. A call is admitted with a Ticket naming the provider to use;
the asyncio side runs the call (network providers on the loop, blocking ones on the worker
thread the ticket names) and releases the ticket with its outcome. The usual admission and
release go through the model's Gate without a message; the actor decides the rest.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pykka

from eventstore import EventStore

from .bridge import answer, fail
from .catalog import ModelSpec
from .circuit import DEFAULT_CIRCUIT, Circuit, CircuitPolicy, admit, record
from .events import ModelHealthChanged, model_stream
from .providers import AsyncProvider, BlockingProvider
from .snapshot import Health

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
        # Only a call on a thread polls for cancellation; an async one is cancelled as a task.
        self.cancel = threading.Event() if executor is not None else None
        self.abort_reason: str | None = None
        self._on_abort: Callable[[str], None] | None = None

    def on_abort(self, callback: Callable[[str], None]) -> None:
        """Call `callback(reason)` (from the actor's thread) if the actor aborts this call."""
        self._on_abort = callback
        if self.abort_reason is not None:
            callback(self.abort_reason)

    def abort(self, reason: str) -> None:
        self.abort_reason = reason
        if self.cancel is not None:
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
    # The most calls that waited at once since the actor started.
    peak_queued: int
    consecutive_failures: int
    calls: int
    failures: int


@dataclass(frozen=True, slots=True)
class GetStatus:
    reply: Future[ModelStatus]


class Gate:
    """A model's admission state, its bulkhead's slots and its circuit, under one lock.

    Its actor decides every hard case: queueing, refusals, circuit transitions and the health
    events they write. A caller takes the easy ones itself, without a message: a free slot on
    a closed circuit, and a release that changes nothing but the slot. Those are nearly all
    calls, and each message spared is a wake-up of the actor's thread and then of the loop.
    """

    def __init__(
        self,
        spec: ModelSpec,
        policy: CircuitPolicy = DEFAULT_CIRCUIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.clock = clock
        self.lock = threading.Lock()
        self.circuit = Circuit()
        self.providers: list[AsyncProvider | BlockingProvider] = []
        self.executors: list[ThreadPoolExecutor | None] = []
        self.free: list[int] = []
        self.tickets: dict[str, Ticket] = {}
        self.waiting: deque[Admit] = deque()
        self.peak_waiting = 0
        self.calls = 0
        self.failures = 0
        # Fast admissions only between the actor's start and its shutdown.
        self.open = False

    def admit_now(self, call_id: str) -> Ticket | None:
        """A ticket at once when the circuit is closed and a slot is free and nobody queues;
        None when the actor must decide (ask it with Admit)."""
        with self.lock:
            if (
                not self.open
                or self.waiting
                or not self.free
                or self.circuit.state is not Health.CLOSED
            ):
                return None
            return self.take_slot(call_id)

    def load(self) -> tuple[int, int, int]:
        """Calls in flight, calls waiting, and the most that ever waited at once."""
        with self.lock:
            return len(self.tickets), len(self.waiting), self.peak_waiting

    def release_now(self, ticket: Ticket, outcome: Outcome) -> bool:
        """Free the ticket's slot when nothing else changes; False when the actor must decide
        (tell it Release): a failure, a circuit not closed, callers queued."""
        with self.lock:
            if outcome is Outcome.FAILED or self.waiting or self.circuit.state is not Health.CLOSED:
                return False
            if self.tickets.pop(ticket.call_id, None) is not None:
                self.free.append(ticket.slot)
                if outcome is Outcome.OK:
                    # A closed circuit stays closed on a success: no health event to write.
                    self.circuit = record(self.circuit, self.policy, self.clock(), ok=True)
            return True

    def take_slot(self, call_id: str) -> Ticket:
        """A ticket on a free slot; the lock is held."""
        slot = self.free.pop()
        index = slot if self.executors[0] is not None else 0
        ticket = Ticket(call_id, self.spec, self.providers[index], self.executors[index], slot)
        self.tickets[call_id] = ticket
        self.calls += 1
        return ticket


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
        gate: Gate | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self._factory = factory
        self._store = store
        self._loop = loop
        self._on_crash = on_crash
        self.gate = gate or Gate(spec)

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
        providers: list[AsyncProvider | BlockingProvider] = [first]
        if isinstance(first, BlockingProvider):
            # A blocking provider (a loaded llama.cpp model) serves one call at a time: one
            # copy and one thread per concurrent call.
            for _ in range(1, self.spec.max_concurrency):
                providers.append(self._factory(self.spec))
            executors: list[ThreadPoolExecutor | None] = [
                ThreadPoolExecutor(1, thread_name_prefix=f"{self.spec.name}-{i}")
                for i in range(len(providers))
            ]
            free = list(range(len(providers)))
        else:
            executors = [None]
            free = [0] * self.spec.max_concurrency
        gate = self.gate
        with gate.lock:
            gate.providers, gate.executors, gate.free = providers, executors, free
            gate.open = True

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
        gate = self.gate
        with gate.lock:
            gate.open = False
            waiting, gate.waiting = list(gate.waiting), deque()
            tickets = list(gate.tickets.values())
            providers, executors = gate.providers, gate.executors
            gate.providers, gate.executors, gate.free = [], [], []
        for message in waiting:
            fail(message.reply, error)
        for ticket in tickets:
            ticket.abort(error.message)
        for executor in executors:
            if executor is not None:
                executor.shutdown(wait=False)
        for provider in providers:
            self._close(provider)

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
        gate = self.gate
        now = gate.clock()
        with gate.lock:
            allowed, circuit = admit(gate.circuit, gate.policy, now)
            previous, gate.circuit = gate.circuit, circuit
        self._announce(previous, circuit, "cool-down over: one trial call")
        with gate.lock:
            if not allowed:
                refusal: NotAdmitted | None = self._circuit_refusal(now)
            elif gate.free:
                ticket = gate.take_slot(message.call_id)
                refusal = None
            elif self.spec.admission == "refuse" or len(gate.waiting) >= self.spec.max_queue:
                refusal = NotAdmitted(
                    self.spec.name,
                    Refusal.OVERLOADED,
                    f"model {self.spec.name!r} is at max_concurrency "
                    f"{self.spec.max_concurrency} with {len(gate.waiting)} queued",
                )
            else:
                gate.waiting.append(message)
                gate.peak_waiting = max(gate.peak_waiting, len(gate.waiting))
                return
        if refusal is not None:
            fail(message.reply, refusal)
        else:
            self._hand(message, ticket)

    def _hand(self, message: Admit, ticket: Ticket) -> None:
        """Answer an Admit with its ticket; a caller gone meanwhile gives its slot back."""
        if not answer(message.reply, ticket):
            gate = self.gate
            with gate.lock:
                if gate.tickets.pop(ticket.call_id, None) is not None:
                    gate.free.append(ticket.slot)
                    gate.calls -= 1

    def _release(self, message: Release) -> None:
        gate = self.gate
        now = gate.clock()
        with gate.lock:
            ticket = gate.tickets.pop(message.ticket.call_id, None)
            if ticket is None:
                return
            gate.free.append(ticket.slot)
            previous = gate.circuit
            if message.outcome is Outcome.NEUTRAL:
                if previous.probing:
                    gate.circuit = Circuit(previous.state, previous.failures,
                                           previous.opened_at, probing=False)  # fmt: skip
            else:
                ok = message.outcome is Outcome.OK
                gate.failures += not ok
                gate.circuit = record(previous, gate.policy, now, ok=ok)
            circuit = gate.circuit
        reason = (
            "a call succeeded"
            if message.outcome is Outcome.OK
            else f"{previous.failures + 1} failures in a row"
        )
        self._announce(previous, circuit, reason)
        refused: list[Admit] = []
        granted: list[tuple[Admit, Ticket]] = []
        with gate.lock:
            if gate.circuit.state is Health.OPEN:
                refused, gate.waiting = list(gate.waiting), deque()
            while gate.free and gate.waiting:
                waiter = gate.waiting.popleft()
                granted.append((waiter, gate.take_slot(waiter.call_id)))
        if refused:
            refusal = self._circuit_refusal(now)
            for waiter in refused:
                fail(waiter.reply, refusal)
        for waiter, ticket in granted:
            self._hand(waiter, ticket)

    def _circuit_refusal(self, now: float) -> NotAdmitted:
        circuit, policy = self.gate.circuit, self.gate.policy
        wait = max(0.0, circuit.opened_at + policy.cooldown_s - now)
        return NotAdmitted(
            self.spec.name,
            Refusal.CIRCUIT_OPEN,
            f"model {self.spec.name!r}: circuit open after {circuit.failures} failures; "
            f"next trial in {wait:.1f}s",
        )

    def _announce(self, previous: Circuit, circuit: Circuit, reason: str) -> None:
        """Put a change of health on the record, before any caller is refused for it."""
        if circuit.state is not previous.state:
            event = ModelHealthChanged(
                model=self.spec.name,
                previous=previous.state.value,
                current=circuit.state.value,
                reason=reason,
            )
            self._store.append(model_stream(self.spec.name), [event.new()])

    def _status(self) -> ModelStatus:
        gate = self.gate
        with gate.lock:
            return ModelStatus(
                self.spec.name,
                gate.circuit.state.value,
                len(gate.tickets),
                len(gate.waiting),
                gate.peak_waiting,
                gate.circuit.failures,
                gate.calls,
                gate.failures,
            )
