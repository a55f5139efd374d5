"""Learned quality: a model's catalog prior, moved by every score it earns.

q = (k * prior + sum of scores) / (k + number of scores), per model and per capability. The
prior counts as k pseudo-observations, so one lucky score cannot crown a model and a model with
much evidence is judged by it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

PRIOR_WEIGHT: Final = 5.0


@dataclass(frozen=True, slots=True)
class Evidence:
    """Scores seen so far as a sum and a count, so a projection folds them in one at a time."""

    total: float = 0.0
    count: int = 0

    def add(self, score: float) -> Evidence:
        """This evidence with one more score in [0, 1]."""
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"a score must be in [0, 1], got {score}")
        return Evidence(self.total + score, self.count + 1)

    def __add__(self, other: Evidence) -> Evidence:
        return Evidence(self.total + other.total, self.count + other.count)


def learned_quality(prior: float, evidence: Evidence, k: float = PRIOR_WEIGHT) -> float:
    """The prior moved by the evidence: (k * prior + total) / (k + count)."""
    if k <= 0:
        raise ValueError(f"the prior weight must be positive, got {k}")
    return (k * prior + evidence.total) / (k + evidence.count)


class QualitySource(StrEnum):
    CAPABILITY = "capability"
    OVERALL = "overall"
    PRIOR = "prior"


@dataclass(frozen=True, slots=True)
class QualityEstimate:
    """A learned quality, with how many scores it rests on and at what level they were taken."""

    value: float
    evidence: int
    source: QualitySource


def estimate(
    prior: float,
    by_capability: Mapping[str, Evidence],
    capability: str,
    k: float = PRIOR_WEIGHT,
) -> QualityEstimate:
    """Quality at `capability`; without scores there, overall quality; without any, the prior."""
    specific = by_capability.get(capability, Evidence())
    if specific.count:
        return QualityEstimate(
            learned_quality(prior, specific, k), specific.count, QualitySource.CAPABILITY
        )
    overall = Evidence(
        math.fsum(e.total for e in by_capability.values()),
        sum(e.count for e in by_capability.values()),
    )
    if overall.count:
        return QualityEstimate(
            learned_quality(prior, overall, k), overall.count, QualitySource.OVERALL
        )
    return QualityEstimate(prior, 0, QualitySource.PRIOR)
