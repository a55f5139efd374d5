"""Budgets hold and settlements match the bills under any interleaving of faults.

Hypothesis draws waves of concurrent requests from two tenancies to an OpenAI-format and an
Anthropic-format upstream, with clients that go away mid-stream, upstreams that break before
or during an answer, deadlines, and gateway restarts between waves (a new process: a new log
handle, actors, projections and budget book). Then, from the log and the upstreams' bills:
no scope has settled more than its limit, and every call's settlement is what its upstream
billed, by the rule it names.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atom_actors.catalog import ModelSpec
from atom_actors.events import BudgetSet
from atom_actors.gateway import Gateway
from atom_actors.principal import Principal, Role
from atom_actors.projections import all_projections
from atom_actors.providers import CallParams
from atom_actors.request import GatewayError, ProcessRequest
from atom_actors.system import ActorSystem
from eventstore import EventStore, LiveProjections, open_store
from tests.atom_actors.conftest import FAKE_KEY_ENV, fake_env_factory, network_spec
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.faults import Behaviour, Fault
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import Bill, FakeServer

REPLY = " ".join(f"w{i}" for i in range(30))
# Two tenancies, one with a key budget of its own, both under a global one.
ACME = Principal(key_id="a1", role=Role.USER, tenant="acme")
SOLO = Principal(key_id="s1", role=Role.USER)
FAULTS = {
    "none": None,
    "500": Fault.http_error(500),
    "429": Fault.http_error(429, retry_after="0"),
    "529": Fault.http_error(529),
    "reset": Fault.reset(),
    "reset mid-stream": Fault.reset(after=3),
    "truncated": Fault.truncate(after=4),
    "malformed": Fault.malformed(after=2),
    "error event": Fault.error_event(after=3),
    "hang mid-stream": Fault.hang(after=2),
}


@dataclass(frozen=True)
class Ask:
    model: str
    tenant: int
    stream: bool
    max_tokens: int | None
    fault: str
    leave_after: int | None
    deadline_ms: float | None


asks = st.builds(
    Ask,
    model=st.sampled_from(["o", "a"]),
    tenant=st.integers(0, 1),
    stream=st.booleans(),
    max_tokens=st.none() | st.integers(1, 40),
    fault=st.sampled_from(list(FAULTS)),
    leave_after=st.none() | st.integers(1, 6),
    deadline_ms=st.none() | st.sampled_from([150.0, 400.0]),
)
waves = st.lists(st.lists(asks, min_size=1, max_size=5), min_size=1, max_size=3)
limits = st.tuples(st.integers(100, 2_000), st.integers(50, 1_000), st.integers(50, 1_000))


class Node:
    """One gateway process over the log: actors, projections, budget book."""

    def __init__(self, path: str, specs: Sequence[ModelSpec]) -> None:
        self.store: EventStore = open_store(path, durability="normal")
        self.system = ActorSystem(self.store, specs, factory=fake_env_factory)
        self.projections = LiveProjections(self.store, all_projections())

    async def start(self) -> Gateway:
        self.system.start(asyncio.get_running_loop())
        await self.projections.start()
        # As `atom serve` does: caught up with the log before the first request.
        await self.projections.wait_until(self.store.head())
        return Gateway(self.store, self.system, self.projections, env={FAKE_KEY_ENV: "sk-test"})

    async def stop(self) -> None:
        await self.system.aclose()
        await self.projections.stop()
        self.store.close()


async def ask(gateway: Gateway, n: int, q: Ask) -> None:
    principal = (ACME, SOLO)[q.tenant]
    messages = [{"role": "user", "content": f"req-{n}: count for me"}]
    req = ProcessRequest(
        messages,
        CallParams(max_tokens=q.max_tokens),
        q.model,
        stream=q.stream,
        deadline_ms=q.deadline_ms,
    )
    seen = 0
    gone = asyncio.Event()

    def on_token(_member: str, _text: str, _ms: float) -> None:
        nonlocal seen
        seen += 1
        if q.leave_after is not None and seen >= q.leave_after:
            gone.set()

    task = asyncio.create_task(gateway.process(req, principal, on_token if q.stream else None))
    if q.stream and q.leave_after is not None:
        await asyncio.wait([task, asyncio.create_task(gone.wait())], timeout=5,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        task.cancel()
    with contextlib.suppress(GatewayError, asyncio.CancelledError):
        await task


async def scenario(path: str, budget: tuple[int, int, int], plan: list[list[Ask]]) -> None:
    async with FakeOpenAI() as o, FakeAnthropic() as a:
        for fake in (o, a):
            fake.default = Behaviour(reply=REPLY, tokens_per_second=400)
        specs = [
            network_spec("o", o.base_url, input_usd_per_mtok=1, output_usd_per_mtok=3,
                         max_output_tokens=40, timeout_first_token_s=0.3, timeout_total_s=1.0),
            network_spec("a", a.base_url, provider="anthropic", input_usd_per_mtok=2,
                         output_usd_per_mtok=4, max_output_tokens=40, timeout_first_token_s=0.3,
                         timeout_total_s=1.0),
        ]  # fmt: skip
        with open_store(path) as store:
            micro = 10**6  # pico-dollars in a micro-dollar
            for scope, limit in zip(("global", "tenant:acme", "key:s1"), budget, strict=True):
                event = BudgetSet(scope=scope, limit_pico=limit * micro, period="total")
                store.append(f"budget-{scope}", [event.new()])
        n = 0
        for wave in plan:
            node = Node(path, specs)
            gateway = await node.start()
            for q in wave:
                fake = o if q.model == "o" else a
                fault = FAULTS[q.fault]
                if fault is not None:
                    fake.fail(fault, model=q.model, times=1)
            await asyncio.gather(*(ask(gateway, n + i, q) for i, q in enumerate(wave)))
            n += len(wave)
            for fake in (o, a):
                fake.clear_faults()
            # A restart: what this process did is all on the log, its memory is gone.
            await node.stop()
        check(path, budget, {"o": o, "a": a})


def check(path: str, budget: tuple[int, int, int], fakes: dict[str, FakeServer]) -> None:
    with open_store(path) as store:
        events = list(store.read_all())
    limits = dict(zip(("global", "tenant:acme", "key:s1"), budget, strict=True))
    spent: dict[str, int] = defaultdict(int)
    reserved_for: dict[str, dict[str, Any]] = {}
    settled: dict[str, list[dict[str, Any]]] = defaultdict(list)
    prompt_of: dict[str, str] = {}
    for e in events:
        if e.type == "RequestReceived":
            prompt_of[e.data["request_id"]] = e.data["messages"][-1]["content"]
        elif e.type == "BudgetReserved":
            reserved_for[e.data["reservation_id"]] = e.data
        elif e.type == "BudgetSettled":
            for scope in e.data["scopes"]:
                spent[scope] += e.data["actual_pico"]
            assert e.data["reservation_id"] in reserved_for, "settled after it was reserved"
            settled[prompt_of[e.data["request_id"]]].append(e.data)
    # No scope settles more than its limit.
    for scope, limit in limits.items():
        assert spent[scope] <= limit * 10**6, (scope, spent[scope], limit)
    # Every reservation was settled: nothing left counting, nothing lost.
    assert {d["reservation_id"] for ds in settled.values() for d in ds} == set(reserved_for)
    # Each request's calls, in order, against the bills of the upstream that served them.
    bills: dict[str, list[Bill]] = defaultdict(list)
    for fake in fakes.values():
        for bill in fake.bills:
            bills[bill.prompt].append(bill)
    for prompt, settlements in settled.items():
        billed = [b for b in bills[prompt] if b.prompt_tokens]
        charged = [s for s in settlements if s["rule"] != "none"]
        assert len(charged) == len(billed), (prompt, settlements, bills[prompt])
        for s, b in zip(charged, billed, strict=True):
            assert s["model"] == b.model
            if s["rule"] == "usage":
                assert b.complete
                assert (s["prompt_tokens"], s["completion_tokens"]) == (
                    b.prompt_tokens,
                    b.completion_tokens,
                )
            else:
                assert s["rule"] == "cut" and not b.complete
                # A stream broken off reports no usage: the prompt at its bound, the tokens
                # one a chunk (OpenAI) or a byte at most (Anthropic).
                assert s["prompt_tokens"] >= b.prompt_tokens
                if b.model == "o":
                    assert s["completion_tokens"] == b.completion_tokens
                else:
                    assert s["completion_tokens"] >= b.completion_tokens
            assert s["actual_pico"] <= s["reserved_pico"]
    # Every request's story ends on the record, however it ended.
    ended = {
        e.data["request_id"] for e in events if e.type in ("RequestCompleted", "RequestFailed")
    }
    assert ended == set(prompt_of)


@pytest.mark.timeout(300)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(budget=limits, plan=waves)
def test_no_budget_is_overspent_and_every_call_is_settled_as_billed(
    budget: tuple[int, int, int], plan: list[list[Ask]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(scenario(str(Path(folder) / "log.db"), budget, plan))
