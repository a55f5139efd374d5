"""The learned acceptance score online: its history read from a real log, refitted off the hot
path, only once enough new scores have come in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from atom_actors.acceptance_learner import AcceptanceLearner, examples, scored_rung
from atom_actors.answers import AnswerKind
from atom_actors.events import ModelCallCompleted, RequestReceived, ScoreRecorded, request_stream
from atom_actors.projections import ScoredCalls
from eventstore import EventStore, fold


def received(request_id: str, question: Any = "What is 2 + 2?", **fields: Any) -> dict[str, Any]:
    fields.setdefault("answer_format", "number")
    event = RequestReceived(
        request_id=request_id,
        endpoint="process",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": question},
        ],
        params={},
        **fields,
    )
    return event.data()


def completed(request_id: str, call_id: str, text: str, model: str = "cheap") -> dict[str, Any]:
    event = ModelCallCompleted(
        request_id=request_id,
        call_id=call_id,
        model=model,
        attempt=1,
        prompt_tokens=5,
        completion_tokens=3,
        cost_pico=1,
        latency_ms=1.0,
        ttft_ms=1.0,
        tokens_per_s=None,
        finish_reason="stop",
        text=text,
        mean_logprob=-0.1,
    )
    return event.data()


def scored(request_id: str, call_id: str, score: float, scorer: str = "reference") -> ScoreRecorded:
    return ScoreRecorded(
        request_id=request_id,
        subject=call_id,
        subject_kind="call",
        model="cheap",
        capability="text_generation",
        scorer=scorer,
        scorer_version="1",
        score=score,
    )


def test_a_scored_call_is_its_reply_as_a_one_reply_rung_of_its_request() -> None:
    parts = [
        {"type": "text", "text": "What is"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "2 + 2?"},
    ]
    example = scored_rung(received("r", parts), completed("r", "c", "2 + 2 = 4 #### 4"), 1.0)
    rung = example.rung
    assert (rung.prompt, rung.fmt.kind, rung.answer, example.score) == (
        "What is\n2 + 2?",
        AnswerKind.NUMBER,
        "4",
        1.0,
    )
    assert rung.speaker is not None and rung.speaker.mean_logprob == -0.1
    json_field = received("r", answer_field="result.value") | {"answer_format": "json"}
    example = scored_rung(json_field, completed("r", "c", '{"result": {"value": 7}}'), 0.0)
    assert example.rung.answer == "7"


def test_examples_skip_what_the_log_does_not_hold(log: EventStore) -> None:
    log.append(
        request_stream("r1"),
        [
            RequestReceived(**received("r1")).new(),
            ModelCallCompleted(**completed("r1", "c1", "#### 4")).new(),
        ],
    )
    log.append(request_stream("r2"), [RequestReceived(**received("r2", answer_format="x")).new()])
    log.append(
        "scores",
        [
            scored("r1", "c1", 1.0).new(),
            scored("r1", "gone", 1.0).new(),
            scored("r2", "c2", 0.0).new(),
            scored("r3", "c3", 0.0).new(),
        ],
    )
    streams = {rid: log.read_stream(request_stream(rid)) for rid in ("r1", "r2", "r3")}
    scores = log.read_stream("scores")
    assert [e.rung.answer for e in examples(scores, streams)] == ["4"]


def test_scored_calls_keeps_the_scores_that_say_whether_an_answer_was_right(
    log: EventStore,
) -> None:
    feedback = ScoreRecorded(
        request_id="r",
        subject="r",
        subject_kind="request",
        model="cheap",
        capability=None,
        scorer="feedback",
        scorer_version="1",
        score=1.0,
    )
    log.append(
        request_stream("r"),
        [
            e.new()
            for e in (
                scored("r", "c1", 1.0),
                scored("r", "c2", 0.5, scorer="judge"),
                scored("r", "c3", 1.0, scorer="agreement"),
                scored("r", "c4", 0.0),
                feedback,
            )
        ],
    )
    projection = ScoredCalls()
    projection.keep = 2
    state = fold(projection, log.read_all())
    # Where the judge's 0.5 and the last reference score are in the log.
    assert state == {"count": 3, "recent": [2, 4]}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def scores(log: EventStore) -> Iterator[Any]:
    """Append scored answers to the log; the learner reads them as the projection would."""
    made = [0]

    def add(*replies: tuple[str, float]) -> None:
        for text, score in replies:
            made[0] += 1
            rid, cid = f"r{made[0]}", f"c{made[0]}"
            log.append(
                request_stream(rid),
                [
                    RequestReceived(**received(rid)).new(),
                    ModelCallCompleted(**completed(rid, cid, text)).new(),
                    scored(rid, cid, score).new(),
                ],
            )

    yield add


async def test_the_first_ask_waits_for_the_history_and_later_refits_run_in_the_background(
    log: EventStore, scores: Any
) -> None:
    def state() -> dict[str, Any]:
        return fold(ScoredCalls(), log.read_all())

    clock = Clock()
    learner = AcceptanceLearner(log, state, refit_every=3, refit_interval_s=10.0, clock=clock)
    assert await learner.current() is None, "nothing scored: no model"
    scores(("2 + 2 = 4 #### 4", 1.0), ("maybe 5", 0.0))
    first = await learner.current()
    assert first is not None and learner.examples == 2
    scores(("2 + 2 = 4 #### 4", 1.0), ("maybe 5", 0.0))
    assert await learner.current() is first, "two new scores are not enough for a refit"
    scores(("maybe 6", 0.0))
    assert await learner.current() is first, "three, but too soon after the last fit"
    clock.now += 11
    assert await learner.current() is first, "the refit runs in the background"
    await learner.drain()
    refitted = await learner.current()
    assert refitted is not first and learner.examples == 5
    assert refitted is not None and refitted.weights != first.weights


async def test_concurrent_first_asks_share_one_fit(log: EventStore, scores: Any) -> None:
    def state() -> dict[str, Any]:
        return fold(ScoredCalls(), log.read_all())

    scores(("2 + 2 = 4 #### 4", 1.0), ("maybe 5", 0.0))
    learner = AcceptanceLearner(log, state)
    models = await asyncio.gather(*(learner.current() for _ in range(5)))
    assert models[0] is not None and all(m is models[0] for m in models)
    assert learner.examples == 2, "each scored call read once"
