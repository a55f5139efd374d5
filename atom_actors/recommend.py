"""Recommendations: which models and which strategy suit a task, and what each should cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from atom_actors.cost import PromptSize, format_usd, from_usd, to_usd
from atom_actors.snapshot import (
    Candidate,
    Exclusion,
    RouteRequest,
    RouteSnapshot,
    Strategy,
)
from atom_actors.strategies import route

# Expected qualities closer than this are a tie: estimates from a handful of scores are no finer.
QUALITY_TOLERANCE: Final = 0.05
ENSEMBLE_SIZE: Final = 3
# The share of members' errors taken to be common to all of them. Models trained on similar
# data fail on the same questions, so assuming independent errors overstates what a vote gains.
SHARED_ERRORS: Final = 0.5
# Among options equally good and equally cheap and fast, the simplest wins.
_PREFERENCE: Final = (
    Strategy.QUALITY_FIRST,
    Strategy.COST_FIRST,
    Strategy.SPEED_FIRST,
    Strategy.ENSEMBLE,
)


@dataclass(frozen=True, slots=True)
class Task:
    """What a client means to run: sizes in tokens, and its targets (None: no target)."""

    capability: str
    prompt_tokens: int
    answer_tokens: int
    latency_target_ms: float | None = None
    budget_usd: float | None = None
    min_quality: float | None = None


@dataclass(frozen=True, slots=True)
class ModelOption:
    model: str
    expected_cost_usd: float
    expected_latency_ms: float
    expected_quality: float
    quality_evidence: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "expected_cost_usd": self.expected_cost_usd,
            "expected_latency_ms": self.expected_latency_ms,
            "expected_quality": self.expected_quality,
            "quality_evidence": self.quality_evidence,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class StrategyOption:
    """What a strategy would do for the task: the model it picks, or an ensemble's members.

    min_quality, when set, is the floor to send with the requests for the strategy to pick so.
    """

    strategy: Strategy
    models: tuple[str, ...]
    min_quality: float | None
    expected_cost_usd: float
    expected_latency_ms: float
    expected_quality: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "models": list(self.models),
            "min_quality": self.min_quality,
            "expected_cost_usd": self.expected_cost_usd,
            "expected_latency_ms": self.expected_latency_ms,
            "expected_quality": self.expected_quality,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Models that meet the task, best first; strategies, the recommended one first."""

    models: tuple[ModelOption, ...]
    strategies: tuple[StrategyOption, ...]
    excluded: tuple[Exclusion, ...]
    reason: str

    @property
    def strategy(self) -> StrategyOption | None:
        return self.strategies[0] if self.strategies else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": [option.to_dict() for option in self.models],
            "strategies": [option.to_dict() for option in self.strategies],
            "recommended": self.strategies[0].strategy.value if self.strategies else None,
            "excluded": [exclusion.to_dict() for exclusion in self.excluded],
            "reason": self.reason,
        }


def majority_accuracy(qualities: Sequence[float]) -> float:
    """P(more than half are right) when each is right with its quality, independently."""
    right = [1.0]  # right[k]: the probability that k of the members so far are right
    for q in qualities:
        right = [
            (right[k] * (1 - q) if k < len(right) else 0.0) + (right[k - 1] * q if k else 0.0)
            for k in range(len(right) + 1)
        ]
    return math.fsum(p for k, p in enumerate(right) if 2 * k > len(qualities))


def ensemble_quality(qualities: Sequence[float]) -> float:
    """A majority vote's expected quality: independent errors in part, shared in SHARED_ERRORS."""
    mean = math.fsum(qualities) / len(qualities)
    return SHARED_ERRORS * mean + (1 - SHARED_ERRORS) * majority_accuracy(qualities)


def recommend(task: Task, snapshot: RouteSnapshot) -> Recommendation:
    """Rank the models that meet the task, and the strategies by what they would pick.

    The options are quality_first, cost_first and speed_first as they stand, cost_first with a
    quality floor QUALITY_TOLERANCE under the best model, and a majority vote of the cheapest
    models. The recommended one is the cheapest (then fastest) whose expected quality is within
    QUALITY_TOLERANCE of the best option's.
    """
    request = RouteRequest(
        capability=task.capability,
        prompt=PromptSize.of_tokens(task.prompt_tokens),
        max_tokens=task.answer_tokens,
        min_quality=task.min_quality,
        max_cost_usd=task.budget_usd,
        deadline_ms=task.latency_target_ms,
    )
    ranked = route(snapshot, request)
    if not ranked.candidates:
        return Recommendation((), (), ranked.excluded, f"no model meets the task: {ranked.reason}")
    models = tuple(_model_option(candidate) for candidate in ranked.candidates)
    strongest = ranked.candidates[0]
    options = [_single(Strategy.QUALITY_FIRST, strongest, None, "the strongest")]
    for strategy, what in (
        (Strategy.COST_FIRST, "the cheapest"),
        (Strategy.SPEED_FIRST, "the fastest"),
    ):
        pick = route(snapshot, replace(request, strategy=strategy)).candidates[0]
        options.append(_single(strategy, pick, None, what))
    floor = strongest.quality - QUALITY_TOLERANCE
    if floor > (task.min_quality or 0.0):
        near = replace(request, strategy=Strategy.COST_FIRST, min_quality=floor)
        pick = route(snapshot, near).candidates[0]
        what = f"the cheapest within {QUALITY_TOLERANCE:g} of the strongest"
        options.append(_single(Strategy.COST_FIRST, pick, floor, what))
    ensemble = _ensemble(ranked.candidates, task, snapshot)
    if ensemble is not None:
        options.append(ensemble)
    best = max(option.expected_quality for option in options)
    ordered = tuple(
        sorted(
            options,
            key=lambda o: (
                o.expected_quality < best - QUALITY_TOLERANCE,
                o.expected_cost_usd,
                o.expected_latency_ms,
                _PREFERENCE.index(o.strategy),
                o.min_quality is not None,
            ),
        )
    )
    top = ordered[0]
    floor_note = f" with min_quality {top.min_quality:.3g}" if top.min_quality is not None else ""
    reason = (
        f"{top.strategy.value}{floor_note} ({', '.join(top.models)}): the cheapest option within"
        f" {QUALITY_TOLERANCE:g} of the best expected quality {best:.3g},"
        f" at {format_usd(top.expected_cost_usd)} USD and {top.expected_latency_ms:.0f} ms"
    )
    return Recommendation(models, ordered, ranked.excluded, reason)


def _model_option(candidate: Candidate) -> ModelOption:
    return ModelOption(
        model=candidate.model,
        expected_cost_usd=candidate.expected_cost_usd,
        expected_latency_ms=candidate.expected_latency_ms,
        expected_quality=candidate.quality,
        quality_evidence=candidate.quality_evidence,
        reason=(
            f"quality {candidate.quality:.3g} from {candidate.quality_evidence} scores,"
            f" {format_usd(candidate.expected_cost_usd)} USD,"
            f" {candidate.expected_latency_ms:.0f} ms"
        ),
    )


def _single(
    strategy: Strategy, pick: Candidate, min_quality: float | None, what: str
) -> StrategyOption:
    return StrategyOption(
        strategy=strategy,
        models=(pick.model,),
        min_quality=min_quality,
        expected_cost_usd=pick.expected_cost_usd,
        expected_latency_ms=pick.expected_latency_ms,
        expected_quality=pick.quality,
        reason=f"picks {pick.model}, {what}",
    )


def _ensemble(
    candidates: Sequence[Candidate], task: Task, snapshot: RouteSnapshot
) -> StrategyOption | None:
    """A majority vote of the cheapest eligible models, if there are enough and they fit.

    Its expected quality holds only for answers that can be voted on (numbers, choices).
    """
    if len(candidates) < ENSEMBLE_SIZE:
        return None
    members = sorted(candidates, key=lambda c: (c.reservation_pico, -c.quality, c.model))
    members = members[:ENSEMBLE_SIZE]
    total = sum(member.reservation_pico for member in members)
    limits = [from_usd(x) for x in (task.budget_usd, snapshot.headroom_usd) if x is not None]
    if limits and total > min(limits):
        return None
    names = tuple(member.model for member in members)
    return StrategyOption(
        strategy=Strategy.ENSEMBLE,
        models=names,
        min_quality=None,
        expected_cost_usd=to_usd(total),
        expected_latency_ms=max(member.expected_latency_ms for member in members),
        expected_quality=ensemble_quality([member.quality for member in members]),
        reason=f"a majority vote of {', '.join(names)}, the cheapest",
    )
