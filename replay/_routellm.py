"""RouteLLM's measures of a router between a weak and a strong model: PGR, APGR and CPT.

A router is judged by its curve, accuracy against x, the share of calls it sends to the strong
model, from x = 0 (every call to the weak model) to x = 1 (every call to the strong one).
PGR(x) = (acc(x) - acc_weak) / (acc_strong - acc_weak); APGR is its area over [0, 1];
CPT(p) is the least strong share at which PGR reaches p.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True, slots=True)
class CurvePoint:
    strong_share: float
    accuracy: float


@dataclass(frozen=True, slots=True)
class Curve:
    """Points by strong share from 0 (all weak) to 1 (all strong); the ends fix both accuracies."""

    points: tuple[CurvePoint, ...]

    def __post_init__(self) -> None:
        shares = [p.strong_share for p in self.points]
        if len(shares) < 2 or shares[0] != 0.0 or shares[-1] != 1.0:
            raise ValueError("a curve runs from strong share 0 to strong share 1")
        if any(b < a for a, b in pairwise(shares)):
            raise ValueError("a curve's strong shares must not decrease")
        if self.points[0].accuracy == self.points[-1].accuracy:
            raise ValueError("PGR is undefined: the weak and strong models are equally accurate")

    @property
    def weak_accuracy(self) -> float:
        return self.points[0].accuracy

    @property
    def strong_accuracy(self) -> float:
        return self.points[-1].accuracy

    def pgr(self, accuracy: float) -> float:
        """The share of the weak-to-strong accuracy gap that `accuracy` recovers."""
        return (accuracy - self.weak_accuracy) / (self.strong_accuracy - self.weak_accuracy)

    def pgrs(self) -> list[float]:
        return [self.pgr(p.accuracy) for p in self.points]

    def apgr(self) -> float:
        """The area under PGR over the strong share, by the trapezoid rule between the points."""
        pgrs = self.pgrs()
        return math.fsum(
            (b.strong_share - a.strong_share) * (pa + pb) / 2
            for (a, pa), (b, pb) in pairwise(zip(self.points, pgrs, strict=True))
        )

    def cpt(self, target: float) -> float | None:
        """The least strong share whose PGR reaches `target`, interpolated on the curve.

        None when the curve never reaches it (only possible for targets above 1).
        """
        pgrs = self.pgrs()
        if pgrs[0] >= target:
            return 0.0
        for (a, pa), (b, pb) in pairwise(zip(self.points, pgrs, strict=True)):
            if pb >= target:
                # pa < target <= pb, so the segment rises and the division is safe.
                return a.strong_share + (target - pa) / (pb - pa) * (
                    b.strong_share - a.strong_share
                )
        return None


def threshold_curve(
    gains: Sequence[float], weak_scores: Sequence[float], strong_scores: Sequence[float]
) -> Curve:
    """The curve of routing to the strong model every prompt whose gain exceeds a threshold.

    The threshold sweeps from above every gain to below every gain; prompts with equal gains
    cross it together, so the curve has one point per distinct gain and the line between two
    points is what breaking those ties at random gives on average.
    """
    n = len(gains)
    if n == 0 or len(weak_scores) != n or len(strong_scores) != n:
        raise ValueError("gains and both models' scores must be non-empty and of one length")
    order = sorted(range(n), key=lambda i: -gains[i])
    total = math.fsum(weak_scores)
    points = [CurvePoint(0.0, total / n)]
    for place, i in enumerate(order, start=1):
        total += strong_scores[i] - weak_scores[i]
        if place == n or gains[order[place]] != gains[i]:
            points.append(CurvePoint(place / n, total / n))
    # The running sum drifts by rounding; the ends are the two models' exact accuracies.
    points[-1] = CurvePoint(1.0, math.fsum(strong_scores) / n)
    return Curve(tuple(points))
