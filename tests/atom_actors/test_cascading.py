"""The cascade online, against fake upstreams: kept at the first rung, climbed by each check,
stopped by the budget and by the deadline, every move on the record."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.cascade import Acceptance
from atom_actors.cost import cost_pico, prompt_size
from atom_actors.events import BudgetSet
from atom_actors.gateway import Gateway
from atom_actors.principal import Principal, Role
from atom_actors.providers import CallParams
from atom_actors.request import GatewayError, ProcessRequest
from atom_actors.snapshot import CascadeSpec, Strategy
from eventstore import EventStore
from replay.trace import build, render
from tests.atom_actors.conftest import network_spec
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI

MakeGateway = Callable[..., Awaitable[Gateway]]
ASK = [{"role": "user", "content": "What is 2 + 2?"}]
USER = Principal(key_id="key-1", role=Role.USER, tenant="acme")
NUMBER = AnswerFormat(AnswerKind.NUMBER)
VALID = Acceptance(learned=None)
"""Keep an answer that holds a number: a check that needs no history."""


def ladder(upstream: FakeOpenAI) -> list[Any]:
    """cheap, then mid: the ladder a cascade climbs; cheap2 is as cheap as cheap, no stronger."""
    return [
        network_spec(
            "cheap",
            upstream.base_url,
            input_usd_per_mtok=0.5,
            output_usd_per_mtok=1.0,
            quality_prior=0.6,
        ),
        network_spec(
            "cheap2",
            upstream.base_url,
            input_usd_per_mtok=0.6,
            output_usd_per_mtok=1.2,
            quality_prior=0.6,
        ),
        network_spec(
            "mid",
            upstream.base_url,
            input_usd_per_mtok=3.0,
            output_usd_per_mtok=15.0,
            quality_prior=0.8,
        ),
    ]


def cascade(acceptance: Acceptance | None = VALID, **options: Any) -> ProcessRequest:
    options.setdefault("params", CallParams(max_tokens=16))
    options.setdefault("answer_format", NUMBER)
    return ProcessRequest(ASK, strategy=Strategy.CASCADE, acceptance=acceptance, **options)


def stepped(log: EventStore, request_id: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in e.data.items() if k != "request_id"}
        for e in log.read_stream(f"request-{request_id}")
        if e.type == "CascadeStepped"
    ]


def asked(upstream: FakeOpenAI) -> list[str]:
    return [r.body["model"] for r in upstream.requests]


async def until(condition: Callable[[], bool]) -> None:
    """Wait until a fake upstream has seen what `condition` looks for."""
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def test_an_answer_the_checks_keep_is_the_first_rungs(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models.update(cheap=Behaviour(reply="#### 4"), mid=Behaviour(reply="#### 5"))
    gateway = await make_gateway(ladder(upstream))
    result = await gateway.process(cascade(), USER)
    assert (result.model, result.text, asked(upstream)) == ("cheap", "#### 4", ["cheap"])
    steps = stepped(log, result.request_id)
    assert [(s["action"], s["step"], s["models"]) for s in steps] == [
        ("call", 0, ["cheap"]),
        ("accept", 0, []),
    ]
    assert steps[0]["reason"] == "start"
    accepted = steps[1]
    assert (accepted["answer"], accepted["speaker"]) == ("4", "cheap")
    assert accepted["reason"] == "validity passed: a valid number answer"
    (reply,) = accepted["replies"]
    assert reply["member"] == "rung1:cheap" and (reply["answer"], reply["error"]) == ("4", None)
    assert accepted["cost_pico"] == result.cost_pico > 0
    assert list(result.cascade) == steps
    completed = log.read_stream(f"request-{result.request_id}")[-1].data
    assert (completed["strategy"], completed["escalations"]) == ("cascade", 0)
    # Savings are counted against the ladder's strongest model answering with the same tokens.
    mid = gateway.actors.specs["mid"]
    baseline = cost_pico(mid, result.prompt_tokens, result.completion_tokens)
    assert completed["baseline_pico"] == baseline > result.cost_pico


@pytest.mark.parametrize(
    ("case", "replies", "asking", "reason"),
    [
        (
            "validity",
            {"cheap": "I do not know"},
            cascade(),
            "escalate: validity failed: no number found",
        ),
        (
            "agreement",
            {"cheap": "#### 4", "cheap2": "#### 5"},
            cascade(Acceptance(agreement=1.0, learned=None), cascade=CascadeSpec(first=2)),
            "escalate: agreement failed: 0.50 of 2 replies agree (needs 1)",
        ),
        (
            "confidence",
            {"cheap": "#### 4"},
            cascade(
                Acceptance(validity=False, confidence=0.99, learned=None),
                params=CallParams(max_tokens=16, logprobs=True),
            ),
            "escalate: confidence failed: 0.923 (needs 0.99)",
        ),
        (
            "learned, with nothing scored yet",
            {"cheap": "#### 4"},
            cascade(Acceptance()),
            "escalate: learned failed: no acceptance model yet, none scored (needs 0.76)",
        ),
        (
            "a schema",
            {"cheap": '{"answer": 4}'},
            cascade(
                Acceptance(schema={"type": "object", "required": ["answer", "unit"]}, learned=None),
                answer_format=AnswerFormat(AnswerKind.JSON, "answer"),
            ),
            "escalate: validity failed: schema: $.unit is missing",
        ),
    ],
)
async def test_each_check_that_fails_sends_the_request_one_rung_up(
    log: EventStore,
    upstream: FakeOpenAI,
    make_gateway: MakeGateway,
    case: str,
    replies: dict[str, str],
    asking: ProcessRequest,
    reason: str,
) -> None:
    top = '{"answer": 4, "unit": "apples"}' if "schema" in case else "#### 4"
    upstream.models.update({m: Behaviour(reply=r) for m, r in replies.items()})
    upstream.models["mid"] = Behaviour(reply=top)
    gateway = await make_gateway(ladder(upstream))
    result = await gateway.process(asking, USER)
    assert (result.model, result.text) == ("mid", top)
    assert sorted(asked(upstream)) == sorted([*replies, "mid"])
    steps = stepped(log, result.request_id)
    assert [(s["action"], s["step"]) for s in steps] == [("call", 0), ("call", 1), ("accept", 1)]
    escalated = steps[1]
    assert escalated["reason"].startswith(reason)
    assert escalated["models"] == ["mid"]
    assert [r["model"] for r in escalated["replies"]] == list(replies)
    failed = [v for v in escalated["verdicts"] if v["passed"] is False]
    assert failed and failed[0]["check"] == case.split(",")[0].replace("a schema", "validity")
    assert steps[2]["reason"].startswith("top of the ladder") or "passed" in steps[2]["reason"]
    completed = log.read_stream(f"request-{result.request_id}")[-1].data
    assert (completed["escalations"], completed["model"]) == (1, "mid")
    assert completed["cost_pico"] == sum(s["cost_pico"] for s in steps) == result.cost_pico


async def test_the_learned_check_is_fitted_on_the_scored_answers_in_the_log(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    # cheap's worked answers hold; its guesses ("maybe 5") never do.
    gateway = await make_gateway(ladder(upstream))
    for reply in ["2 + 2 = 4 #### 4", "maybe 5"] * 6:
        upstream.models["cheap"] = Behaviour(reply=reply)
        named = ProcessRequest(
            ASK, CallParams(max_tokens=16), "cheap", expected="4", answer_format=NUMBER
        )
        answered = await gateway.process(named, USER)
    await gateway.projections.wait_until(answered.position, timeout=5)
    upstream.models["cheap"] = Behaviour(reply="2 + 2 = 4 #### 4")
    trusted = await gateway.process(cascade(Acceptance(validity=False, learned=0.6)), USER)
    assert trusted.model == "cheap" and gateway.acceptance.examples == 12
    (kept,) = [v for v in stepped(log, trusted.request_id)[-1]["verdicts"]]
    assert kept["check"] == "learned" and kept["passed"] and kept["value"] > 0.6
    # Without a cue, a guess from cheap is not trusted: the cascade asks mid.
    upstream.models["cheap"] = Behaviour(reply="maybe 5")
    doubted = await gateway.process(cascade(Acceptance(validity=False, learned=0.6)), USER)
    assert doubted.model == "mid"
    escalated = stepped(log, doubted.request_id)[1]
    assert escalated["reason"].startswith("escalate: learned failed: 0.")
    assert escalated["verdicts"][0]["value"] < 0.6


async def test_every_rungs_reply_is_scored_so_the_score_learns_from_what_it_turned_down(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models.update(cheap=Behaviour(reply="#### 5"), mid=Behaviour(reply="#### 4"))
    gateway = await make_gateway(ladder(upstream))
    result = await gateway.process(cascade(Acceptance(), expected="4"), USER)
    events = log.read_stream(f"request-{result.request_id}")
    kinds = [e.type for e in events if e.type != "TokensStreamed"]
    assert kinds == [
        "RequestReceived",
        "RouteDecided",
        "CascadeStepped",
        "BudgetReserved",
        "ModelCallStarted",
        "ModelCallCompleted",
        "BudgetSettled",
        "CascadeStepped",
        "BudgetReserved",
        "ModelCallStarted",
        "ModelCallCompleted",
        "BudgetSettled",
        "CascadeStepped",
        "ScoreRecorded",
        "ScoreRecorded",
        "RequestCompleted",
    ]
    received, decided = events[0].data, events[1].data
    assert received["cascade"] == {
        "first": 1,
        "samples": 1,
        "steps": None,
        "acceptance": Acceptance().to_dict(),
    }
    assert [r["models"] for r in decided["cascade"]["rungs"]] == [["cheap"], ["mid"]]
    scores = {e.data["model"]: e.data["score"] for e in events if e.type == "ScoreRecorded"}
    assert scores == {"cheap": 0.0, "mid": 1.0}
    await gateway.projections.wait_until(result.position, timeout=5)
    scored = gateway.projections.state("scored_calls")
    positions = [e.position for e in events if e.type == "ScoreRecorded"]
    assert scored == {"count": 2, "recent": positions}
    orchestration = gateway.projections.state("orchestration")["strategies"]["cascade"]
    assert (orchestration["requests"], orchestration["escalations"]) == (1, 1)
    assert orchestration["cost_pico"] == result.cost_pico


async def budget_for(gateway: Gateway, log: EventStore, limit_pico: int) -> None:
    await log.append_async(
        "budget-global", [BudgetSet(scope="global", limit_pico=limit_pico, period="total").new()]
    )
    await gateway.projections.wait_until(log.head(), timeout=5)


@pytest.mark.parametrize(("cheap", "outcome"), [("#### 4", "cheap"), ("no idea", 402)])
async def test_a_rung_the_budget_no_longer_fits_is_not_started(
    log: EventStore,
    upstream: FakeOpenAI,
    make_gateway: MakeGateway,
    cheap: str,
    outcome: str | int,
) -> None:
    upstream.models.update(
        cheap=Behaviour(reply=cheap, first_token_delay=0.3),
        mid=Behaviour(reply="#### 4", first_token_delay=0.6),
    )
    gateway = await make_gateway(ladder(upstream))
    prompt = prompt_size(ASK)
    one, two = (gateway.calls.reservation(m, prompt, 16) for m in ("cheap", "mid"))
    # The whole ladder fits when the cascade is routed; a rival's reservation for mid, made
    # while cheap answers, leaves no room for the cascade's own.
    await budget_for(gateway, log, one + two + two // 2)
    climbing = asyncio.create_task(gateway.process(cascade(Acceptance()), USER))
    await until(lambda: "cheap" in asked(upstream))
    rival = asyncio.create_task(
        gateway.process(ProcessRequest(ASK, CallParams(max_tokens=16), "mid"), USER)
    )
    if outcome == 402:
        with pytest.raises(GatewayError) as refused:
            await climbing
        assert refused.value.status == 402 and "budget 'global'" in refused.value.message
        request_id = refused.value.request_id or ""
    else:
        result = await climbing
        assert (result.model, result.text) == ("cheap", "#### 4")
        request_id = result.request_id
    await rival
    assert asked(upstream).count("mid") == 1, "only the rival called mid"
    stop = stepped(log, request_id)[-1]
    assert stop["action"] == "stop" and stop["models"] == ["mid"]
    assert stop["reason"].startswith("rung 2 not started: budget 'global': this call may cost")
    assert stop["speaker"] == (None if outcome == 402 else "cheap")
    kinds = [e.type for e in log.read_stream(f"request-{request_id}")]
    assert kinds.count("BudgetReserved") == kinds.count("BudgetSettled") == 1
    assert kinds[-1] == ("RequestFailed" if outcome == 402 else "RequestCompleted")
    assert ("BudgetRejected" in kinds) == (outcome == 402)


@pytest.mark.parametrize(("cheap", "outcome"), [("#### 4", "cheap"), ("no idea", 504)])
async def test_a_rung_the_deadline_leaves_no_time_for_is_not_started(
    log: EventStore,
    upstream: FakeOpenAI,
    make_gateway: MakeGateway,
    cheap: str,
    outcome: str | int,
) -> None:
    # Unobserved, a model is expected to take 500 ms to its first token and 16 tokens at 50/s:
    # 820 ms, which fits a deadline of 1 s at the start and not after cheap's 0.4 s.
    upstream.models.update(cheap=Behaviour(reply=cheap, first_token_delay=0.4))
    gateway = await make_gateway(ladder(upstream))
    request = cascade(Acceptance(), deadline_ms=1000)
    if outcome == 504:
        with pytest.raises(GatewayError) as late:
            await gateway.process(request, USER)
        assert late.value.status == 504 and "rung 2 not started: deadline" in late.value.message
        request_id = late.value.request_id or ""
    else:
        result = await gateway.process(request, USER)
        assert (result.model, result.text) == ("cheap", "#### 4")
        request_id = result.request_id
    assert asked(upstream) == ["cheap"]
    stop = stepped(log, request_id)[-1]
    assert stop["action"] == "stop"
    assert stop["reason"].startswith("rung 2 not started: deadline: expected 820 ms, ")
    assert stop["reason"].endswith(
        "ms left of deadline_ms 1000" + ("" if outcome == 504 else "; cheap's answer stands")
    )


async def test_a_rung_that_runs_past_the_deadline_leaves_the_answer_below_it(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models.update(
        cheap=Behaviour(reply="#### 4"), mid=Behaviour(reply="#### 4", first_token_delay=5)
    )
    gateway = await make_gateway(ladder(upstream))
    result = await gateway.process(cascade(Acceptance(), deadline_ms=1000), USER)
    assert result.model == "cheap"
    steps = stepped(log, result.request_id)
    assert [s["action"] for s in steps] == ["call", "call", "accept", "stop"]
    assert steps[2]["replies"][0]["error"].startswith("MissedDeadline")
    assert steps[3]["reason"] == "the top rung gave no answer; cheap's answer stands"


async def test_a_failed_rung_is_retried_then_climbed_past(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    from tests.fakes.faults import Fault

    upstream.models["mid"] = Behaviour(reply="#### 4")
    upstream.fail(Fault.http_error(400), model="cheap")
    gateway = await make_gateway(ladder(upstream))
    result = await gateway.process(cascade(), USER)
    assert result.model == "mid"
    escalated = stepped(log, result.request_id)[1]
    assert escalated["replies"][0]["error"].startswith("bad_request")
    assert escalated["reason"] == "escalate: validity failed: no number found"


async def test_the_trace_tells_each_move_with_its_checks(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models.update(cheap=Behaviour(reply="#### 5"), mid=Behaviour(reply="#### 4"))
    gateway = await make_gateway(ladder(upstream))
    result = await gateway.process(cascade(Acceptance(), expected="4"), USER)
    text = render(build(log.read_stream(f"request-{result.request_id}"), now=time.time()))
    # Each line without its time and log position.
    lines = [re.sub(r"^\s*[\d.]+ ms\s+#\d+\s+", "", line).strip() for line in text.splitlines()]

    def after(prefix: str, start: int = 0) -> int:
        return next(i for i in range(start, len(lines)) if lines[i].startswith(prefix))

    at = after("route cascade chose cheap: cheap then mid")
    assert lines[at + 1].startswith("candidate cheap")
    at = after("rung 1: cheap, reserves $", at)
    assert lines[at + 1].startswith("rung 2: mid, reserves $")
    at = after("cascade calls rung 1 (cheap): start", at)
    at = after("cascade calls rung 2 (mid): escalate: learned failed: no acceptance model", at)
    assert lines[at + 1 : at + 4] == [
        'rung1:cheap answered "5"',
        "check validity passed: a valid number answer",
        "check learned failed: no acceptance model yet, none scored (needs 0.76)",
    ]
    assert lines[at + 4].startswith("the rung cost $0.00000")
    at = after('cascade keeps rung 2\'s answer "4" from mid: top of the ladder', at)
    at = after("completed by mid in ", at)
    assert lines[at].endswith("2 attempts, 0 fallbacks, 1 escalation")
