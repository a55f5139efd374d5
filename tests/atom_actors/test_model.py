"""The model's gate: the admissions and releases a caller takes without messaging the actor."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future

from atom_actors.catalog import ModelSpec
from atom_actors.circuit import Circuit
from atom_actors.model import Admit, Gate, Outcome, Ticket
from atom_actors.providers import CallParams
from atom_actors.snapshot import Health
from atom_actors.system import ActorSystem
from tests.atom_actors.conftest import network_spec
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI

MESSAGES = [{"role": "user", "content": "What is two plus two?"}]


def open_gate(slots: int = 2) -> Gate:
    gate = Gate(network_spec("m", "http://127.0.0.1:1", max_concurrency=slots))
    gate.providers, gate.executors, gate.free = [object()], [None], [0] * slots  # type: ignore[list-item]
    gate.open = True
    return gate


def test_a_free_slot_on_a_closed_circuit_is_taken_at_once_until_none_is_left() -> None:
    gate = open_gate(2)
    first, second = gate.admit_now("a"), gate.admit_now("b")
    assert isinstance(first, Ticket) and isinstance(second, Ticket)
    assert gate.admit_now("c") is None
    assert set(gate.tickets) == {"a", "b"} and gate.calls == 2


def test_the_actor_decides_when_the_circuit_is_not_closed_or_callers_queue() -> None:
    gate = open_gate(2)
    gate.circuit = Circuit(Health.HALF_OPEN, 5, 0.0)
    assert gate.admit_now("a") is None
    gate.circuit = Circuit()
    gate.waiting.append(Admit("queued", Future()))
    assert gate.admit_now("b") is None
    gate.waiting.clear()
    gate.open = False
    assert gate.admit_now("c") is None
    assert not gate.tickets


def test_a_success_frees_its_slot_and_clears_the_failure_count() -> None:
    gate = open_gate(1)
    ticket = gate.admit_now("a")
    assert ticket is not None
    gate.circuit = Circuit(Health.CLOSED, 3, 0.0)
    assert gate.release_now(ticket, Outcome.OK)
    assert gate.free == [0] and not gate.tickets
    assert gate.circuit == Circuit()


def test_a_failure_or_a_queue_leaves_the_release_to_the_actor() -> None:
    gate = open_gate(1)
    ticket = gate.admit_now("a")
    assert ticket is not None
    assert not gate.release_now(ticket, Outcome.FAILED)
    gate.waiting.append(Admit("queued", Future()))
    assert not gate.release_now(ticket, Outcome.OK)
    # Still held: the actor's Release frees it and hands it to the queued caller.
    assert gate.tickets == {"a": ticket} and not gate.free


def test_threads_racing_for_slots_never_hold_more_than_there_are() -> None:
    gate = open_gate(3)
    held: list[int] = []
    most = 0
    lock = threading.Lock()

    def caller(n: int) -> None:
        nonlocal most
        for i in range(300):
            ticket = gate.admit_now(f"{n}-{i}")
            if ticket is None:
                continue
            with lock:
                held.append(1)
                most = max(most, len(held))
            with lock:
                held.pop()
            assert gate.release_now(ticket, Outcome.OK)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most <= 3
    assert sorted(gate.free) == [0, 0, 0] and not gate.tickets


async def test_fast_and_queued_admissions_together_keep_the_bulkhead(
    upstream: FakeOpenAI, make_system: Callable[..., ActorSystem]
) -> None:
    """Free slots are taken by the gate, the rest queue at the actor: never more than allowed
    upstream at once, and every call answered."""
    upstream.models["m"] = Behaviour(reply="four", first_token_delay=0.02)
    spec: ModelSpec = network_spec("m", upstream.base_url, max_concurrency=3, max_queue=100)
    system = make_system([spec])
    _, gate = system.directory.entry("m")
    most = 0

    def seen(_delta: object, _ms: float) -> None:
        nonlocal most
        most = max(most, len(gate.tickets))

    async def one(i: int) -> str:
        result = await system.caller.call(
            "m", MESSAGES, CallParams(max_tokens=4), request_id=f"r{i}", on_delta=seen
        )
        return result.text

    texts = await asyncio.gather(*(one(i) for i in range(30)))
    assert texts == ["four"] * 30
    assert most == 3
    status = await system.status("m")
    assert (status.in_flight, status.queued, status.calls) == (0, 0, 30)
    assert len(upstream.requests) == 30
