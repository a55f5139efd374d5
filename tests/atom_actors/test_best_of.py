"""best_of_n with a real scorer: the judge when one is configured (paid within the request's
budget), else the learned reward, else confidence; the answer says which chose."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.cost import prompt_size
from atom_actors.events import BudgetSet
from atom_actors.gateway import Gateway
from atom_actors.principal import Principal, Role
from atom_actors.providers import CallParams
from atom_actors.request import ProcessRequest
from atom_actors.snapshot import EnsembleMethod, EnsembleSpec
from eventstore import EventStore
from tests.atom_actors.conftest import network_spec
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI

MakeGateway = Callable[..., Awaitable[Gateway]]
ASK = [{"role": "user", "content": "What is 2 + 2?"}]
USER = Principal(key_id="key-1", role=Role.USER, tenant="acme")
NUMBER = AnswerFormat(AnswerKind.NUMBER)
MEMBERS = ("a", "b", "c")
# The judge grades each answer its own way: b's best.
JUDGE = Behaviour(
    replies=(
        ("<answer>\n#### 4\n", "Fair. Score: 3"),
        ("<answer>\n2 + 2 = 4. #### 4\n", "Worked. Score: 9"),
        ("<answer>\nmaybe 5\n", "Score: 1"),
    ),
)


def best_of_n(**options: Any) -> ProcessRequest:
    ensemble = EnsembleSpec(EnsembleMethod.BEST_OF_N, members=MEMBERS)
    return ProcessRequest(
        ASK, CallParams(max_tokens=16), ensemble=ensemble, answer_format=NUMBER, **options
    )


def events(log: EventStore, request_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in log.read_stream(f"request-{request_id}") if e.type == kind]


async def gateway_of(upstream: FakeOpenAI, make_gateway: MakeGateway, **options: Any) -> Gateway:
    upstream.models.update(
        a=Behaviour(reply="#### 4"),
        b=Behaviour(reply="2 + 2 = 4. #### 4"),
        c=Behaviour(reply="maybe 5"),
        judge=JUDGE,
    )
    models = [network_spec(name, upstream.base_url) for name in (*MEMBERS, "judge")]
    return await make_gateway(models, **options)


async def test_the_judge_chooses_within_the_request_and_its_calls_are_paid_for(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    gateway = await gateway_of(upstream, make_gateway, judge_model="judge")
    result = await gateway.process(best_of_n(), USER)
    assert (result.model, result.text) == ("b", "2 + 2 = 4. #### 4")
    assert result.ensemble is not None
    assert result.ensemble["scorer"] == {
        "scorer": "judge",
        "scores": {"a#1": 0.3, "b#2": 0.9, "c#3": 0.1},
        "reason": "graded by judge",
    }
    assert result.ensemble["confidence"] == 0.9
    (combined,) = events(log, result.request_id, "EnsembleCombined")
    assert combined["scorer"] == result.ensemble["scorer"]
    graded = events(log, result.request_id, "ScoreRecorded")
    judged = sorted((s["model"], s["score"]) for s in graded if s["scorer"] == "judge")
    assert judged == [("a", 0.3), ("b", 0.9), ("c", 0.1)]
    # The judge's calls are the request's own: reserved in its scopes, settled, in its cost.
    reserved = [
        r for r in events(log, result.request_id, "BudgetReserved") if r["model"] == "judge"
    ]
    settled = {s["reservation_id"]: s for s in events(log, result.request_id, "BudgetSettled")}
    assert len(reserved) == 3
    assert all(r["scopes"] == USER.scopes for r in reserved)
    assert all(r["reservation_id"] in settled for r in reserved)
    assert result.cost_pico == sum(s["actual_pico"] for s in settled.values())
    assert sum(settled[r["reservation_id"]]["actual_pico"] for r in reserved) > 0
    await gateway.drain()
    after = events(log, result.request_id, "ScoreRecorded")
    assert len(after) == len(graded), "the chosen answer is not graded a second time"


async def test_a_judge_the_budget_cannot_pay_leaves_the_choice_to_another_scorer(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    gateway = await gateway_of(upstream, make_gateway, judge_model="judge")
    members = 3 * gateway.calls.reservation("a", prompt_size(ASK), 16)
    # Room for the members' answers, not for the judge's long prompts as well.
    await log.append_async(
        "budget-global",
        [BudgetSet(scope="global", limit_pico=members + members // 3, period="total").new()],
    )
    await gateway.projections.wait_until(log.head(), timeout=5)
    result = await gateway.process(best_of_n(), USER)
    assert result.ensemble is not None
    scorer = result.ensemble["scorer"]
    assert scorer["scorer"] == "confidence" and scorer["scores"] == {}
    assert scorer["reason"].startswith("the judge could not grade every reply (")
    assert "budget 'global'" in scorer["reason"]
    failed = events(log, result.request_id, "ScoreFailed")
    assert failed and all(f["scorer"] == "judge" for f in failed)


async def test_without_a_judge_the_learned_reward_chooses(
    log: EventStore, upstream: FakeOpenAI, make_gateway: MakeGateway
) -> None:
    gateway = await gateway_of(upstream, make_gateway)
    first = await gateway.process(best_of_n(), USER)
    assert first.ensemble is not None and first.ensemble["scorer"] == {
        "scorer": "confidence",
        "scores": {},
        "reason": "no judge model is configured, and no answer is scored yet to learn from",
    }
    # History: worked answers are right, bare guesses wrong.
    for model, expected in [("b", "4"), ("c", "4"), ("a", "5")] * 4:
        named = ProcessRequest(
            ASK, CallParams(max_tokens=16), model, expected=expected, answer_format=NUMBER
        )
        answered = await gateway.process(named, USER)
    await gateway.projections.wait_until(answered.position, timeout=5)
    result = await gateway.process(best_of_n(), USER)
    assert result.model == "b"
    assert result.ensemble is not None
    scorer = result.ensemble["scorer"]
    assert scorer["scorer"] == "reward"
    assert scorer["reason"] == "no judge model is configured: the learned acceptance score"
    scores = scorer["scores"]
    assert scores["b#2"] > max(scores["a#1"], scores["c#3"])
    assert all(0.0 < s < 1.0 for s in scores.values())
    assert [e["scorer"] for e in events(log, result.request_id, "EnsembleCombined")] == [scorer]
