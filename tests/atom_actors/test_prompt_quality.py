"""Per-prompt quality: the length line, TF-IDF neighbours, and predictions worked out by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atom_actors.prompt_quality import (
    Line,
    Prediction,
    ScoredPrompt,
    TfIdfIndex,
    fit_prompt_quality,
    least_squares,
    log_length,
    words,
)

# Four prompts of one length (so the line is flat): the weak model fails the alpha ones only.
SAME_LENGTH = [
    ScoredPrompt("alpha train one", {"weak": 0.0, "strong": 1.0}),
    ScoredPrompt("alpha train two", {"weak": 0.0, "strong": 1.0}),
    ScoredPrompt("omega train one", {"weak": 1.0, "strong": 1.0}),
    ScoredPrompt("omega train two", {"weak": 1.0, "strong": 1.0}),
]


def test_words_are_lower_case_letters_or_digits() -> None:
    assert words("Tom's $1,800.50 Apples!") == ["tom", "s", "1", "800", "50", "apples"]


def test_least_squares_fits_a_line_and_is_flat_without_spread() -> None:
    line = least_squares([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)])
    assert line.intercept == pytest.approx(1.0)
    assert line.slope == pytest.approx(2.0)
    assert least_squares([(3.0, 0.0), (3.0, 1.0)]) == Line(0.5, 0.0)
    with pytest.raises(ValueError):
        least_squares([])


@given(
    st.floats(-5, 5),
    st.floats(-5, 5),
    st.lists(st.floats(-10, 10), min_size=2, unique=True).filter(
        lambda xs: max(xs) - min(xs) > 0.1
    ),
)
def test_least_squares_recovers_the_line_its_points_lie_on(
    intercept: float, slope: float, xs: list[float]
) -> None:
    line = least_squares([(x, intercept + slope * x) for x in xs])
    assert line.slope == pytest.approx(slope, abs=1e-6)
    assert line.intercept == pytest.approx(intercept, abs=1e-6)


def test_nearest_ranks_by_cosine_and_leaves_out_documents_with_no_word_in_common() -> None:
    index = TfIdfIndex.build(["red apple pie", "blue car", "red car", "green tea"])
    assert index.nearest("a red car", 4) == [2, 1, 0]
    assert index.nearest("a red car", 1) == [2]
    assert index.nearest("purple", 4) == []


def test_nearest_settles_ties_for_the_earlier_document() -> None:
    index = TfIdfIndex.build(["x cat", "y cat", "z cat"])
    assert index.nearest("cat", 2) == [0, 1]


def test_rare_words_count_for_more_than_common_ones() -> None:
    # "the" is in every document, "zebra" in one: sharing "zebra" makes the closer neighbour.
    index = TfIdfIndex.build(["the the the cat", "the zebra", "the dog"])
    assert index.nearest("the the the zebra", 1) == [1]


def test_the_neighbours_move_a_prediction_off_the_line() -> None:
    model = fit_prompt_quality(SAME_LENGTH, neighbours=2, offset_prior=0.0)
    # Weak's line is flat at 0.5; the two alpha neighbours lie 0.5 under it, the omega ones over.
    assert model.predict("alpha test") == {
        "weak": Prediction(0.0, 4),
        "strong": Prediction(1.0, 4),
    }
    assert model.predict("omega test")["weak"] == Prediction(1.0, 4)
    # No word in common with any scored prompt: the line alone.
    assert model.predict("nothing shared")["weak"] == Prediction(0.5, 4)


def test_more_neighbours_than_similar_prompts_averages_the_similar_ones() -> None:
    model = fit_prompt_quality(SAME_LENGTH, neighbours=40, offset_prior=0.0)
    # "alpha one" shares a word with three of the four: residuals -0.5, -0.5, +0.5.
    assert model.predict("alpha one")["weak"].score == pytest.approx(0.5 - 0.5 / 3)


def test_the_offset_of_a_few_neighbours_is_shrunk_toward_the_line() -> None:
    model = fit_prompt_quality(SAME_LENGTH, neighbours=2)
    # Two offsets of -0.5 against 20 more of none: -1 / 22.
    assert model.predict("alpha test")["weak"].score == pytest.approx(0.5 - 1 / 22)
    assert fit_prompt_quality(SAME_LENGTH, 2, 2.0).predict("alpha")["weak"].score == 0.25


def test_without_neighbours_longer_prompts_follow_the_line() -> None:
    examples = [
        ScoredPrompt("a" * 9, {"weak": 1.0}),
        ScoredPrompt("b" * 99, {"weak": 0.0}),
    ]
    model = fit_prompt_quality(examples, neighbours=1)
    line = model.lines["weak"]
    assert line.at(log_length("a" * 9)) == pytest.approx(1.0)
    assert line.at(log_length("b" * 99)) == pytest.approx(0.0)
    # Halfway in log length, and no word in common: halfway in score.
    middle = "c" * (round(math.sqrt(10 * 100)) - 1)
    assert model.predict(middle)["weak"].score == pytest.approx(0.5, abs=0.01)
    # Far beyond the longest: the line runs below 0, the prediction stops there.
    assert model.predict("d" * 5000)["weak"].score == 0.0


def test_a_model_is_judged_only_on_the_prompts_it_was_scored_on() -> None:
    examples = [*SAME_LENGTH, ScoredPrompt("alpha extra", {"strong": 0.0})]
    model = fit_prompt_quality(examples, neighbours=40, offset_prior=0.0)
    assert model.predict("alpha")["weak"] == Prediction(0.0, 4)
    assert model.predict("alpha")["strong"].evidence == 5


def test_nothing_scored_predicts_nothing() -> None:
    assert fit_prompt_quality([ScoredPrompt("a question", {})]).predict("a question") == {}


@pytest.mark.parametrize("score", [-0.1, 1.1])
def test_scores_must_lie_in_zero_to_one(score: float) -> None:
    with pytest.raises(ValueError):
        fit_prompt_quality([ScoredPrompt("q", {"m": score})])


@pytest.mark.parametrize(("neighbours", "offset_prior"), [(0, 20.0), (1, -1.0), (1, math.inf)])
def test_at_least_one_neighbour_and_a_finite_offset_prior(
    neighbours: int, offset_prior: float
) -> None:
    with pytest.raises(ValueError):
        fit_prompt_quality(SAME_LENGTH, neighbours, offset_prior)


prompts = st.text(alphabet="abc xyz", min_size=1, max_size=40)


@given(
    st.lists(st.tuples(prompts, st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=20),
    prompts,
    st.integers(1, 10),
)
def test_every_prediction_is_a_probability(
    examples: list[tuple[str, float, float]], query: str, neighbours: int
) -> None:
    model = fit_prompt_quality(
        [ScoredPrompt(p, {"weak": w, "strong": s}) for p, w, s in examples], neighbours
    )
    predictions = model.predict(query)
    assert set(predictions) == {"weak", "strong"}
    for prediction in predictions.values():
        assert 0.0 <= prediction.score <= 1.0
        assert prediction.evidence == len(examples)
