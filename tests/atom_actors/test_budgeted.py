"""Every call is paid for: the reservation bounds it, the settlement matches what is billed.

The fake upstreams keep the bill a real provider would send (`FakeServer.bills`): the prompt
and the tokens it sent, nothing for a request it failed before any output.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from atom_actors.catalog import ModelSpec
from atom_actors.cost import call_reservation, cost_pico, prompt_bound, prompt_size
from atom_actors.events import BudgetSet
from atom_actors.gateway import Gateway
from atom_actors.principal import Principal, Role
from atom_actors.providers import CallParams
from atom_actors.request import GatewayError, ProcessRequest
from atom_actors.snapshot import EnsembleMethod, EnsembleSpec
from eventstore import EventStore
from tests.atom_actors.conftest import network_spec
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.faults import Behaviour, Fault
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import FakeServer

MakeGateway = Callable[..., Awaitable[Gateway]]
ASK = [{"role": "user", "content": "Count for me, please."}]
USER = Principal(key_id="key-1", role=Role.USER, tenant="acme")
LONG = " ".join(f"w{i}" for i in range(40))


@pytest.fixture(params=["openai", "anthropic"])
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeServer]:
    server: FakeServer = FakeOpenAI() if request.param == "openai" else FakeAnthropic()
    async with server:
        yield server


def model(fake: FakeServer, name: str = "m", **options: Any) -> ModelSpec:
    provider = "anthropic" if isinstance(fake, FakeAnthropic) else "openai"
    return network_spec(name, fake.base_url, provider=provider, **options)


def events(log: EventStore, request_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in log.read_stream(f"request-{request_id}") if e.type == kind]


async def eventually(read: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """What `read` returns once it returns something, within five seconds."""
    async with asyncio.timeout(5):
        while not (found := read()):
            await asyncio.sleep(0.01)
    return found


def settled_as_billed(fake: FakeServer, spec: ModelSpec, settled: dict[str, Any]) -> None:
    """A settlement against the fake's bill of the same call, by the rule it names."""
    bill = fake.bills[-1]
    if settled["rule"] == "usage":
        assert (settled["prompt_tokens"], settled["completion_tokens"]) == (
            bill.prompt_tokens,
            bill.completion_tokens,
        )
    elif settled["rule"] == "none":
        assert (bill.prompt_tokens, bill.completion_tokens, settled["actual_pico"]) == (0, 0, 0)
    else:
        # A stream broken off reports no usage: the prompt is counted at its bound, and the
        # tokens one a chunk (OpenAI) or at most a token a byte (Anthropic).
        assert settled["prompt_tokens"] >= bill.prompt_tokens > 0
        if isinstance(fake, FakeOpenAI):
            assert settled["completion_tokens"] == bill.completion_tokens
        else:
            assert settled["completion_tokens"] >= bill.completion_tokens
    expected = cost_pico(spec, settled["prompt_tokens"], settled["completion_tokens"])
    assert settled["actual_pico"] == expected <= settled["reserved_pico"]


async def test_a_call_sends_the_max_tokens_it_reserved_for(
    log: EventStore, fake: FakeServer, make_gateway: MakeGateway
) -> None:
    fake.models["m"] = Behaviour(reply=LONG)
    spec = model(fake, max_output_tokens=12)
    gateway = await make_gateway([spec])
    result = await gateway.process(ProcessRequest(ASK, model="m"), USER)
    assert fake.requests[-1].body["max_tokens"] == 12
    assert result.completion_tokens == 12
    (reserved,) = events(log, result.request_id, "BudgetReserved")
    assert reserved["amount_pico"] == call_reservation(spec, prompt_size(ASK), None)
    (settled,) = events(log, result.request_id, "BudgetSettled")
    assert settled["rule"] == "usage"
    settled_as_billed(fake, spec, settled)


async def test_usage_not_reported_is_counted_from_the_prompts_bound_and_the_stream(
    log: EventStore, make_gateway: MakeGateway
) -> None:
    async with FakeOpenAI(default=Behaviour(reply="a b c", reports_usage=False)) as fake:
        spec = model(fake)
        gateway = await make_gateway([spec])
        result = await gateway.process(ProcessRequest(ASK, model="m"), USER)
    (settled,) = events(log, result.request_id, "BudgetSettled")
    assert settled["rule"] == "counted"
    assert settled["prompt_tokens"] == prompt_bound(spec, prompt_size(ASK))
    assert settled["completion_tokens"] == 3 == fake.bills[-1].completion_tokens
    (completed,) = events(log, result.request_id, "ModelCallCompleted")
    assert (completed["rule"], completed["cost_pico"]) == ("counted", settled["actual_pico"])


@pytest.mark.parametrize(
    "fault",
    [Fault.http_error(500), Fault.http_error(400), Fault.reset(), Fault.hang()],
    ids=["500", "400", "reset", "hang"],
)
async def test_a_call_that_fails_before_any_output_costs_nothing(
    log: EventStore, fake: FakeServer, make_gateway: MakeGateway, fault: Fault
) -> None:
    fake.fail(fault, model="m")
    spec = model(fake, timeout_first_token_s=0.3)
    gateway = await make_gateway([spec])
    with pytest.raises(GatewayError) as failed:
        await gateway.process(ProcessRequest(ASK, model="m"), USER)
    assert failed.value.request_id is not None
    settlements = events(log, failed.value.request_id, "BudgetSettled")
    assert settlements and all(s["rule"] == "none" for s in settlements)
    assert all(b.prompt_tokens == b.completion_tokens == 0 for b in fake.bills)
    (failure,) = events(log, failed.value.request_id, "RequestFailed")
    assert failure["cost_pico"] == 0


@pytest.mark.parametrize(
    "fault",
    [
        Fault.reset(after=3),
        Fault.truncate(after=3),
        Fault.malformed(after=3),
        Fault.error_event(after=3),
        Fault.hang(after=3),
    ],
    ids=["reset", "truncate", "malformed", "error_event", "hang"],
)
async def test_a_stream_the_upstream_breaks_is_billed_for_what_it_streamed(
    log: EventStore, fake: FakeServer, make_gateway: MakeGateway, fault: Fault
) -> None:
    fake.models["m"] = Behaviour(reply=LONG, tokens_per_second=200)
    fake.fail(fault, model="m", times=1)
    spec = model(fake, timeout_first_token_s=0.5, timeout_total_s=1.0)
    gateway = await make_gateway([spec])
    # Not streamed to the client: the broken call is retried, and the retry answers.
    result = await gateway.process(ProcessRequest(ASK, model="m"), USER)
    first, second = events(log, result.request_id, "BudgetSettled")
    assert first["rule"] == "cut" and first["completion_tokens"] >= 3
    assert second["rule"] == "usage"
    fake.bills.pop()
    settled_as_billed(fake, spec, first)
    # The answer's cost counts the broken call's too.
    assert result.cost_pico == first["actual_pico"] + second["actual_pico"]


async def test_a_client_that_goes_away_mid_stream_pays_for_what_was_streamed(
    log: EventStore, fake: FakeServer, make_gateway: MakeGateway
) -> None:
    fake.models["m"] = Behaviour(reply=LONG, tokens_per_second=40)
    spec = model(fake)
    gateway = await make_gateway([spec])
    seen: list[str] = []
    enough = asyncio.Event()

    def on_token(_member: str, text: str, _ms: float) -> None:
        seen.append(text)
        if len(seen) == 4:
            enough.set()

    request_id = "gone-1"
    task = asyncio.create_task(
        gateway.process(ProcessRequest(ASK, model="m", stream=True), USER, on_token, request_id)
    )
    await asyncio.wait_for(enough.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for_disconnects()
    # A request cancelled flushes its story to the log's writer without waiting for it.
    (settled,) = await eventually(lambda: events(log, request_id, "BudgetSettled"))
    assert settled["rule"] == "cut" and settled["completion_tokens"] >= len(seen) >= 4
    settled_as_billed(fake, spec, settled)


async def test_an_ensemble_member_cut_at_the_deadline_pays_for_its_tokens(
    log: EventStore, fake: FakeServer, make_gateway: MakeGateway
) -> None:
    fake.models.update(fast=Behaviour(reply="4"), slow=Behaviour(reply=LONG, tokens_per_second=5))
    fast, slow = model(fake, "fast"), model(fake, "slow")
    gateway = await make_gateway([fast, slow])
    ensemble = EnsembleSpec(EnsembleMethod.MAJORITY_VOTE, ("fast", "slow"))
    # Four tokens at 5 a second: the slow member has sent two or three at the deadline.
    req = ProcessRequest(ASK, CallParams(max_tokens=4), ensemble=ensemble, deadline_ms=600)
    result = await gateway.process(req, USER)
    assert result.model == "fast"
    await fake.wait_for_disconnects()
    by_model = {s["model"]: s for s in events(log, result.request_id, "BudgetSettled")}
    assert by_model["fast"]["rule"] == "usage"
    assert by_model["slow"]["rule"] == "cut" and by_model["slow"]["completion_tokens"] > 0
    slow_bill = next(b for b in fake.bills if b.model == "slow")
    fake.bills[:] = [slow_bill]
    settled_as_billed(fake, slow, by_model["slow"])
    assert result.cost_pico == sum(s["actual_pico"] for s in by_model.values())


async def test_the_judge_reserves_in_the_scopes_of_the_request_it_grades(
    log: EventStore, make_gateway: MakeGateway
) -> None:
    async with FakeOpenAI() as fake:
        fake.models.update(m=Behaviour(reply="4"), judge=Behaviour(reply="Score: 7"))
        gateway = await make_gateway([model(fake), model(fake, "judge")], judge_model="judge")
        result = await gateway.process(ProcessRequest(ASK, model="m"), USER)
        await gateway.drain()
    reserved = events(log, result.request_id, "BudgetReserved")
    assert [r["model"] for r in reserved] == ["m", "judge"]
    assert reserved[1]["scopes"] == ["global", "key:key-1", "tenant:acme"]
    judged = events(log, result.request_id, "BudgetSettled")[-1]
    assert (judged["model"], judged["rule"]) == ("judge", "usage")
    assert fake.requests[-1].body["max_tokens"] == 64


async def test_a_judge_that_does_not_fit_the_budget_is_not_called(
    log: EventStore, make_gateway: MakeGateway
) -> None:
    async with FakeOpenAI() as fake:
        fake.models.update(m=Behaviour(reply="4"), judge=Behaviour(reply="Score: 7"))
        judge = replace(model(fake, "judge"), input_usd_per_mtok=1e6)
        gateway = await make_gateway(
            [model(fake, max_output_tokens=16), judge], judge_model="judge"
        )
        # Room for the answer, not for the judge's reservation.
        limit = BudgetSet(scope="tenant:acme", limit_pico=10**9, period="total")
        await log.append_async("budget-tenant:acme", [limit.new()])
        await gateway.projections.wait_until(log.head(), 5)
        result = await gateway.process(ProcessRequest(ASK, model="m"), USER)
        await gateway.drain()
    assert [r.body["model"] for r in fake.requests] == ["m"]
    (failed,) = events(log, result.request_id, "ScoreFailed")
    assert "budget 'tenant:acme'" in failed["reason"]
