"""The cascade's pure step and its checks: accept, climb, or stop at the top, and say why."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.cascade import (
    Action,
    Attempt,
    Policy,
    RungView,
    agreement,
    confidence,
    decide,
    learned,
    run_cascade,
    schema_problem,
    validity,
    view_of,
)

NUMBER = AnswerFormat(AnswerKind.NUMBER)
LADDER = (("cheap", "cheap2"), ("mid",), ("top",))


def replies(step: int, *pairs: tuple[str, str]) -> list[Attempt]:
    return [Attempt(step=step, model=model, text=text) for model, text in pairs]


def test_the_first_move_is_to_call_the_first_rung() -> None:
    step = decide(LADDER, Policy(NUMBER, (agreement(),)), "q", [])
    assert (step.action, step.step, step.models, step.reason) == (
        Action.CALL, 0, ("cheap", "cheap2"), "start",
    )  # fmt: skip


def test_agreeing_cheap_answers_are_accepted() -> None:
    attempts = replies(0, ("cheap", "so #### 42"), ("cheap2", "I get 42."))
    step = decide(LADDER, Policy(NUMBER, (agreement(), validity(NUMBER))), "q", attempts)
    assert step.action is Action.ACCEPT
    assert (step.step, step.answer, step.speaker) == (0, "42", attempts[0])
    assert step.reason == (
        "agreement passed: 1.00 of 2 replies agree (needs 1);"
        " validity passed: a valid number answer"
    )


def test_disagreement_climbs_one_rung_and_names_the_failed_check() -> None:
    attempts = replies(0, ("cheap", "#### 42"), ("cheap2", "#### 41"))
    step = decide(LADDER, Policy(NUMBER, (agreement(), validity(NUMBER))), "q", attempts)
    assert (step.action, step.step, step.models) == (Action.CALL, 1, ("mid",))
    assert step.reason == "escalate: agreement failed: 0.50 of 2 replies agree (needs 1)"
    assert [v.passed for v in step.verdicts] == [False, True]


def test_only_the_last_rung_asked_is_judged() -> None:
    attempts = [*replies(0, ("cheap", "#### 1"), ("cheap2", "#### 2")), *replies(1, ("mid", "x"))]
    step = decide(LADDER, Policy(NUMBER, (validity(NUMBER),)), "q", attempts)
    assert (step.action, step.step, step.reason) == (
        Action.CALL, 2, "escalate: validity failed: no number found",
    )  # fmt: skip


def test_the_top_rung_is_accepted_whatever_the_checks_say() -> None:
    attempts = replies(2, ("top", "no idea"))
    step = decide(LADDER, Policy(NUMBER, (validity(NUMBER),)), "q", attempts)
    assert (step.action, step.step, step.answer, step.speaker) == (Action.ACCEPT, 2, None, None)
    assert step.reason == "top of the ladder, validity failed: no number found"


def test_checks_that_abstain_neither_vouch_nor_veto() -> None:
    one = replies(0, ("cheap", "#### 7"))
    # A lone reply cannot agree with anything, and it has no logprobs: nobody vouches, so climb.
    abstaining = Policy(NUMBER, (agreement(), confidence(0.5)))
    assert decide(LADDER, abstaining, "q", one).action is Action.CALL
    # With validity beside them, the valid answer is accepted.
    vouched = Policy(NUMBER, (agreement(), confidence(0.5), validity(NUMBER)))
    assert decide(LADDER, vouched, "q", one).action is Action.ACCEPT


def test_confidence_reads_the_speakers_mean_logprob() -> None:
    sure = [Attempt(step=0, model="cheap", text="#### 3", mean_logprob=math.log(0.9))]
    unsure = [Attempt(step=0, model="cheap", text="#### 3", mean_logprob=math.log(0.4))]
    policy = Policy(NUMBER, (confidence(0.8),))
    assert decide(LADDER, policy, "q", sure).action is Action.ACCEPT
    step = decide(LADDER, policy, "q", unsure)
    assert step.action is Action.CALL
    assert step.verdicts[0].value == pytest.approx(0.4)


def test_a_failed_reply_gives_no_answer_and_the_majority_speaks() -> None:
    attempts = [
        Attempt(step=0, model="a", text="#### 5", error="timeout"),
        Attempt(step=0, model="b", text="#### 6"),
        Attempt(step=0, model="c", text="it is 6"),
        Attempt(step=0, model="d", text="#### 7"),
    ]
    rung = view_of("q", NUMBER, 0, attempts)
    assert (rung.answer, rung.share, rung.extracted) == ("6", 0.5, (None, "6", "6", "7"))
    assert rung.speaker is attempts[1]
    assert agreement(0.5)(rung).passed is True
    assert agreement(0.75)(rung).passed is False


class Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def probability(self, rung: RungView) -> float:
        return self.value


def test_the_learned_check_compares_its_probability_with_the_threshold() -> None:
    one = replies(0, ("cheap", "#### 7"))
    assert decide(LADDER, Policy(NUMBER, (learned(Constant(0.7), 0.6),)), "q", one).action is (
        Action.ACCEPT
    )
    climbed = decide(LADDER, Policy(NUMBER, (learned(Constant(0.5), 0.6),)), "q", one)
    assert climbed.reason == "escalate: learned failed: 0.500 (needs 0.6)"


def test_validity_checks_json_against_a_schema() -> None:
    fmt = AnswerFormat(AnswerKind.JSON, "answer")
    properties = {"answer": {"type": "integer"}, "unit": {"enum": ["kg", "g"]}}
    schema = {"type": "object", "required": ["answer", "unit"], "properties": properties}
    check = validity(fmt, schema)

    def verdict(text: str) -> tuple[bool | None, str]:
        v = check(view_of("q", fmt, 0, replies(0, ("m", text))))
        return v.passed, v.reason

    assert verdict('{"answer": 3, "unit": "kg"}') == (True, "a valid json answer")
    assert verdict('{"answer": 3}') == (False, "schema: $.unit is missing")
    assert verdict('{"answer": "3", "unit": "kg"}') == (False, "schema: $.answer is not integer")
    assert verdict('{"answer": 3, "unit": "lb"}') == (
        False,
        "schema: $.unit is not one of ['kg', 'g']",
    )
    assert verdict("no json") == (False, "no JSON field 'answer'")


def test_schema_problem_walks_arrays_and_union_types() -> None:
    schema = {"type": "array", "items": {"type": ["number", "null"]}}
    assert schema_problem([1, None, 2.5], schema) is None
    assert schema_problem([1, "x"], schema) == "$[1] is not number or null"
    assert schema_problem(True, {"type": "integer"}) == "$ is not integer"


def test_run_cascade_asks_each_rung_it_is_told_to_and_no_more() -> None:
    recorded = {"cheap": "#### 1", "cheap2": "#### 2", "mid": "#### 3", "top": "#### 4"}
    asked: list[tuple[int, tuple[str, ...]]] = []

    def ask(step: int, models: tuple[str, ...]) -> list[Attempt]:
        asked.append((step, models))
        return [Attempt(step=step, model=m, text=recorded[m]) for m in models]

    outcome = run_cascade(LADDER, Policy(NUMBER, (agreement(), validity(NUMBER))), "q", ask)
    # The cheap pair disagrees; mid answers alone, and agreement abstains, validity vouches.
    assert asked == [(0, ("cheap", "cheap2")), (1, ("mid",))]
    assert (outcome.accepted.answer, outcome.accepted.step) == ("3", 1)
    assert [s.action for s in outcome.steps] == [Action.CALL, Action.CALL, Action.ACCEPT]
    assert outcome.accepted.to_dict()["speaker"] == "mid"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["#### 1", "#### 2", "nothing"]), min_size=1, max_size=3),
        min_size=1,
        max_size=4,
    ),
    st.floats(0.1, 1.0),
)
def test_a_cascade_climbs_one_rung_at_a_time_and_always_ends(
    rungs: list[list[str]], share: float
) -> None:
    ladder: Sequence[tuple[str, ...]] = [
        tuple(f"m{i}.{j}" for j in range(len(texts))) for i, texts in enumerate(rungs)
    ]

    def ask(step: int, models: tuple[str, ...]) -> list[Attempt]:
        return [
            Attempt(step=step, model=m, text=t) for m, t in zip(models, rungs[step], strict=True)
        ]

    policy = Policy(NUMBER, (agreement(share), validity(NUMBER)))
    outcome = run_cascade(ladder, policy, "q", ask)
    calls = [s.step for s in outcome.steps if s.action is Action.CALL]
    assert calls == list(range(len(calls)))
    assert outcome.accepted.step == calls[-1]
    below_top = outcome.accepted.step < len(ladder) - 1
    if below_top:
        assert all(v.passed is not False for v in outcome.accepted.verdicts)
        assert outcome.accepted.answer is not None
