"""How a request's events reach the log: in two appends, the reservation before the call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest

from atom_actors.gateway import Gateway
from atom_actors.principal import Principal, Role
from atom_actors.projections import all_projections
from atom_actors.providers import CallParams
from atom_actors.request import ProcessRequest
from eventstore import EventStore, fold
from tests.atom_actors.conftest import network_spec, story
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI

MakeGateway = Callable[..., Awaitable[Gateway]]
ASK = [{"role": "user", "content": "What is 2 + 2?"}]
USER = Principal(key_id="key-1", role=Role.USER, tenant="acme")
BEFORE_THE_CALL = ["RequestReceived", "RouteDecided", "BudgetReserved", "ModelCallStarted"]
WITH_THE_ANSWER = ["TokensStreamed", "ModelCallCompleted", "BudgetSettled", "RequestCompleted"]


async def test_a_request_takes_two_appends_one_before_the_call_one_with_the_answer(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models["m"] = Behaviour(reply="Four.")
    gateway = await make_gateway([network_spec("m", upstream.base_url)])
    await gateway.process(ProcessRequest(ASK, CallParams(max_tokens=16), "m"), USER)
    before = log.stats.appends
    result = await gateway.process(ProcessRequest(ASK, CallParams(max_tokens=16), "m"), USER)
    assert log.stats.appends - before == 2
    events = log.read_stream(f"request-{result.request_id}")
    assert [e.type for e in events] == BEFORE_THE_CALL + WITH_THE_ANSWER
    # Each append is one commit's worth: the first four share a commit, the last four too.
    assert len({e.recorded_at for e in events[:4]}) == len({e.recorded_at for e in events[4:]}) == 1
    assert events[-1].position == result.position


@pytest.mark.parametrize("log", ["normal"], indirect=True)
async def test_a_lone_request_commits_on_the_loop_and_requests_in_company_through_the_writer(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models["m"] = Behaviour(reply="Four.")
    gateway = await make_gateway([network_spec("m", upstream.base_url)])
    committers: list[str] = []
    log.add_commit_listener(lambda _head: committers.append(threading.current_thread().name))
    request = ProcessRequest(ASK, CallParams(max_tokens=16), "m")
    await gateway.process(request, USER)
    # Alone, its two appends are committed on the loop: no hand-over to the writer and back.
    assert committers == [threading.current_thread().name] * 2
    committers.clear()
    results = await asyncio.gather(*(gateway.process(request, USER) for _ in range(4)))
    assert "eventstore-writer" in committers
    for result in results:
        assert story(log, result.request_id) == BEFORE_THE_CALL + WITH_THE_ANSWER


async def test_the_reservation_is_committed_before_the_upstream_sees_the_call(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models["slow"] = Behaviour(reply="Four.", first_token_delay=0.5)
    gateway = await make_gateway([network_spec("slow", upstream.base_url)])
    task = asyncio.create_task(
        gateway.process(ProcessRequest(ASK, CallParams(max_tokens=16), "slow"), USER, None, "r1")
    )
    while not upstream.requests:
        await asyncio.sleep(0.005)
    # The upstream has the call and has not answered: what accounts for it is on the record.
    assert story(log, "r1") == BEFORE_THE_CALL
    await task
    assert story(log, "r1") == BEFORE_THE_CALL + WITH_THE_ANSWER


async def test_a_request_cancelled_while_queued_for_admission_leaves_its_story(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models["one"] = Behaviour(reply="Four.", first_token_delay=0.5)
    gateway = await make_gateway([network_spec("one", upstream.base_url, max_concurrency=1)])
    params = CallParams(max_tokens=16)
    first = asyncio.create_task(
        gateway.process(ProcessRequest(ASK, params, "one"), USER, None, "a")
    )
    while not upstream.requests:
        await asyncio.sleep(0.005)
    queued = asyncio.create_task(
        gateway.process(ProcessRequest(ASK, params, "one"), USER, None, "b")
    )
    await asyncio.sleep(0.1)
    queued.cancel()
    await asyncio.gather(queued, return_exceptions=True)
    await first
    for _ in range(100):
        if "RequestFailed" in story(log, "b"):
            break
        await asyncio.sleep(0.01)
    # Never admitted, so never started: received, routed, reserved, released, and cancelled.
    assert story(log, "b") == [
        "RequestReceived",
        "RouteDecided",
        "BudgetReserved",
        "BudgetSettled",
        "RequestFailed",
    ]
    settled, failed = (e.data for e in log.read_stream("request-b")[-2:])
    assert (settled["actual_pico"], settled["rule"]) == (0, "none")
    assert (failed["kind"], failed["status"], failed["cost_pico"]) == ("cancelled", 499, 0)


async def test_projections_skip_what_they_do_not_read(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    """Every projection declares its types; skipping the rest changes none of their states."""
    upstream.models["m"] = Behaviour(reply="Four.")
    gateway = await make_gateway([network_spec("m", upstream.base_url)])
    for _ in range(3):
        await gateway.process(ProcessRequest(ASK, CallParams(max_tokens=16), "m"), USER)
    events = list(log.read_all())
    for projection in all_projections():
        assert projection.types, projection.name
        wanted = [e for e in events if e.type in projection.types]
        assert fold(projection, wanted) == fold(projection, events), projection.name
