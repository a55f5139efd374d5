from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atom_actors.quality import (
    PRIOR_WEIGHT,
    Evidence,
    QualitySource,
    estimate,
    learned_quality,
)
from tests.atom_actors.conftest import probabilities

scores = st.lists(probabilities, max_size=30)


def fold(values: list[float]) -> Evidence:
    evidence = Evidence()
    for value in values:
        evidence = evidence.add(value)
    return evidence


def test_without_evidence_the_quality_is_the_prior() -> None:
    assert learned_quality(0.7, Evidence()) == 0.7


@given(probabilities, st.lists(probabilities, min_size=1, max_size=30))
def test_learned_quality_lies_between_the_prior_and_the_mean_score(
    prior: float, values: list[float]
) -> None:
    quality = learned_quality(prior, fold(values))
    mean = math.fsum(values) / len(values)
    assert min(prior, mean) - 1e-12 <= quality <= max(prior, mean) + 1e-12


@given(probabilities, probabilities)
def test_more_of_the_same_score_pulls_the_quality_closer_to_it(prior: float, score: float) -> None:
    distances = [abs(learned_quality(prior, fold([score] * n)) - score) for n in range(0, 40, 8)]
    assert all(later <= earlier + 1e-12 for earlier, later in pairwise(distances))
    assert distances[-1] <= abs(prior - score) * PRIOR_WEIGHT / (PRIOR_WEIGHT + 32) + 1e-12


def test_one_lucky_score_does_not_outrank_a_better_prior() -> None:
    lucky = learned_quality(0.5, fold([1.0]))
    assert 0.5 < lucky < 0.7


@given(scores, scores)
def test_evidence_folds_in_any_grouping(first: list[float], second: list[float]) -> None:
    merged = fold(first) + fold(second)
    assert merged.count == len(first) + len(second)
    assert math.isclose(merged.total, fold(first + second).total, abs_tol=1e-9)
    assert merged == fold(second) + fold(first)


@pytest.mark.parametrize("bad", [-0.1, 1.1, math.nan])
def test_a_score_outside_zero_to_one_is_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        Evidence().add(bad)


def test_the_prior_weight_must_be_positive() -> None:
    with pytest.raises(ValueError):
        learned_quality(0.5, Evidence(), k=0)


def test_estimate_prefers_scores_at_the_capability() -> None:
    by_capability = {"reasoning": fold([1.0] * 5), "translation": fold([0.0] * 5)}
    at_reasoning = estimate(0.5, by_capability, "reasoning")
    assert at_reasoning.source is QualitySource.CAPABILITY
    assert at_reasoning.evidence == 5
    assert at_reasoning.value > 0.5 > estimate(0.5, by_capability, "translation").value


def test_estimate_falls_back_to_overall_quality_then_to_the_prior() -> None:
    by_capability = {"reasoning": fold([1.0] * 4), "translation": fold([0.0] * 2)}
    overall = estimate(0.5, by_capability, "code_generation")
    assert overall.source is QualitySource.OVERALL
    assert overall.evidence == 6
    assert overall.value == learned_quality(
        0.5, by_capability["reasoning"] + by_capability["translation"]
    )
    assert estimate(0.3, {}, "code_generation") == estimate(
        0.3, {"x": Evidence()}, "code_generation"
    )
    assert estimate(0.3, {}, "code_generation").source is QualitySource.PRIOR
    assert estimate(0.3, {}, "code_generation").value == 0.3
