"""RouteLLM's PGR, APGR and CPT on curves small enough to work out by hand, and their laws."""

from __future__ import annotations

import math
import random
from itertools import pairwise

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from replay._routellm import Curve, CurvePoint, threshold_curve

# Four prompts: weak right on the third only (25%), strong on the first three (75%).
WEAK = [0.0, 0.0, 1.0, 0.0]
STRONG = [1.0, 1.0, 1.0, 0.0]

outcomes = st.lists(st.tuples(st.sampled_from([0.0, 1.0]), st.sampled_from([0.0, 1.0])), min_size=1)


def _split(pairs: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    return [w for w, _ in pairs], [s for _, s in pairs]


def test_a_threshold_over_distinct_gains_gives_a_point_per_prompt() -> None:
    curve = threshold_curve([4.0, 3.0, 2.0, 1.0], WEAK, STRONG)
    assert curve.points == (
        CurvePoint(0.0, 0.25),
        CurvePoint(0.25, 0.5),
        CurvePoint(0.5, 0.75),
        CurvePoint(0.75, 0.75),
        CurvePoint(1.0, 0.75),
    )
    assert curve.pgrs() == [0.0, 0.5, 1.0, 1.0, 1.0]
    # Trapezoids: 0.25 * (0 + 0.5) / 2 + 0.25 * (0.5 + 1) / 2 + 0.25 + 0.25
    assert curve.apgr() == pytest.approx(0.75)
    assert curve.cpt(0.5) == pytest.approx(0.25)
    # Between (0.25, 0.5) and (0.5, 1.0): 0.25 + (0.8 - 0.5) / 0.5 * 0.25
    assert curve.cpt(0.8) == pytest.approx(0.4)


def test_prompts_with_equal_gains_cross_the_threshold_together() -> None:
    curve = threshold_curve([1.0, 0.0, 1.0, 0.0], WEAK, STRONG)
    # The first and third prompt (gain 1) move together: +1 and +0 of four.
    assert curve.points == (CurvePoint(0.0, 0.25), CurvePoint(0.5, 0.5), CurvePoint(1.0, 0.75))
    assert curve.apgr() == pytest.approx(0.5 * 0.5 / 2 + 0.5 * 1.5 / 2)


def test_the_order_is_by_gain_not_by_position() -> None:
    backwards = threshold_curve([1.0, 2.0, 3.0, 4.0], WEAK, STRONG)
    # Worst first: the fourth and third prompts gain nothing, then +1, +1.
    assert backwards.pgrs() == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert backwards.apgr() == pytest.approx(0.25)
    assert backwards.cpt(0.5) == pytest.approx(0.75)


def test_cpt_of_a_target_the_curve_never_reaches_is_none() -> None:
    curve = threshold_curve([4.0, 3.0, 2.0, 1.0], WEAK, STRONG)
    assert curve.cpt(0.0) == 0.0
    assert curve.cpt(1.01) is None


def test_a_curve_that_overshoots_reaches_high_targets_early() -> None:
    # Weak right where strong is wrong: routing the first prompt alone beats both ends.
    curve = threshold_curve([2.0, 1.0], [0.0, 1.0], [1.0, 0.5])
    assert curve.pgrs() == [0.0, 2.0, 1.0]
    assert curve.cpt(1.5) == pytest.approx(0.375)


@pytest.mark.parametrize(
    "points",
    [
        (CurvePoint(0.0, 0.5),),
        (CurvePoint(0.1, 0.5), CurvePoint(1.0, 0.8)),
        (CurvePoint(0.0, 0.5), CurvePoint(0.9, 0.8)),
        (CurvePoint(0.0, 0.5), CurvePoint(0.6, 0.6), CurvePoint(0.4, 0.7), CurvePoint(1.0, 0.8)),
        (CurvePoint(0.0, 0.5), CurvePoint(1.0, 0.5)),
    ],
)
def test_a_curve_runs_from_all_weak_to_all_strong_between_unequal_accuracies(
    points: tuple[CurvePoint, ...],
) -> None:
    with pytest.raises(ValueError):
        Curve(points)


def test_threshold_curve_needs_one_score_per_gain() -> None:
    with pytest.raises(ValueError):
        threshold_curve([], [], [])
    with pytest.raises(ValueError):
        threshold_curve([1.0, 2.0], [0.0], [1.0, 1.0])


@given(outcomes, st.data())
def test_reversing_the_order_mirrors_the_area(
    pairs: list[tuple[float, float]], data: st.DataObject
) -> None:
    weak, strong = _split(pairs)
    assume(sum(weak) != sum(strong))
    gains = data.draw(st.lists(st.integers(-3, 3), min_size=len(pairs), max_size=len(pairs)))
    # PGR_reversed(x) = 1 - PGR(1 - x), so the two areas add up to one.
    forward = threshold_curve([float(g) for g in gains], weak, strong).apgr()
    backward = threshold_curve([float(-g) for g in gains], weak, strong).apgr()
    assert forward + backward == pytest.approx(1.0)


@given(outcomes, st.data())
def test_the_oracle_is_the_best_router_and_beats_a_coin(
    pairs: list[tuple[float, float]], data: st.DataObject
) -> None:
    weak, strong = _split(pairs)
    assume(sum(weak) != sum(strong))
    oracle = threshold_curve([s - w for w, s in pairs], weak, strong).apgr()
    gains = data.draw(st.lists(st.integers(-3, 3), min_size=len(pairs), max_size=len(pairs)))
    other = threshold_curve([float(g) for g in gains], weak, strong).apgr()
    if sum(strong) > sum(weak):
        assert oracle >= 0.5 - 1e-9
        assert oracle >= other - 1e-9
    else:
        # With the weak model ahead PGR's sign flips, and the best router scores lowest.
        assert oracle <= other + 1e-9


@given(outcomes)
def test_a_router_that_cannot_tell_prompts_apart_scores_one_half(
    pairs: list[tuple[float, float]],
) -> None:
    weak, strong = _split(pairs)
    assume(sum(weak) != sum(strong))
    curve = threshold_curve([0.0] * len(pairs), weak, strong)
    assert curve.apgr() == pytest.approx(0.5)
    assert curve.cpt(0.8) == pytest.approx(0.8)


@given(outcomes, st.data())
def test_when_strong_is_never_worse_pgr_climbs_within_zero_and_one(
    pairs: list[tuple[float, float]], data: st.DataObject
) -> None:
    pairs = [(w, max(w, s)) for w, s in pairs]
    weak, strong = _split(pairs)
    assume(sum(weak) != sum(strong))
    gains = data.draw(st.lists(st.floats(-1, 1), min_size=len(pairs), max_size=len(pairs)))
    curve = threshold_curve(gains, weak, strong)
    pgrs = curve.pgrs()
    assert all(-1e-9 <= p <= 1 + 1e-9 for p in pgrs)
    assert all(b >= a - 1e-9 for a, b in pairwise(pgrs))
    assert -1e-9 <= curve.apgr() <= 1 + 1e-9
    targets = [curve.cpt(t) for t in (0.2, 0.5, 0.8, 1.0)]
    assert all(t is not None for t in targets)
    assert all(b >= a for a, b in pairwise(t for t in targets if t is not None))


def test_random_orders_average_one_half() -> None:
    rng = random.Random(7)
    pairs = [(float(rng.random() < 0.6), float(rng.random() < 0.85)) for _ in range(1000)]
    weak, strong = _split(pairs)
    areas = [threshold_curve([rng.random() for _ in pairs], weak, strong).apgr() for _ in range(20)]
    assert math.fsum(areas) / len(areas) == pytest.approx(0.5, abs=0.02)
    assert all(0.4 < area < 0.6 for area in areas)
