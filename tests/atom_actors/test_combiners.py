from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atom_actors.answers import FREE_TEXT, AnswerFormat, AnswerKind
from atom_actors.combiners import (
    TOOL_CALLS_KEY,
    MemberAnswer,
    answer_key,
    best_of_n,
    combine,
    confidence_weighted,
    consensus,
    majority_vote,
    weighted_average,
)
from atom_actors.providers import ToolCall
from atom_actors.snapshot import EnsembleMethod

NUMBER = AnswerFormat(AnswerKind.NUMBER)
CHOICE = AnswerFormat(AnswerKind.CHOICE)


def reply(
    member: str,
    text: str,
    quality: float = 0.5,
    logprob: float | None = None,
    error: str | None = None,
) -> MemberAnswer:
    return MemberAnswer(member, f"model-{member}", text, quality, logprob, error)


@st.composite
def ensembles(draw: st.DrawFn) -> list[MemberAnswer]:
    size = draw(st.integers(1, 6))
    return [
        reply(
            f"m{i}",
            draw(st.sampled_from(["#### 18", "18.0", "#### 21", "I think 7", "no idea"])),
            draw(st.floats(0, 1)),
            draw(st.none() | st.floats(-5, 0)),
            draw(st.none() | st.just("timeout")),
        )
        for i in range(size)
    ]


@settings(max_examples=60)
@given(ensembles(), st.sampled_from(EnsembleMethod), st.data())
def test_no_combiner_depends_on_member_order(
    answers: list[MemberAnswer], method: EnsembleMethod, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(answers))
    assert combine(method, shuffled, NUMBER) == combine(method, answers, NUMBER)


@given(
    st.sampled_from(["#### 18", "Answer: (C)", "Paris is the capital."]),
    st.integers(1, 6),
    st.sampled_from(EnsembleMethod),
    st.lists(st.floats(0, 1), min_size=6, max_size=6),
)
def test_unanimous_members_give_their_answer_with_full_agreement(
    text: str, size: int, method: EnsembleMethod, qualities: list[float]
) -> None:
    answers = [reply(f"m{i}", text, qualities[i]) for i in range(size)]
    result = combine(method, answers)
    assert result.answer == text
    assert result.agreement == 1.0
    assert result.voters == size
    assert 0.0 <= result.confidence <= 1.0


@settings(max_examples=60)
@given(ensembles(), st.sampled_from(EnsembleMethod))
def test_every_member_either_votes_or_is_left_out_with_a_reason(
    answers: list[MemberAnswer], method: EnsembleMethod
) -> None:
    result = combine(method, answers, NUMBER)
    assert result.voters + len(result.left_out) == len(answers)
    assert set(result.weights) | {o.member for o in result.left_out} == {a.member for a in answers}
    assert set(result.bases) == set(result.weights)
    assert all(o.reason for o in result.left_out)
    assert 0.0 <= result.agreement <= 1.0
    assert 0.0 <= result.confidence <= 1.0
    json.dumps(result.to_dict())


def test_majority_vote_takes_the_most_common_answer() -> None:
    result = majority_vote(
        [reply("a", "#### 18"), reply("b", "It is $18.00"), reply("c", "#### 21")], NUMBER
    )
    assert result.normalized == "18"
    assert result.chosen in {"a", "b"}
    assert math.isclose(result.agreement, 2 / 3)
    assert math.isclose(result.confidence, 2 / 3)


def test_failed_and_unreadable_members_are_left_out_and_not_counted() -> None:
    result = majority_vote(
        [
            reply("a", "#### 21"),
            reply("b", "", error="deadline exceeded"),
            reply("c", "I cannot tell"),
            reply("d", "#### 21"),
        ],
        NUMBER,
    )
    assert result.normalized == "21"
    assert result.voters == 2
    assert result.agreement == 1.0
    reasons = {o.member: o.reason for o in result.left_out}
    assert reasons == {"b": "failed: deadline exceeded", "c": "no number found"}


def test_no_voter_gives_no_answer() -> None:
    result = majority_vote([reply("a", "", error="timeout")], NUMBER)
    assert (result.answer, result.normalized, result.voters) == (None, None, 0)
    assert result.agreement == result.confidence == 0.0


def test_a_tie_goes_to_the_more_trusted_answer() -> None:
    answers = [reply("a", "Answer: A", 0.9), reply("b", "Answer: B", 0.4)]
    assert majority_vote(answers, CHOICE).normalized == "A"
    assert majority_vote(answers[::-1], CHOICE).normalized == "A"


def test_weighted_average_lets_strong_members_outvote_weak_ones() -> None:
    answers = [
        reply("strong", "#### 10", 0.95),
        reply("w1", "#### 12", 0.3),
        reply("w2", "#### 12", 0.3),
    ]
    assert majority_vote(answers, NUMBER).normalized == "12"
    result = weighted_average(answers, NUMBER)
    assert result.normalized == "10"
    assert result.weights == {"strong": 0.95, "w1": 0.3, "w2": 0.3}
    assert math.isclose(result.confidence, 0.95 / 1.55)
    assert result.mean is not None
    assert math.isclose(result.mean, (0.95 * 10 + 0.6 * 12) / 1.55)


def test_weighted_average_has_a_mean_for_numbers_only() -> None:
    assert weighted_average([reply("a", "Answer: B")], CHOICE).mean is None


def test_confidence_weighted_trusts_confident_members() -> None:
    answers = [
        reply("sure", "#### 5", logprob=-0.01),
        reply("unsure1", "#### 6", logprob=-3.0),
        reply("unsure2", "#### 6", logprob=-3.0),
    ]
    result = confidence_weighted(answers, NUMBER)
    assert result.normalized == "5"
    assert math.isclose(result.weights["sure"], math.exp(-0.01))


def test_without_logprobs_confidence_is_agreement_with_the_others() -> None:
    answers = [reply("a", "#### 5"), reply("b", "#### 6"), reply("c", "#### 6")]
    result = confidence_weighted(answers, NUMBER)
    assert result.normalized == "6"
    assert result.weights == {"a": 0.0, "b": 0.5, "c": 0.5}
    assert result.bases == dict.fromkeys("abc", "agreement")


def test_confidence_weighted_says_which_weight_each_member_got() -> None:
    answers = [reply("sure", "#### 5", logprob=-0.1), reply("plain", "#### 5")]
    result = confidence_weighted(answers, NUMBER)
    assert result.bases == {"sure": "logprobs", "plain": "agreement"}
    assert result.weights == {"sure": math.exp(-0.1), "plain": 1.0}
    assert result.to_dict()["weight_bases"] == result.bases


def test_best_of_n_takes_the_highest_score() -> None:
    answers = [reply("a", "#### 7"), reply("b", "#### 8"), reply("c", "#### 8")]
    result = best_of_n(answers, NUMBER, score=lambda m: 0.9 if m.member == "a" else 0.2)
    assert (result.chosen, result.normalized) == ("a", "7")
    assert result.confidence == 0.9
    assert math.isclose(result.agreement, 1 / 3)


def test_best_of_n_without_a_scorer_takes_the_most_confident() -> None:
    answers = [reply("a", "x", logprob=-2.0), reply("b", "y", logprob=-0.1)]
    assert best_of_n(answers).chosen == "b"


def test_best_of_n_refuses_scores_outside_zero_to_one() -> None:
    with pytest.raises(ValueError):
        best_of_n([reply("a", "x")], score=lambda m: 3.0)


def test_consensus_picks_the_answer_closest_to_all_others() -> None:
    answers = [
        reply("a", "Paris is the capital of France."),
        reply("b", "The capital of France is Paris, a large city."),
        reply("c", "France's capital city is Paris."),
        reply("d", "Bananas are yellow."),
    ]
    result = consensus(answers)
    assert result.chosen in {"a", "b", "c"}
    assert result.chosen != "d"
    assert result.weights["d"] == 0.0
    assert 0.0 < result.agreement < 1.0
    assert result.agreement == max(result.weights.values())


def test_member_ids_must_be_unique() -> None:
    with pytest.raises(ValueError):
        majority_vote([reply("a", "x"), reply("a", "y")])


def test_quality_must_be_a_probability_and_logprobs_finite() -> None:
    with pytest.raises(ValueError):
        reply("a", "x", quality=1.5)
    with pytest.raises(ValueError):
        reply("a", "x", logprob=math.nan)


# ------------------------------------------------------------------------ ensembles over tools


def calling(member: str, *calls: tuple[str, object], quality: float = 0.5) -> MemberAnswer:
    """A member whose answer calls tools; each call's arguments as any JSON value."""
    made = tuple(
        ToolCall(f"{member}-{i}", name, json.dumps(arguments)).canonical()
        for i, (name, arguments) in enumerate(calls)
    )
    return MemberAnswer(member, f"model-{member}", "", quality, tool_calls=made)


def test_calls_agree_on_canonical_arguments_in_any_order() -> None:
    # Key order and spacing differ, and the two calls come in either order: one answer.
    a = calling("a", ("weather", {"city": "Paris", "unit": "C"}), ("time", {"tz": "CET"}))
    b = MemberAnswer("b", "model-b", "", 0.5, tool_calls=(
        ToolCall("x", "time", '{ "tz" : "CET" }').canonical(),
        ToolCall("y", "weather", '{"unit":"C","city":"Paris"}').canonical(),
    ))  # fmt: skip
    c = calling("c", ("weather", {"city": "Rome", "unit": "C"}), ("time", {"tz": "CET"}))

    for method in EnsembleMethod:
        result = combine(method, [a, b, c])
        assert result.chosen in ("a", "b"), method
        assert result.normalized is not None and result.normalized.startswith(TOOL_CALLS_KEY)
    voted = majority_vote([a, b, c])
    assert voted.agreement == pytest.approx(2 / 3)
    assert consensus([a, b, c]).agreement == pytest.approx(1 / 2)


def test_a_call_and_a_text_answer_never_agree() -> None:
    said = reply("t", "The weather in Paris is mild.")
    called = calling("c", ("weather", {"city": "Paris"}))

    result = consensus([said, called])
    assert result.agreement == 0.0
    assert majority_vote([said, called, calling("d", ("weather", {"city": "Paris"}))]).chosen in (
        "c",
        "d",
    )


def test_a_number_ensemble_means_only_the_numbers() -> None:
    result = weighted_average(
        [reply("a", "#### 10", 0.5), reply("b", "#### 20", 0.5), calling("c", ("calc", {}))],
        NUMBER,
    )
    assert result.mean == pytest.approx(15.0)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["weather", "time"]),
            st.dictionaries(st.sampled_from("abc"), st.integers(0, 2), max_size=3),
        ),
        min_size=1,
        max_size=3,
    ),
    st.permutations(range(3)),
    st.sampled_from(EnsembleMethod),
)
def test_unanimous_calls_win_with_agreement_one(
    calls: list[tuple[str, dict[str, int]]], order: list[int], method: EnsembleMethod
) -> None:
    members = [calling(f"m{i}", *calls, quality=0.6) for i in order]

    result = combine(method, members)

    assert result.agreement == 1.0
    assert result.normalized == answer_key(members[0], FREE_TEXT)
