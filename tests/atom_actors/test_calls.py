"""Model calls through their actors against a fake OpenAI upstream: what each writes to the log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from atom_actors.calls import FLUSH_SECONDS, CallFailed
from atom_actors.events import request_stream
from atom_actors.providers import CallParams, Delta
from atom_actors.system import ActorSystem
from eventstore import EventStore
from tests.atom_actors.conftest import network_spec
from tests.fakes.faults import Behaviour, Fault
from tests.fakes.openai_server import FakeOpenAI

MESSAGES = [{"role": "user", "content": "What is two plus two?"}]
PARAMS = CallParams(max_tokens=20)


def types(log: EventStore, request_id: str) -> list[str]:
    return [e.type for e in log.read_stream(request_stream(request_id))]


async def test_a_call_writes_started_tokens_and_completed(
    log: EventStore, upstream: FakeOpenAI, make_system: Callable[..., ActorSystem]
) -> None:
    upstream.models["m"] = Behaviour(reply="Two plus two is four, as always.")
    system = make_system([network_spec("m", upstream.base_url)])
    seen: list[tuple[str, float]] = []
    result = await system.caller.call(
        "m", MESSAGES, PARAMS, request_id="r1", on_delta=lambda d, ms: seen.append((d.text, ms))
    )
    assert result.text == "Two plus two is four, as always."
    assert "".join(t for t, _ in seen) == result.text
    events = log.read_stream(request_stream("r1"))
    kinds = [e.type for e in events]
    assert kinds[0] == "ModelCallStarted" and kinds[-1] == "ModelCallCompleted"
    assert set(kinds[1:-1]) == {"TokensStreamed"}
    deltas = [d for e in events if e.type == "TokensStreamed" for d in e.data["deltas"]]
    assert "".join(d[0] for d in deltas) == result.text
    offsets = [d[1] for d in deltas]
    assert offsets == sorted(offsets) and len(deltas) == len(seen)
    assert all(len(e.data["deltas"]) <= 32 for e in events if e.type == "TokensStreamed")
    completed = events[-1].data
    assert completed["completion_tokens"] == result.completion_tokens > 0
    # 1 USD in and 2 USD out per million tokens, in pico-dollars.
    expected = result.prompt_tokens * 1_000_000 + result.completion_tokens * 2_000_000
    assert completed["cost_pico"] == result.cost_pico == expected
    assert completed["ttft_ms"] is not None and completed["latency_ms"] >= completed["ttft_ms"]
    assert all(e.correlation_id == "r1" for e in events)


async def test_running_calls_send_their_buffered_tokens_to_the_log_together(
    log: EventStore, upstream: FakeOpenAI, make_system: Callable[..., ActorSystem]
) -> None:
    upstream.models["m"] = Behaviour(
        reply=" ".join(f"w{i}" for i in range(20)), tokens_per_second=25
    )
    system = make_system([network_spec("m", upstream.base_url)])

    async def call(index: int) -> None:
        await asyncio.sleep(index * 0.025)  # started apart, so a timer each would fire apart
        await system.caller.call("m", MESSAGES, PARAMS, request_id=f"t{index}")

    started = time.monotonic()
    await asyncio.gather(*(call(i) for i in range(8)))
    elapsed = time.monotonic() - started
    # A commit stamps its events with one time: the tokens appended while the calls ran (not
    # the last ones, which go with each call's outcome) took a commit per tick, not per call.
    during: list[str] = []
    for index in range(8):
        events = log.read_stream(request_stream(f"t{index}"))
        ended = events[-1].recorded_at
        during += [
            e.recorded_at for e in events if e.type == "TokensStreamed" and e.recorded_at != ended
        ]
    assert len(during) >= 16
    assert len(set(during)) <= elapsed / FLUSH_SECONDS + 1


async def test_a_failed_call_writes_started_and_failed(
    log: EventStore, upstream: FakeOpenAI, make_system: Callable[..., ActorSystem]
) -> None:
    system = make_system([network_spec("m", upstream.base_url)])
    upstream.fail(Fault.http_error(429, retry_after="3"))
    with pytest.raises(CallFailed) as info:
        await system.caller.call("m", MESSAGES, PARAMS, request_id="r2")
    assert (info.value.kind, info.value.retryable, info.value.retry_after) == (
        "rate_limited", True, 3.0,
    )  # fmt: skip
    assert types(log, "r2") == ["ModelCallStarted", "ModelCallFailed"]
    failed = log.read_stream(request_stream("r2"))[-1].data
    assert failed["kind"] == "rate_limited" and failed["status"] == 429


async def test_a_cancelled_call_stops_upstream_and_is_recorded(
    log: EventStore, upstream: FakeOpenAI, make_system: Callable[..., ActorSystem]
) -> None:
    upstream.models["slow"] = Behaviour(reply="one two three four five six", tokens_per_second=5)
    system = make_system([network_spec("slow", upstream.base_url)])
    first = asyncio.Event()

    def on_delta(delta: Delta, ms: float) -> None:
        first.set()

    task = asyncio.create_task(
        system.caller.call("slow", MESSAGES, PARAMS, request_id="r3", on_delta=on_delta)
    )
    await asyncio.wait_for(first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await upstream.wait_for_disconnects()
    assert len(upstream.disconnects) == 1
    kinds = types(log, "r3")
    assert kinds[0] == "ModelCallStarted" and kinds[-1] == "ModelCallFailed"
    assert "TokensStreamed" in kinds
    failed = log.read_stream(request_stream("r3"))[-1].data
    assert failed["kind"] == "cancelled" and failed["completion_tokens"] >= 1
    # The slot was given back: the model takes the next call.
    upstream.models["slow"] = Behaviour(reply="ok")
    assert (await system.caller.call("slow", MESSAGES, PARAMS, request_id="r4")).text == "ok"


async def test_a_hung_model_does_not_delay_another(
    upstream: FakeOpenAI, make_system: Callable[..., ActorSystem]
) -> None:
    system = make_system(
        [network_spec("hung", upstream.base_url), network_spec("ok", upstream.base_url)]
    )
    upstream.fail(Fault.hang(), model="hung")
    hung = asyncio.create_task(system.caller.call("hung", MESSAGES, PARAMS, request_id="h"))
    for i in range(5):
        result = await asyncio.wait_for(
            system.caller.call("ok", MESSAGES, PARAMS, request_id=f"ok{i}"), 5
        )
        assert result.text
    assert not hung.done()
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung


async def test_calls_beyond_max_concurrency_queue(
    upstream: FakeOpenAI, make_system: Callable[..., ActorSystem]
) -> None:
    upstream.models["m"] = Behaviour(reply="a b c", first_token_delay=0.3)
    system = make_system([network_spec("m", upstream.base_url, max_concurrency=2)])
    calls = [
        asyncio.create_task(system.caller.call("m", MESSAGES, PARAMS, request_id=f"q{i}"))
        for i in range(5)
    ]
    await asyncio.sleep(0.15)
    status = await system.status("m")
    assert (status.in_flight, status.queued) == (2, 3)
    assert len(upstream.requests) == 2
    results = await asyncio.gather(*calls)
    assert [r.text for r in results] == ["a b c"] * 5
    assert (await system.status("m")).in_flight == 0


async def test_the_connection_pool_follows_max_concurrency_and_the_rest_wait_in_the_gate(
    upstream: FakeOpenAI, make_system: Callable[..., ActorSystem]
) -> None:
    # Past 100 (aiohttp's default pool) calls once waited for a connection, unseen by the gate.
    upstream.fail(Fault.hang(), model="m")
    spec = network_spec("m", upstream.base_url, max_concurrency=150, max_queue=5)
    system = make_system([spec])
    _, gate = system.directory.entry("m")
    calls = [
        asyncio.create_task(system.caller.call("m", MESSAGES, PARAMS, request_id=f"p{i}"))
        for i in range(155)
    ]
    async with asyncio.timeout(10):
        while len(upstream.requests) < 150 or gate.load()[1] < 5:
            await asyncio.sleep(0.01)
    assert len(upstream.requests) == 150
    status = await system.status("m")
    assert (status.in_flight, status.queued, status.peak_queued) == (150, 5, 5)
    with pytest.raises(CallFailed) as info:
        await system.caller.call("m", MESSAGES, PARAMS, request_id="refused")
    assert info.value.kind == "overloaded" and "with 5 queued" in info.value.message
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    assert gate.load() == (0, 0, 5)


async def test_calls_beyond_max_concurrency_are_refused_when_so_configured(
    upstream: FakeOpenAI, make_system: Callable[..., ActorSystem]
) -> None:
    upstream.models["m"] = Behaviour(reply="a", first_token_delay=0.3)
    spec = network_spec("m", upstream.base_url, max_concurrency=2, admission="refuse")
    system = make_system([spec])
    calls = [
        asyncio.create_task(system.caller.call("m", MESSAGES, PARAMS, request_id=f"x{i}"))
        for i in range(3)
    ]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, CallFailed)]
    assert len(refused) == 1 and refused[0].kind == "overloaded"
    assert "max_concurrency 2" in refused[0].message
    assert len(upstream.requests) == 2


async def test_repeated_failures_open_the_circuit(
    log: EventStore, upstream: FakeOpenAI, make_system: Callable[..., ActorSystem]
) -> None:
    system = make_system([network_spec("m", upstream.base_url)])
    upstream.fail(Fault.http_error(500), model="m")
    for i in range(5):
        with pytest.raises(CallFailed) as info:
            await system.caller.call("m", MESSAGES, PARAMS, request_id=f"f{i}")
        assert info.value.kind == "upstream_error"
    # The fifth failure reaches the actor as a message: the circuit opens once it is handled,
    # and is on the record before anyone is refused for it.
    for _ in range(200):
        if log.read_stream("model-m"):
            break
        await asyncio.sleep(0.01)
    with pytest.raises(CallFailed) as refused:
        await system.caller.call("m", MESSAGES, PARAMS, request_id="f5")
    assert refused.value.kind == "circuit_open"
    assert "circuit open after 5 failures" in refused.value.message
    assert len(upstream.requests) == 5
    log.wait_for(log.head())
    health = [e.data for e in log.read_stream("model-m")]
    assert health == [
        {"model": "m", "previous": "closed", "current": "open", "reason": "5 failures in a row"}
    ]


async def test_an_unknown_model_is_a_clear_error(make_system: Callable[..., ActorSystem]) -> None:
    system = make_system([])
    with pytest.raises(CallFailed) as info:
        await system.caller.call("nope", MESSAGES, PARAMS, request_id="u")
    assert info.value.kind == "unknown_model"
