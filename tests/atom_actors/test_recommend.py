from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from atom_actors.catalog import ModelSpec
from atom_actors.recommend import (
    QUALITY_TOLERANCE,
    Task,
    ensemble_quality,
    majority_accuracy,
    recommend,
)
from atom_actors.snapshot import ModelFigures, RouteSnapshot, Strategy
from tests.atom_actors.conftest import capability_names, probabilities, snapshots, spec

TASK = Task("reasoning", prompt_tokens=500, answer_tokens=500)


def test_a_clearly_strongest_model_is_recommended_with_quality_first() -> None:
    catalog = (spec("strong", 10, 30, prior=0.95), spec("cheap", 0.25, 1.25, prior=0.4))
    result = recommend(TASK, RouteSnapshot(catalog))
    assert result.strategy is not None
    assert result.strategy.strategy is Strategy.QUALITY_FIRST
    assert result.strategy.models == ("strong",)
    assert [m.model for m in result.models] == ["strong", "cheap"]


def test_a_cheap_model_as_good_as_the_strongest_makes_cost_first_the_advice() -> None:
    catalog = (spec("strong", 10, 30, prior=0.9), spec("cheap", 0.25, 1.25, prior=0.88))
    result = recommend(TASK, RouteSnapshot(catalog))
    assert result.strategy is not None
    assert result.strategy.strategy is Strategy.COST_FIRST
    assert result.strategy.models == ("cheap",)
    assert result.strategy.min_quality is None


def test_the_cheapest_near_the_top_is_found_with_a_quality_floor(
    catalog: tuple[ModelSpec, ...],
) -> None:
    result = recommend(TASK, RouteSnapshot(catalog))
    advice = result.strategy
    assert advice is not None
    assert advice.strategy is Strategy.COST_FIRST
    assert advice.models == ("gpt-4-turbo",)
    assert advice.min_quality is not None
    strongest = result.models[0]
    assert math.isclose(advice.min_quality, strongest.expected_quality - QUALITY_TOLERANCE)
    assert advice.expected_cost_usd < strongest.expected_cost_usd
    assert "min_quality" in result.reason


def test_a_vote_of_cheap_models_is_advised_when_it_beats_one_strong_model() -> None:
    dear = spec("dear", 30, 60, prior=0.77)
    cheap = [spec(name, 0.1, 0.1, prior=0.7) for name in "abcd"]
    cheap[3] = spec("d", 0.2, 0.2, prior=0.7)
    result = recommend(TASK, RouteSnapshot((dear, *cheap)))
    advice = result.strategy
    assert advice is not None
    assert advice.strategy is Strategy.ENSEMBLE
    assert advice.models == ("a", "b", "c")
    assert 0.7 < advice.expected_quality < 0.77 + QUALITY_TOLERANCE
    assert advice.expected_cost_usd < result.models[0].expected_cost_usd


def test_the_task_targets_exclude_models_with_reasons(catalog: tuple[ModelSpec, ...]) -> None:
    figures = {"claude-3-opus": ModelFigures(ttft_ms=3000, tokens_per_s=10)}
    task = Task("reasoning", 500, 500, latency_target_ms=20_000, budget_usd=0.03, min_quality=0.7)
    result = recommend(task, RouteSnapshot(catalog, figures=figures))
    found = {e.model: e.reason for e in result.excluded}
    assert found["claude-3-haiku"].startswith("quality: ")
    assert found["gpt-4"].startswith("cost: ")
    assert found["claude-3-opus"].startswith("cost: ")
    assert {m.model for m in result.models} == {"gpt-4-turbo", "claude-3-sonnet"}


def test_no_model_meets_the_task(catalog: tuple[ModelSpec, ...]) -> None:
    result = recommend(Task("multimodal", 10, 10, min_quality=0.99), RouteSnapshot(catalog))
    assert result.models == ()
    assert result.strategy is None
    assert result.reason.startswith("no model meets the task")
    assert json.loads(json.dumps(result.to_dict()))["recommended"] is None


@settings(max_examples=40)
@given(snapshots(), capability_names, st.integers(0, 4000), st.integers(1, 2000))
def test_every_option_meets_the_targets_and_the_advice_is_near_the_best(
    snapshot: RouteSnapshot, capability: str, prompt: int, answer: int
) -> None:
    task = Task(capability, prompt, answer, budget_usd=0.5)
    result = recommend(task, snapshot)
    data = json.loads(json.dumps(result.to_dict()))
    assert len(data["models"]) == len(result.models)
    if result.strategy is None:
        return
    best = max(option.expected_quality for option in result.strategies)
    assert result.strategy.expected_quality >= best - QUALITY_TOLERANCE
    for option in result.strategies:
        assert option.expected_cost_usd <= 0.5
        assert option.reason
        if option.expected_quality >= best - QUALITY_TOLERANCE:
            assert option.expected_cost_usd >= result.strategy.expected_cost_usd


@given(probabilities)
def test_a_vote_of_three_amplifies_whichever_way_members_lean(p: float) -> None:
    vote = majority_accuracy([p, p, p])
    if p > 0.5:
        assert vote >= p - 1e-12
    else:
        assert vote <= p + 1e-12
    assert majority_accuracy([1.0, 1.0, 0.0]) == 1.0
    assert majority_accuracy([1.0, 0.0]) == 0.0


@given(st.lists(probabilities, min_size=1, max_size=7))
def test_a_vote_estimate_is_a_probability_between_the_mean_and_independence(
    qualities: list[float],
) -> None:
    independent = majority_accuracy(qualities)
    assert -1e-12 <= independent <= 1 + 1e-12
    mean = sum(qualities) / len(qualities)
    assert min(mean, independent) - 1e-12 <= ensemble_quality(qualities)
    assert ensemble_quality(qualities) <= max(mean, independent) + 1e-12
