from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.scorers import (
    JUDGE_RUBRIC,
    SCORERS,
    AgreementScorer,
    FeedbackScorer,
    JudgeScorer,
    ReferenceScorer,
    ScoreInput,
    ScoreUnavailable,
    get_scorer,
)

NUMBER = AnswerFormat(AnswerKind.NUMBER)
CHOICE = AnswerFormat(AnswerKind.CHOICE)


@pytest.mark.parametrize(
    ("answer", "expected", "fmt", "score"),
    [
        ("So she has 18.0 eggs.\n#### 18", "Janet sells 16 - 3 - 4 = 9 ... #### 18", NUMBER, 1.0),
        ("#### 17", "#### 18", NUMBER, 0.0),
        ("I have no idea", "#### 18", NUMBER, 0.0),
        ("The answer is (B)", "B", CHOICE, 1.0),
        ("Answer: C", "B", CHOICE, 0.0),
        ("  PARIS. ", "paris", AnswerFormat(), 1.0),
        ('{"city": "Paris"}', '{"city": "Paris"}', AnswerFormat(AnswerKind.JSON, "city"), 1.0),
    ],
)
def test_reference_scores_a_match_one_and_anything_else_zero(
    answer: str, expected: str, fmt: AnswerFormat, score: float
) -> None:
    assert ReferenceScorer().score(ScoreInput(answer, fmt=fmt, expected=expected)) == score


@pytest.mark.parametrize("expected", [None, "no number here"])
def test_reference_needs_a_readable_expected_answer(expected: str | None) -> None:
    with pytest.raises(ScoreUnavailable):
        ReferenceScorer().score(ScoreInput("#### 18", fmt=NUMBER, expected=expected))


def test_agreement_is_similarity_with_the_consensus() -> None:
    scorer = AgreementScorer()
    same = ScoreInput("Paris is the capital.", consensus="the capital is Paris")
    partly = ScoreInput("Paris is big.", consensus="the capital is Paris")
    assert scorer.score(same) == 1.0
    assert 0.0 < scorer.score(partly) < 1.0
    assert scorer.score(ScoreInput("#### 3", fmt=NUMBER, consensus="#### 4")) == 0.0
    assert scorer.score(ScoreInput("no number", fmt=NUMBER, consensus="#### 4")) == 0.0
    with pytest.raises(ScoreUnavailable):
        scorer.score(ScoreInput("Paris"))


def test_the_judge_prompt_holds_the_rubric_question_reference_and_answer() -> None:
    subject = ScoreInput("Lyon", question="Capital of France?", expected="Paris")
    system, user = JudgeScorer().prompt(subject)
    assert system == {"role": "system", "content": JUDGE_RUBRIC}
    assert user["role"] == "user"
    content = user["content"]
    assert content.index("Capital of France?") < content.index("Paris") < content.index("Lyon")
    assert "<reference>" not in JudgeScorer().prompt(ScoreInput("Lyon"))[1]["content"]


@given(st.integers(0, 10))
def test_the_judge_grade_is_scaled_to_zero_one(grade: int) -> None:
    judge = JudgeScorer()
    assert judge.parse(f"Reasoning...\nScore: {grade}") == grade / 10
    assert judge.parse(f"I'd give it {grade}/10.") == grade / 10


def test_the_judge_last_score_counts() -> None:
    reply = "A first draft said Score: 3, but on reflection\n**Score:** 8"
    assert JudgeScorer().parse(reply) == 0.8
    assert JudgeScorer().score(ScoreInput("x", judge_reply=reply)) == 0.8


@pytest.mark.parametrize("reply", ["Looks fine to me.", "Score: 11"])
def test_a_judge_reply_without_a_valid_grade_gives_no_score(reply: str) -> None:
    with pytest.raises(ScoreUnavailable):
        JudgeScorer().parse(reply)


def test_the_judge_needs_its_reply() -> None:
    with pytest.raises(ScoreUnavailable):
        JudgeScorer().score(ScoreInput("x"))


@given(st.floats(0, 1))
def test_feedback_is_taken_as_given(value: float) -> None:
    assert FeedbackScorer().score(ScoreInput("x", feedback=value)) == value


@pytest.mark.parametrize("value", [-0.1, 1.01, math.nan, math.inf])
def test_feedback_outside_zero_to_one_is_refused(value: float) -> None:
    with pytest.raises(ValueError):
        FeedbackScorer().score(ScoreInput("x", feedback=value))


def test_scorers_are_registered_by_id_with_a_version() -> None:
    assert set(SCORERS) == {"reference", "agreement", "judge", "feedback"}
    for scorer_id, scorer in SCORERS.items():
        assert get_scorer(scorer_id) is scorer
        assert scorer.id == scorer_id
        assert scorer.version
    with pytest.raises(KeyError, match="reference"):
        get_scorer("vibes")
