"""Supervision: crashed model actors restart with backoff, then are marked down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from atom_actors.calls import CallFailed
from atom_actors.catalog import ModelSpec
from atom_actors.providers import CallParams
from atom_actors.supervisor import RestartPolicy
from atom_actors.system import ActorSystem
from eventstore import EventStore
from tests.fakes.providers import Script, ScriptedFactory

MESSAGES = [{"role": "user", "content": "hi"}]
PARAMS = CallParams(max_tokens=8)
FAST = RestartPolicy(max_restarts=2, window_s=60, base_delay_s=0.05, max_delay_s=1.0)


def local_spec(name: str = "local", **options: object) -> ModelSpec:
    values: dict[str, object] = {
        "name": name,
        "provider": "llamacpp",
        "model": name,
        "capabilities": frozenset({"text_generation"}),
        "input_usd_per_mtok": 0.0,
        "output_usd_per_mtok": 0.0,
        "context_window": 4096,
        "max_concurrency": 1,
        "path": "/dev/null",
    }
    values.update(options)
    return ModelSpec(**values)  # type: ignore[arg-type]


def restarts(log: EventStore, model: str) -> list[dict[str, object]]:
    log.wait_for(log.head())
    return [e.data for e in log.read_stream(f"model-{model}")]


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_crashed_actor_restarts_with_backoff_and_serves_again(
    log: EventStore, make_system: Callable[..., ActorSystem]
) -> None:
    scripts = ScriptedFactory()
    system = make_system([local_spec()], factory=scripts, restart_policy=FAST)
    assert (await system.caller.call("local", MESSAGES, PARAMS, request_id="a")).text == (
        "Hello world!"
    )
    scripts.script = Script(crash_after=1)
    with pytest.raises(CallFailed, match="crashed"):
        await system.caller.call("local", MESSAGES, PARAMS, request_id="b")
    scripts.script = Script()
    await wait_until(lambda: len(scripts.built) == 2)
    await wait_until(lambda: system.directory.models().get("local") == "running")
    assert (await system.caller.call("local", MESSAGES, PARAMS, request_id="c")).text == (
        "Hello world!"
    )
    assert scripts.built[0].closed, "the crashed actor's provider was closed"
    (restarted,) = restarts(log, "local")
    assert restarted["restarts"] == 1 and restarted["delay_s"] == 0.05
    assert "scripted crash" in str(restarted["error"])


async def test_past_its_restart_budget_a_model_is_marked_down(
    log: EventStore, make_system: Callable[..., ActorSystem]
) -> None:
    scripts = ScriptedFactory()
    scripts.script = Script(crash_after=0)
    system = make_system([local_spec()], factory=scripts, restart_policy=FAST)
    for i in range(3):
        # The i-th actor has loaded its provider and answers for the model.

        def serving(i: int = i) -> bool:
            return (
                len(scripts.built) == i + 1 and system.directory.models().get("local") == "running"
            )

        await wait_until(serving)
        with pytest.raises(CallFailed):
            await system.caller.call("local", MESSAGES, PARAMS, request_id=f"r{i}")
    await wait_until(lambda: "down" in system.directory.models().get("local", ""))
    with pytest.raises(CallFailed) as info:
        await system.caller.call("local", MESSAGES, PARAMS, request_id="after")
    assert info.value.kind == "down"
    assert "3 crashes within 60s" in info.value.message
    events = restarts(log, "local")
    assert [e.get("restarts") for e in events[:2]] == [1, 2]
    assert [e.get("delay_s") for e in events[:2]] == [0.05, 0.1]
    assert events[-1]["current"] == "down"
    assert len(scripts.built) == 3


async def test_a_model_that_cannot_load_is_retried_then_marked_down(
    log: EventStore, make_system: Callable[..., ActorSystem]
) -> None:
    scripts = ScriptedFactory()
    scripts.fail_loading = True
    system = make_system([local_spec()], factory=scripts, restart_policy=FAST)
    await wait_until(lambda: "down" in system.directory.models().get("local", ""))
    assert "not a GGUF file" in system.directory.models()["local"]
    assert restarts(log, "local")[-1]["current"] == "down"


async def test_calls_in_flight_on_a_crashing_actor_fail_within_a_second(
    make_system: Callable[..., ActorSystem],
) -> None:
    scripts = ScriptedFactory()
    scripts.script = Script(tokens=("a", "b", "c"), stall_after=1)
    system = make_system([local_spec(max_concurrency=2)], factory=scripts, restart_policy=FAST)
    stalled = asyncio.create_task(system.caller.call("local", MESSAGES, PARAMS, request_id="s"))
    await wait_until(lambda: len(scripts.built[0].calls) + len(scripts.built[1].calls) == 1)
    scripts.script = Script(crash_after=0)
    with pytest.raises(CallFailed):
        await system.caller.call("local", MESSAGES, PARAMS, request_id="boom")
    started = time.monotonic()
    with pytest.raises(CallFailed) as info:
        await asyncio.wait_for(stalled, 5)
    assert time.monotonic() - started < 1.0
    assert "crashed" in info.value.message


async def test_a_local_model_runs_on_its_actor_worker_thread(
    log: EventStore, make_system: Callable[..., ActorSystem]
) -> None:
    scripts = ScriptedFactory()
    scripts.script = Script(tokens=("x",) * 40, seconds_per_token=0.001)
    system = make_system([local_spec()], factory=scripts)
    seen: list[str] = []
    result = await system.caller.call(
        "local", MESSAGES, PARAMS, request_id="t", on_delta=lambda d, _ms: seen.append(d.text)
    )
    assert result.text == "x" * 40 and len(seen) == 40
    streamed = [e for e in log.read_stream("request-t") if e.type == "TokensStreamed"]
    sizes = [len(e.data["deltas"]) for e in streamed]
    assert sum(sizes) == 40 and max(sizes) <= 32, "at most 32 tokens an event"
    assert [e.data["seq"] for e in streamed] == [sum(sizes[:i]) for i in range(len(sizes))]


async def test_slow_tokens_are_logged_within_50_ms_each(
    log: EventStore, make_system: Callable[..., ActorSystem]
) -> None:
    scripts = ScriptedFactory()
    scripts.script = Script(tokens=("a", "b", "c"), seconds_per_token=0.25)
    system = make_system([local_spec()], factory=scripts)
    await system.caller.call("local", MESSAGES, PARAMS, request_id="slow")
    streamed = [e for e in log.read_stream("request-slow") if e.type == "TokensStreamed"]
    # A quarter of a second apart, no token waits for the next one to be written.
    assert [e.data["deltas"][0][0] for e in streamed] == ["a", "b", "c"]


async def test_a_local_model_whose_file_is_missing_gets_no_actor(
    log: EventStore, make_system: Callable[..., ActorSystem]
) -> None:
    scripts = ScriptedFactory()
    system = make_system([local_spec(path="/nowhere/model.gguf")], factory=scripts)
    assert scripts.built == []
    with pytest.raises(CallFailed) as info:
        await system.caller.call("local", MESSAGES, PARAMS, request_id="m")
    assert info.value.kind == "down" and "/nowhere/model.gguf not found" in info.value.message
    assert restarts(log, "local") == [], "no crash, so nothing to restart"


async def test_a_local_model_is_held_to_its_first_token_and_total_timeouts(
    log: EventStore, make_system: Callable[..., ActorSystem]
) -> None:
    scripts = ScriptedFactory()
    scripts.script = Script(tokens=("a", "b"), stall_after=0)
    spec = local_spec(timeout_first_token_s=0.3, timeout_total_s=5.0)
    system = make_system([spec], factory=scripts)
    with pytest.raises(CallFailed) as first:
        await system.caller.call("local", MESSAGES, PARAMS, request_id="t1")
    assert (first.value.kind, first.value.message) == (
        "timeout", "local: no first token within 0.3s",
    )  # fmt: skip
    scripts.built[0].release.set()
    scripts.script = Script(tokens=("a",) * 20, seconds_per_token=0.05)
    slow = local_spec(name="slow", timeout_first_token_s=2.0, timeout_total_s=0.3)
    system = make_system([slow], factory=scripts)
    with pytest.raises(CallFailed) as total:
        await system.caller.call("slow", MESSAGES, PARAMS, request_id="t2")
    assert total.value.message == "slow: no answer within 0.3s"
    kinds = [e.data["kind"] for e in log.read_all() if e.type == "ModelCallFailed"]
    assert kinds == ["timeout", "timeout"]
