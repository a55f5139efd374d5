"""The gateway end to end against fake upstreams: routing, fallbacks, budgets, cache, ensembles."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.events import BudgetSet
from atom_actors.gateway import Gateway
from atom_actors.principal import Principal, Role
from atom_actors.providers import CallParams
from atom_actors.request import GatewayError, ProcessRequest
from atom_actors.snapshot import EnsembleMethod, EnsembleSpec, Strategy
from eventstore import EventStore
from tests.atom_actors.conftest import network_spec, story
from tests.fakes.faults import Behaviour, Fault
from tests.fakes.openai_server import FakeOpenAI

MakeGateway = Callable[..., Awaitable[Gateway]]
ASK = [{"role": "user", "content": "What is 2 + 2?"}]
USER = Principal(key_id="key-1", role=Role.USER, tenant="acme")


def specs(upstream: FakeOpenAI, **prices: tuple[float, float]) -> list[Any]:
    return [
        network_spec(name, upstream.base_url, input_usd_per_mtok=i, output_usd_per_mtok=o)
        for name, (i, o) in prices.items()
    ]


async def test_a_request_to_a_named_model_is_on_the_record_in_order(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models["cheap"] = Behaviour(reply="Four.")
    gateway = await make_gateway(specs(upstream, cheap=(1.0, 2.0)))
    result = await gateway.process(ProcessRequest(ASK, CallParams(max_tokens=16), "cheap"), USER)
    assert result.text == "Four." and result.model == "cheap"
    kinds = story(log, result.request_id)
    assert kinds[:4] == ["RequestReceived", "RouteDecided", "BudgetReserved", "ModelCallStarted"]
    assert kinds[-3:] == ["ModelCallCompleted", "BudgetSettled", "RequestCompleted"]
    # Acknowledged means committed: the last event is at the position the result names.
    assert log.read_stream(f"request-{result.request_id}")[-1].position == result.position
    completed = log.read_stream(f"request-{result.request_id}")[-1].data
    assert completed["cost_pico"] == result.cost_pico > 0
    assert completed["tenant"] == "acme"


async def test_cost_first_picks_the_cheapest_and_says_why(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway(specs(upstream, dear=(30.0, 60.0), cheap=(0.5, 1.0), mid=(3, 15)))
    result = await gateway.process(
        ProcessRequest(ASK, CallParams(max_tokens=16), strategy=Strategy.COST_FIRST), USER
    )
    assert result.model == "cheap"
    (decided,) = [
        e for e in log.read_stream(f"request-{result.request_id}") if e.type == "RouteDecided"
    ]
    assert decided.data["order"] == ["cheap", "mid", "dear"]
    assert "cost_first" in decided.data["reason"]
    completed = log.read_stream(f"request-{result.request_id}")[-1].data
    assert completed["baseline_pico"] > completed["cost_pico"], "savings against the dearest"


async def test_a_failing_model_is_retried_then_the_next_one_answers(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models["backup"] = Behaviour(reply="Four, from the backup.")
    upstream.fail(Fault.http_error(500), model="cheap")
    gateway = await make_gateway(specs(upstream, cheap=(0.5, 1.0), backup=(3.0, 6.0)))
    result = await gateway.process(
        ProcessRequest(ASK, CallParams(max_tokens=16), strategy=Strategy.COST_FIRST), USER
    )
    assert result.model == "backup" and result.text == "Four, from the backup."
    assert [(a.model, a.attempt, a.outcome) for a in result.attempts] == [
        ("cheap", 1, "upstream_error"),
        ("cheap", 2, "upstream_error"),
        ("cheap", 3, "upstream_error"),
        ("backup", 1, "ok"),
    ]
    events = log.read_stream(f"request-{result.request_id}")
    calls = [(e.type, e.data["model"], e.data["attempt"]) for e in events if "ModelCall" in e.type]
    assert calls == [
        ("ModelCallStarted", "cheap", 1), ("ModelCallFailed", "cheap", 1),
        ("ModelCallStarted", "cheap", 2), ("ModelCallFailed", "cheap", 2),
        ("ModelCallStarted", "cheap", 3), ("ModelCallFailed", "cheap", 3),
        ("ModelCallStarted", "backup", 1), ("ModelCallCompleted", "backup", 1),
    ]  # fmt: skip
    assert events[-1].data["fallbacks"] == 3
    settled = [e.data["actual_pico"] for e in events if e.type == "BudgetSettled"]
    assert settled[:3] == [0, 0, 0] and settled[3] == result.cost_pico


async def test_a_rate_limited_call_waits_retry_after_and_succeeds(
    upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.fail(Fault.http_error(429, retry_after="0.2"))
    gateway = await make_gateway(specs(upstream, only=(1.0, 1.0)))
    started = asyncio.get_running_loop().time()
    result = await gateway.process(ProcessRequest(ASK, CallParams(max_tokens=8), "only"), USER)
    assert [a.outcome for a in result.attempts] == ["rate_limited", "ok"]
    assert asyncio.get_running_loop().time() - started >= 0.2


async def test_every_model_failing_is_a_502_naming_what_was_tried(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.fail(Fault.http_error(400))
    gateway = await make_gateway(specs(upstream, only=(1.0, 1.0)))
    with pytest.raises(GatewayError) as info:
        await gateway.process(ProcessRequest(ASK, CallParams(max_tokens=8), "only"), USER)
    assert info.value.status == 502
    assert len(info.value.tried) == 1 and info.value.tried[0].startswith("only#1: bad_request")
    assert story(log, info.value.request_id or "")[-1] == "RequestFailed"


async def test_a_deadline_ends_a_hung_request_with_504(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.fail(Fault.hang(), model="slow")
    gateway = await make_gateway(specs(upstream, slow=(1.0, 1.0)))
    with pytest.raises(GatewayError) as info:
        await gateway.process(
            ProcessRequest(ASK, CallParams(max_tokens=8), "slow", deadline_ms=1000), USER
        )
    assert info.value.status == 504 and info.value.kind == "timeout"
    failed = log.read_stream(f"request-{info.value.request_id}")[-1]
    assert failed.type == "RequestFailed" and failed.data["status"] == 504


async def test_an_unknown_model_is_404(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway([])
    with pytest.raises(GatewayError) as info:
        await gateway.process(ProcessRequest(ASK, model="nope"), USER)
    assert (info.value.status, info.value.field) == (404, "model")


async def test_a_budget_is_never_overspent_by_concurrent_requests(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models["m"] = Behaviour(reply="a b c", first_token_delay=0.02)
    gateway = await make_gateway(specs(upstream, m=(10.0, 30.0)))
    # A reservation here is about 20 prompt tokens x 10 + 50 x 30 USD/Mtok = 0.0017 USD.
    limit_pico = 8_000_000_000  # 0.008 USD: room for four reservations at a time
    await log.append_async(
        "budget-global", [BudgetSet(scope="global", limit_pico=limit_pico, period="total").new()]
    )
    await gateway.projections.wait_until(log.head(), timeout=5)
    outcomes = await asyncio.gather(
        *(
            gateway.process(ProcessRequest(ASK, CallParams(max_tokens=50), "m"), USER)
            for _ in range(50)
        ),
        return_exceptions=True,
    )
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, GatewayError)]
    assert len(answered) + len(refused) == 50
    assert answered and refused and all(e.status == 402 for e in refused)
    settled = sum(e.data["actual_pico"] for e in log.read_all() if e.type == "BudgetSettled")
    assert settled == sum(o.cost_pico for o in answered) <= limit_pico


async def test_deterministic_answers_come_from_the_cache_per_tenant(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models["m"] = Behaviour(reply="Cached four.")
    gateway = await make_gateway(specs(upstream, m=(1.0, 1.0)))
    request = ProcessRequest(ASK, CallParams(max_tokens=8, temperature=0.0), "m")
    first = await gateway.process(request, USER)
    await gateway.projections.wait_until(first.position, timeout=5)
    streamed: list[str] = []
    second = await gateway.process(request, USER, lambda _m, text, _ms: streamed.append(text))
    assert second.cached and second.text == first.text and second.cost_pico == 0
    assert "".join(streamed) == first.text
    assert len(upstream.requests) == 1
    assert story(log, second.request_id) == ["RequestReceived", "CacheHit", "RequestCompleted"]
    other_tenant = await gateway.process(
        request, Principal(key_id="key-2", role=Role.USER, tenant="globex")
    )
    assert not other_tenant.cached and len(upstream.requests) == 2
    # A key without a tenant is a tenancy of its own: it shares no answers with another.
    alone = [Principal(key_id=k, role=Role.USER) for k in ("solo-1", "solo-2")]
    answers = []
    for who in (*alone, alone[0]):
        answers.append(await gateway.process(request, who))
        await gateway.projections.wait_until(answers[-1].position, timeout=5)
    assert [a.cached for a in answers] == [False, False, True]
    bypass = ProcessRequest(ASK, CallParams(max_tokens=8, temperature=0.0), "m", use_cache=False)
    assert not (await gateway.process(bypass, USER)).cached


async def test_majority_vote_over_three_models_leaves_out_a_failure(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models.update(
        a=Behaviour(reply="The answer is 4"), b=Behaviour(reply="4"), c=Behaviour(reply="5")
    )
    upstream.fail(Fault.http_error(400), model="d")
    gateway = await make_gateway(specs(upstream, a=(1, 1), b=(1, 1), c=(1, 1), d=(1, 1)))
    ensemble = EnsembleSpec(EnsembleMethod.MAJORITY_VOTE, members=("a", "b", "c", "d"))
    request = ProcessRequest(
        ASK, CallParams(max_tokens=8), ensemble=ensemble,
        answer_format=AnswerFormat(AnswerKind.NUMBER),
    )  # fmt: skip
    result = await gateway.process(request, USER)
    assert result.ensemble is not None
    assert result.ensemble["normalized"] == "4" and result.ensemble["voters"] == 3
    assert result.ensemble["agreement"] == pytest.approx(2 / 3)
    assert [m["member"] for m in result.members if m["error"]] == ["d#4"]
    kinds = story(log, result.request_id)
    assert kinds.count("ModelCallStarted") == 4 and "EnsembleCombined" in kinds
    scores = [
        e.data for e in log.read_stream(f"request-{result.request_id}") if e.type == "ScoreRecorded"
    ]
    assert sorted((s["model"], s["score"]) for s in scores) == [("a", 1.0), ("b", 1.0), ("c", 0.0)]


async def test_samples_of_one_model_differ_by_seed(
    upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway(specs(upstream, solo=(1, 1)))
    ensemble = EnsembleSpec(EnsembleMethod.CONSENSUS, members=("solo",), samples=3)
    result = await gateway.process(
        ProcessRequest(ASK, CallParams(max_tokens=8, seed=10), ensemble=ensemble), USER
    )
    assert result.ensemble is not None and result.ensemble["voters"] == 3
    assert sorted(r.body["seed"] for r in upstream.requests) == [10, 11, 12]


async def test_reference_scores_teach_quality_first_which_model_is_right(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models.update(wrong=Behaviour(reply="5"), right=Behaviour(reply="4"))
    wrong = network_spec("wrong", upstream.base_url, quality_prior=0.9)
    right = network_spec("right", upstream.base_url, quality_prior=0.6)
    gateway = await make_gateway([wrong, right])
    number = AnswerFormat(AnswerKind.NUMBER)
    chosen = []
    for _ in range(12):
        result = await gateway.process(
            ProcessRequest(ASK, CallParams(max_tokens=8), expected="4", answer_format=number),
            USER,
        )
        chosen.append(result.model)
        await gateway.projections.wait_until(result.position, timeout=5)
    assert chosen[0] == "wrong", "the prior decides before there is evidence"
    assert chosen[-1] == "right", "the scores moved quality_first"
    performance = gateway.projections.state("performance")["models"]
    assert performance["wrong"]["quality"]["text_generation"][0] == 0.0


async def test_a_judge_grades_after_the_answer_without_delaying_it(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models.update(
        m=Behaviour(reply="4"), judge=Behaviour(reply="Fair. Score: 8", first_token_delay=0.4)
    )
    gateway = await make_gateway(specs(upstream, m=(1, 1), judge=(1, 1)), judge_model="judge")
    result = await gateway.process(ProcessRequest(ASK, CallParams(max_tokens=8), "m"), USER)

    def scores() -> list[dict[str, Any]]:
        stream = log.read_stream(f"request-{result.request_id}")
        return [e.data for e in stream if e.type == "ScoreRecorded"]

    assert scores() == [], "the answer went back before the judge spoke"
    await gateway.drain()
    (judged,) = scores()
    assert (judged["scorer"], judged["score"], judged["model"]) == ("judge", 0.8, "m")
    judge_prompt = upstream.requests[-1].body["messages"]
    assert (
        judge_prompt[0]["role"] == "system"
        and "<answer>\n4\n</answer>" in judge_prompt[1]["content"]
    )


async def test_feedback_is_a_score_of_the_request(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway(specs(upstream, m=(1, 1)))
    result = await gateway.process(ProcessRequest(ASK, CallParams(max_tokens=8), "m"), USER)
    position = await gateway.feedback(result.request_id, 0.25, USER, "too terse")
    event = log.read_stream(f"request-{result.request_id}")[-1]
    assert event.position == position and event.type == "ScoreRecorded"
    assert (event.data["scorer"], event.data["score"], event.data["subject_kind"]) == (
        "feedback", 0.25, "request",
    )  # fmt: skip
    with pytest.raises(GatewayError) as bad:
        await gateway.feedback(result.request_id, 1.5, USER)
    assert (bad.value.status, bad.value.field) == (400, "score")
    with pytest.raises(GatewayError) as unknown:
        await gateway.feedback("no-such-request", 0.5, USER)
    assert unknown.value.status == 404


async def test_a_key_scores_a_request_once_and_only_its_own_tenancy_may(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway(specs(upstream, m=(1, 1)))
    result = await gateway.process(ProcessRequest(ASK, CallParams(max_tokens=8), "m"), USER)

    async def quality() -> list[float]:
        await gateway.projections.wait_until(log.head(), timeout=5)
        row = gateway.projections.state("performance")["models"]["m"]["quality"]
        total, count = row["text_generation"]
        return [round(total, 6), count]

    await gateway.feedback(result.request_id, 0.2, USER)
    assert await quality() == [0.2, 1]
    # The same key again: the later score takes the earlier one's place.
    await gateway.feedback(result.request_id, 0.9, USER)
    assert await quality() == [0.9, 1]
    # Another key of the same tenant scores it too.
    colleague = Principal(key_id="key-9", role=Role.USER, tenant="acme")
    await gateway.feedback(result.request_id, 0.5, colleague)
    assert await quality() == [1.4, 2]
    scores = [e.data for e in log.read_stream(f"request-{result.request_id}")]
    assert [
        (d["score"], d["replaces"], d["by"]) for d in scores if d.get("scorer") == "feedback"
    ] == [
        (0.2, None, "key-1"),
        (0.9, 0.2, "key-1"),
        (0.5, None, "key-9"),
    ]
    # Another tenancy's key is told there is no such request; an operator may score it.
    outsider = Principal(key_id="key-2", role=Role.USER, tenant="globex")
    with pytest.raises(GatewayError) as refused:
        await gateway.feedback(result.request_id, 1.0, outsider)
    assert refused.value.status == 404 and result.request_id not in refused.value.message
    await gateway.feedback(result.request_id, 0.0, Principal(key_id="key-3", role=Role.OPERATOR))
    assert await quality() == [1.4, 3]


async def test_an_ensemble_member_past_the_deadline_is_left_out(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    upstream.models.update(a=Behaviour(reply="4"), b=Behaviour(reply="4"))
    upstream.fail(Fault.hang(), model="slow")
    gateway = await make_gateway(specs(upstream, a=(1, 1), b=(1, 1), slow=(1, 1)))
    ensemble = EnsembleSpec(EnsembleMethod.MAJORITY_VOTE, members=("a", "b", "slow"))
    request = ProcessRequest(
        ASK, CallParams(max_tokens=8), ensemble=ensemble, deadline_ms=1500,
        answer_format=AnswerFormat(AnswerKind.NUMBER),
    )  # fmt: skip
    result = await gateway.process(request, USER)
    assert result.ensemble is not None and result.ensemble["voters"] == 2
    (late,) = [m for m in result.members if m["error"]]
    assert late["model"] == "slow" and "deadline" in late["error"]
    failed = [e.data for e in log.read_stream(f"request-{result.request_id}")
              if e.type == "ModelCallFailed"]  # fmt: skip
    assert [(f["model"], f["kind"]) for f in failed] == [("slow", "cancelled")]


async def test_images_go_only_to_multimodal_models(
    upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    seeing = network_spec("seeing", upstream.base_url, capabilities=frozenset(
        {"text_generation", "multimodal"}), input_usd_per_mtok=10.0)  # fmt: skip
    blind = network_spec("blind", upstream.base_url, input_usd_per_mtok=0.1)
    gateway = await make_gateway([seeing, blind])
    picture = [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}]  # fmt: skip
    with pytest.raises(GatewayError) as info:
        await gateway.process(ProcessRequest(picture, CallParams(max_tokens=8), "blind"), USER)
    assert (info.value.status, info.value.field) == (400, "messages")
    assert "multimodal" in info.value.message and upstream.requests == []
    routed = await gateway.process(
        ProcessRequest(picture, CallParams(max_tokens=8), strategy=Strategy.COST_FIRST), USER
    )
    assert routed.model == "seeing", "the cheaper model cannot see the image"
