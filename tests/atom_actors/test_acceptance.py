"""The learned acceptance score: its features, the logistic fit, and what it learns."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atom_actors.acceptance import (
    FEATURES,
    ScoredRung,
    arithmetic,
    arithmetic_errors,
    features,
    fit_acceptance,
    fit_logistic,
)
from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.cascade import Attempt, view_of

NUMBER = AnswerFormat(AnswerKind.NUMBER)


def rung(text: str, model: str = "cheap", prompt: str = "q") -> ScoredRung:
    view = view_of(prompt, NUMBER, 0, [Attempt(step=0, model=model, text=text)])
    return ScoredRung(rung=view, score=0.0)


def test_arithmetic_evaluates_plain_expressions_only() -> None:
    assert arithmetic("3 x 60") == 180.0
    assert arithmetic("(1,200 + 300) / 3") == 500.0
    assert arithmetic("-2*4") == -8.0
    assert arithmetic("__import__('os')") is None
    assert arithmetic("2 ** 3") is None
    assert arithmetic("1/0") is None


def test_arithmetic_errors_is_the_share_of_wrong_worked_equations() -> None:
    assert arithmetic_errors("3 x 60 = <<3*60=180>>180, then <<180*3=550>>550") == 0.5
    assert arithmetic_errors("He pays 2 + 2 = 4 dollars and 4 x 3 = 13 in all") == 0.5
    assert arithmetic_errors("no sums here") == 0.0


def test_the_features_of_a_reply_are_what_its_text_shows() -> None:
    x = dict(
        zip(
            [*FEATURES, "model:cheap"],
            features(rung("5 + 5 = 11 #### 11.5").rung, ["cheap"]),
            strict=True,
        )
    )
    assert x["valid"] == 1.0 and x["marked"] == 1.0
    assert x["whole"] == 0.0
    assert x["arithmetic_errors"] == 1.0
    assert x["share"] == 1.0 and x["several"] == 0.0
    assert x["has_confidence"] == 0.0 and x["model:cheap"] == 1.0
    assert x["length"] == pytest.approx(math.log1p(20) / 8)


def test_a_bias_alone_learns_the_success_rate() -> None:
    # Minimising the log loss over a constant gives sigmoid(w) = mean target; l2 ~ 0.
    weights = fit_logistic([[1.0]] * 4, [1.0, 1.0, 1.0, 0.0], l2=1e-9)
    assert 1 / (1 + math.exp(-weights[0])) == pytest.approx(0.75, abs=1e-6)


@settings(deadline=None)  # each example is a Newton fit; no test asserts timings
@given(st.floats(-2, 2), st.floats(-2, 2))
def test_the_fit_recovers_the_weights_that_generated_the_probabilities(a: float, b: float) -> None:
    # Fractional targets equal to the true probabilities make the true weights the exact optimum.
    rows = [[1.0, x / 4] for x in range(-8, 9)]
    targets = [1 / (1 + math.exp(-(a + b * x))) for _, x in rows]
    weights = fit_logistic(rows, targets, l2=1e-9)
    assert weights == pytest.approx([a, b], abs=1e-4)


def test_the_learned_score_ranks_a_wrong_looking_answer_below_a_right_looking_one() -> None:
    rng = random.Random(1)
    history = []
    for _ in range(200):
        good = rng.random() < 0.6
        text = "6 x 7 = 42 #### 42" if good else "6 x 7 = 43 so 43.5"
        history.append(
            ScoredRung(
                rung=rung(text).rung, score=1.0 if rng.random() < (0.9 if good else 0.1) else 0.0
            )
        )
    model = fit_acceptance(history)
    assert model.models == ("cheap",)
    right = model.probability(rung("2 x 3 = 6 #### 6").rung)
    wrong = model.probability(rung("2 x 3 = 7, 7.5").rung)
    assert right > 0.8 > 0.2 > wrong


def test_bad_history_is_refused() -> None:
    with pytest.raises(ValueError, match="scored history"):
        fit_acceptance([])
    with pytest.raises(ValueError, match="targets"):
        fit_logistic([[1.0]], [2.0], l2=1.0)
    with pytest.raises(ValueError, match="l2"):
        fit_logistic([[1.0]], [1.0], l2=0.0)
