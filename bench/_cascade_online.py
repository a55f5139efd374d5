"""The cascade's online overhead: what a request pays in the gateway beyond its calls.

An in-process gateway (SQLite log with the default durability, full; live projections; the
event loop `atom serve` runs, uvloop) in front of the tests' fake OpenAI upstream, in a process
of its own, answering at once. Requests go one
at a time, each timed by the CPU of the event loop's thread alone (`time.thread_time`): not the
upstream's, nor the log writer's (which commits, with its fsync, on its own thread). A
`cost_first` request to the cheap model (one call) alternates with a cascade request that the
learned check keeps at the first rung (the same one call to the same model): the difference of
their medians is the cascade's own work for one step: its decisions and checks (the learned
score's features of the reply), the learner's check, two CascadeStepped events more. Before, 200
scored answers in the log give the learned check a model to judge with, as a running gateway
would have.

`online_figures()` also measures the pieces beside the request: a refit on HISTORY examples,
and the ScoredCalls projection's fold of one score.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from api import eventloop
from atom_actors.acceptance import ScoredRung, fit_acceptance
from atom_actors.acceptance_learner import HISTORY
from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.cascade import Acceptance, Attempt, view_of
from atom_actors.catalog import ModelSpec
from atom_actors.events import ScoreRecorded
from atom_actors.gateway import Gateway
from atom_actors.principal import Principal, Role
from atom_actors.projections import ScoredCalls, all_projections
from atom_actors.providers import CallParams, make_provider
from atom_actors.request import ProcessRequest
from atom_actors.snapshot import Strategy
from atom_actors.system import ActorSystem
from eventstore import LiveProjections, RecordedEvent, SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "ATOM_BENCH_UPSTREAM_KEY"
ASK = [{"role": "user", "content": "What is 2 + 2? Show your working."}]
REPLY = "2 + 2 = 4. #### 4"
USER = Principal(key_id="bench", role=Role.USER)
NUMBER = AnswerFormat(AnswerKind.NUMBER)


@contextmanager
def _upstream() -> Iterator[str]:
    """The fake OpenAI upstream in its own process, answering REPLY at once: its base URL."""
    command = [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--reply", REPLY]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(30)


def _spec(name: str, base_url: str, price: float, prior: float) -> ModelSpec:
    return ModelSpec(
        name=name,
        provider="openai",
        model=name,
        capabilities=frozenset({"text_generation"}),
        input_usd_per_mtok=price,
        output_usd_per_mtok=2 * price,
        context_window=8192,
        max_concurrency=64,
        quality_prior=prior,
        base_url=base_url,
        api_key_env=KEY_ENV,
    )


async def _loop_us(gateway: Gateway, request: ProcessRequest) -> float:
    """The loop thread's CPU for one request, in microseconds."""
    started = time.thread_time_ns()
    await gateway.process(request, USER)
    return (time.thread_time_ns() - started) / 1000


async def _requests(base_url: str, requests: int) -> dict[str, Any]:
    specs = [_spec("cheap", base_url, 0.5, 0.6), _spec("mid", base_url, 5.0, 0.9)]
    with tempfile.TemporaryDirectory() as directory:
        store = SQLiteStore(str(Path(directory) / "bench.db"))
        system = ActorSystem(
            store, specs, factory=lambda spec: make_provider(spec, {KEY_ENV: "sk-bench"})
        )
        system.start(asyncio.get_running_loop())
        projections = LiveProjections(store, all_projections())
        await projections.start()
        gateway = Gateway(store, system, projections, env={KEY_ENV: "sk-bench"})
        try:
            params = CallParams(max_tokens=16)
            scored = ProcessRequest(ASK, params, "cheap", expected="4", answer_format=NUMBER)
            for _ in range(200):
                last = await gateway.process(scored, USER)
            await projections.wait_until(last.position, timeout=10)
            single = ProcessRequest(
                ASK, params, strategy=Strategy.COST_FIRST, answer_format=NUMBER, use_cache=False
            )
            cascade = ProcessRequest(
                ASK,
                params,
                strategy=Strategy.CASCADE,
                acceptance=Acceptance(),
                answer_format=NUMBER,
                use_cache=False,
            )
            kept = await gateway.process(cascade, USER)
            assert kept.model == "cheap" and len(kept.cascade) == 2, kept.cascade
            # One of each in turn, so that the machine's load weighs on both alike.
            singles: list[float] = []
            cascades: list[float] = []
            for _ in range(requests):
                singles.append(await _loop_us(gateway, single))
                cascades.append(await _loop_us(gateway, cascade))
            examples = gateway.acceptance.examples
        finally:
            await projections.stop()
            await system.aclose()
            store.close()
    single_us, cascade_us = statistics.median(singles), statistics.median(cascades)
    return {
        "single_call_request_loop_us": round(single_us, 1),
        "cascade_one_step_request_loop_us": round(cascade_us, 1),
        "cascade_step_overhead_us": round(cascade_us - single_us, 1),
        "cascade_overhead_requests": len(cascades),
        "acceptance_examples": examples,
    }


def _median_us(call: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - started)
    return round(statistics.median(samples) / 1000, 2)


def _refit_s() -> float:
    """A refit on HISTORY examples of worked and guessed replies."""
    history = []
    for i in range(HISTORY):
        text = REPLY if i % 3 else f"maybe {i}"
        rung = view_of(ASK[0]["content"], NUMBER, 0, [Attempt(step=0, model="cheap", text=text)])
        history.append(ScoredRung(rung=rung, score=float(i % 3 != 0)))
    started = time.process_time()
    fit_acceptance(history)
    return round(time.process_time() - started, 3)


def _fold_us() -> float:
    """The ScoredCalls projection's fold of one reference score."""
    projection = ScoredCalls()
    score = ScoreRecorded(
        request_id="r",
        subject="c",
        subject_kind="call",
        model="cheap",
        capability=None,
        scorer="reference",
        scorer_version="1",
        score=1.0,
    )
    event = RecordedEvent(1, "request-r", 0, "e", score.TYPE, 1, score.data(), {}, "", "")
    state = projection.initial()
    return _median_us(lambda: projection.apply(state, event), 20_000)


def online_figures(requests: int = 1000) -> dict[str, Any]:
    """The cascade's per-request overhead in the gateway, its refit and its projection's fold."""
    loop = eventloop.resolve("auto")
    with _upstream() as base_url:
        figures = eventloop.run(_requests(base_url, requests), loop)
    return {
        **figures,
        "cascade_overhead_loop": loop,
        "acceptance_refit_s": _refit_s(),
        "acceptance_refit_examples": HISTORY,
        "scored_calls_fold_us": _fold_us(),
    }
