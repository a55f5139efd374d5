"""Routers: each takes every test prompt and says what it did with it."""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from atom_actors.catalog import ModelSpec
from atom_actors.combiners import MemberAnswer, combine
from atom_actors.cost import estimate_message_tokens
from atom_actors.prompt_quality import Prediction
from atom_actors.quality import Evidence
from atom_actors.snapshot import (
    EnsembleMethod,
    EnsembleSpec,
    ModelFigures,
    RouteDecision,
    RouteRequest,
    RouteSnapshot,
    Strategy,
)
from atom_actors.strategies import route

from ._dataset import Case
from ._settings import CAPABILITY, MAX_TOKENS, NUMBER, PROMPT_LENGTH, RANDOM, EvaluationError


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a router did with one prompt: the models it called, the score and cost it got."""

    models: tuple[str, ...]
    score: float
    cost_pico: int
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Routed:
    """A router's outcomes on the test part, and the per-prompt gains its threshold sweeps."""

    name: str
    outcomes: tuple[Outcome, ...]
    gains: tuple[float, ...] | None = None


def snapshot_of(
    catalog: tuple[ModelSpec, ...], predicted: Mapping[str, Prediction]
) -> RouteSnapshot:
    # A prediction weighs as the scores it was learnt from, so the prior barely moves it.
    figures = {
        model: ModelFigures(quality={CAPABILITY: Evidence(p.score * p.evidence, p.evidence)})
        for model, p in predicted.items()
        if p.evidence
    }
    return RouteSnapshot(catalog=catalog, figures=figures)


def _request(case: Case, strategy: Strategy, ensemble: EnsembleSpec | None = None) -> RouteRequest:
    prompt_tokens = estimate_message_tokens([{"role": "user", "content": case.prompt}])
    return RouteRequest(
        CAPABILITY, prompt_tokens, MAX_TOKENS, strategy, ensemble=ensemble or EnsembleSpec()
    )


def _single(case: Case, model: str, detail: Mapping[str, Any]) -> Outcome:
    return Outcome((model,), case.scores[model], case.costs[model], detail)


def _quality(decision: RouteDecision, model: str) -> float:
    return next(c.quality for c in decision.candidates if c.model == model)


def strategy_router(
    strategy: Strategy,
    cases: Sequence[Case],
    snapshots: Sequence[RouteSnapshot],
    ranked: Sequence[str],
) -> Routed:
    """route() for each prompt in turn; quality_first's gains are its candidates' quality gap."""
    outcomes, decisions = [], []
    counter = 0
    for case, snapshot in zip(cases, snapshots, strict=True):
        decision = route(replace(snapshot, round_robin_counter=counter), _request(case, strategy))
        counter = decision.next_counter or 0
        if decision.chosen is None:
            raise EvaluationError(f"{strategy}: no model chosen: {decision.reason}")
        outcomes.append(_single(case, decision.chosen.model, {"route": decision.to_dict()}))
        decisions.append(decision)
    gains = None
    if strategy is Strategy.QUALITY_FIRST and len(ranked) == 2:
        weak, strong = ranked
        gains = tuple(_quality(d, strong) - _quality(d, weak) for d in decisions)
    return Routed(strategy.value, tuple(outcomes), gains)


def ensemble_router(
    method: EnsembleMethod, cases: Sequence[Case], snapshots: Sequence[RouteSnapshot]
) -> Routed:
    """The ensemble strategy over every model, its members' final numbers combined by `method`."""
    outcomes = []
    for case, snapshot in zip(cases, snapshots, strict=True):
        spec = EnsembleSpec(method, size=len(snapshot.catalog))
        decision = route(snapshot, _request(case, Strategy.ENSEMBLE, spec))
        plan = decision.ensemble
        if plan is None or not plan.members:
            raise EvaluationError(f"ensemble: no member chosen: {decision.reason}")
        members = [MemberAnswer(m, m, case.texts[m], _quality(decision, m)) for m in plan.members]
        result = combine(method, members, NUMBER)
        # The member that speaks for the result gave its answer, hence its score.
        score = case.scores[result.chosen] if result.chosen is not None else 0.0
        detail = {"route": decision.to_dict(), "ensemble": result.to_dict()}
        outcomes.append(
            Outcome(plan.members, score, sum(case.costs[m] for m in plan.members), detail)
        )
    return Routed(f"ensemble:{method.value}", tuple(outcomes))


def random_router(cases: Sequence[Case], ranked: Sequence[str], seed: int) -> Routed:
    """Each prompt to a uniformly drawn model; the draws are the gains, a random order."""
    rng = random.Random(seed)
    draws = [rng.random() for _ in cases]
    outcomes = tuple(
        _single(case, ranked[int(draw * len(ranked))], {"draw": draw})
        for case, draw in zip(cases, draws, strict=True)
    )
    return Routed(RANDOM, outcomes, tuple(draws))


def prompt_length_router(
    cases: Sequence[Case], train: Sequence[Case], ranked: Sequence[str]
) -> Routed:
    """Prompts longer than the train part's median to the strong model; lengths are the gains."""
    weak, strong = ranked
    median = statistics.median(len(case.prompt) for case in train)
    outcomes = tuple(
        _single(
            case,
            strong if len(case.prompt) > median else weak,
            {"length": len(case.prompt), "median": median},
        )
        for case in cases
    )
    return Routed(PROMPT_LENGTH, outcomes, tuple(float(len(case.prompt)) for case in cases))


def model_router(model: str, cases: Sequence[Case]) -> Routed:
    """Every prompt to one model."""
    return Routed(f"model:{model}", tuple(_single(case, model, {}) for case in cases))
