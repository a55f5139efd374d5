"""Routers: each takes every test prompt and says what it did with it."""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from atom_actors.acceptance import AcceptanceModel, ScoredRung, fit_acceptance
from atom_actors.answers import AnswerFormat
from atom_actors.cascade import (
    Acceptance,
    AcceptanceScorer,
    Attempt,
    Policy,
    RungView,
    run_cascade,
    view_of,
)
from atom_actors.catalog import ModelSpec
from atom_actors.combiners import MemberAnswer, combine
from atom_actors.cost import PromptSize, estimate_message_tokens
from atom_actors.prompt_quality import Prediction
from atom_actors.quality import Evidence
from atom_actors.snapshot import (
    CascadeSpec,
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
from ._settings import (
    AGREEMENT_CASCADE,
    CAPABILITY,
    CASCADE,
    MAX_TOKENS,
    PROMPT_LENGTH,
    RANDOM,
    EvaluationError,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a router did with one prompt: the models it called, the score and cost it got."""

    models: tuple[str, ...]
    score: float
    cost_pico: int
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Point:
    """One setting of a router's knob and what the router then gave on the test part."""

    knob: float
    accuracy: float
    cost_pico: int


@dataclass(frozen=True, slots=True)
class Routed:
    """A router's outcomes on the test part (at its default setting), and along its knob.

    `gains` (two models) order the prompts for the strong model, so a threshold on them traces
    RouteLLM's curve; `sweep` holds the points of cost against accuracy the knob reaches.
    """

    name: str
    outcomes: tuple[Outcome, ...]
    gains: tuple[float, ...] | None = None
    sweep: tuple[Point, ...] = ()


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


def _request(
    case: Case,
    strategy: Strategy,
    ensemble: EnsembleSpec | None = None,
    cascade: CascadeSpec | None = None,
) -> RouteRequest:
    prompt_tokens = estimate_message_tokens([{"role": "user", "content": case.prompt}])
    return RouteRequest(
        CAPABILITY,
        PromptSize.of_tokens(prompt_tokens),
        MAX_TOKENS,
        strategy,
        ensemble=ensemble or EnsembleSpec(),
        cascade=cascade or CascadeSpec(),
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
    sweep: tuple[Point, ...] = ()
    if strategy is Strategy.QUALITY_FIRST:
        qualities = [{c.model: c.quality for c in d.candidates} for d in decisions]
        sweep = utility_sweep(cases, qualities)
        if len(ranked) == 2:
            weak, strong = ranked
            gains = tuple(q[strong] - q[weak] for q in qualities)
    return Routed(strategy.value, tuple(outcomes), gains, sweep)


# The knob of quality_first with any number of models: a price on cost, in quality per the
# dearest model's mean cost. 0 buys the best predicted quality; past 10^3 the cheapest model.
PRICES_OF_COST: Final = (0.0, *(10 ** (e / 10) for e in range(-30, 31)), math.inf)


def utility_sweep(
    cases: Sequence[Case], qualities: Sequence[Mapping[str, float]]
) -> tuple[Point, ...]:
    """For each price of cost λ, every prompt to the model with the most q - λ x cost / max."""
    models = sorted(cases[0].costs)
    mean = {m: statistics.fmean(case.costs[m] for case in cases) for m in models}
    top = max(mean.values()) or 1.0
    points = []
    for price in PRICES_OF_COST:
        score = cost = 0.0
        for case, quality in zip(cases, qualities, strict=True):
            if math.isinf(price):
                pick = min(models, key=lambda m: (mean[m], -quality[m], m))
            else:
                pick = max(models, key=lambda m: (quality[m] - price * mean[m] / top, -mean[m], m))
            score += case.scores[pick]
            cost += case.costs[pick]
        points.append(Point(price, score / len(cases), int(cost)))
    return tuple(points)


def ensemble_router(
    method: EnsembleMethod,
    cases: Sequence[Case],
    snapshots: Sequence[RouteSnapshot],
    fmt: AnswerFormat,
) -> Routed:
    """The ensemble strategy over every model, its members' answers combined by `method`."""
    outcomes = []
    for case, snapshot in zip(cases, snapshots, strict=True):
        spec = EnsembleSpec(method, size=len(snapshot.catalog))
        decision = route(snapshot, _request(case, Strategy.ENSEMBLE, spec))
        plan = decision.ensemble
        if plan is None or not plan.members:
            raise EvaluationError(f"ensemble: no member chosen: {decision.reason}")
        members = [
            MemberAnswer(m, m, case.texts[m], _quality(decision, m), case.logprobs[m])
            for m in plan.members
        ]
        result = combine(method, members, fmt)
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


# The cascade: the ladder route() plans, run by cascade.run_cascade over the recorded answers.

# The sweep visits the acceptance probabilities' quantiles over the test rungs below the top:
# 0 accepts every first answer, above 1 nothing below the top of the ladder.
QUANTILES: Final = 40


def thresholds(probabilities: Sequence[float]) -> tuple[float, ...]:
    """0, the probabilities at each 1/QUANTILES quantile, and 1.01: the knob's settings."""
    ordered = sorted(probabilities)
    inner = (
        {ordered[len(ordered) * j // QUANTILES] for j in range(1, QUANTILES)} if ordered else set()
    )
    return (0.0, *sorted(inner - {0.0}), 1.01)


def global_snapshot(catalog: tuple[ModelSpec, ...], train: Sequence[Case]) -> RouteSnapshot:
    """Each model's learned quality as its accuracy over the train part, as the log would say."""
    figures = {
        spec.name: ModelFigures(
            quality={
                CAPABILITY: Evidence(math.fsum(c.scores[spec.name] for c in train), len(train))
            }
        )
        for spec in catalog
    }
    return RouteSnapshot(catalog=catalog, figures=figures)


def ladder_of(
    snapshot: RouteSnapshot, case: Case, spec: CascadeSpec | None = None
) -> tuple[RouteDecision, list[tuple[str, ...]]]:
    """The cascade route() plans for the prompt, and its rungs' models."""
    decision = route(snapshot, _request(case, Strategy.CASCADE, cascade=spec))
    if decision.cascade is None or not decision.cascade.rungs:
        raise EvaluationError(f"cascade: no ladder: {decision.reason}")
    return decision, [rung.models for rung in decision.cascade.rungs]


def _attempts(case: Case, step: int, models: Sequence[str]) -> list[Attempt]:
    """The recorded replies of rung `step`'s models: what asking them would have given."""
    return [
        Attempt(step=step, model=m, text=case.texts[m], mean_logprob=case.logprobs[m])
        for m in models
    ]


def fit_cascade(
    train: Sequence[Case], snapshot: RouteSnapshot, fmt: AnswerFormat
) -> AcceptanceModel | None:
    """The acceptance model, fitted on every rung below the top of each train prompt's ladder;
    None when every ladder has one rung, so nothing is ever accepted early."""
    history = []
    for case in train:
        _, ladder = ladder_of(snapshot, case)
        for step, models in enumerate(ladder[:-1]):
            rung = view_of(case.prompt, fmt, step, _attempts(case, step, models))
            speaker = rung.speaker.model if rung.speaker is not None else models[0]
            history.append(ScoredRung(rung=rung, score=case.scores[speaker]))
    return fit_acceptance(history) if history else None


class _Remembered:
    """The acceptance model's probability per prompt and rung, computed once for the sweep."""

    def __init__(self, model: AcceptanceScorer) -> None:
        self._model = model
        self._known: dict[tuple[str, int], float] = {}

    def probability(self, rung: RungView) -> float:
        key = (rung.prompt, rung.step)
        if key not in self._known:
            self._known[key] = self._model.probability(rung)
        return self._known[key]


def _climb(
    case: Case, decision: RouteDecision, ladder: Sequence[tuple[str, ...]], policy: Policy
) -> Outcome:
    done = run_cascade(ladder, policy, case.prompt, functools.partial(_attempts, case))
    speaker = done.accepted.speaker or done.attempts[-1]
    detail = {"route": decision.to_dict(), "cascade": [s.to_dict() for s in done.steps]}
    models = tuple(a.model for a in done.attempts)
    return Outcome(models, case.scores[speaker.model], sum(case.costs[m] for m in models), detail)


def agreement_router(cases: Sequence[Case], snapshot: RouteSnapshot, fmt: AnswerFormat) -> Routed:
    """The cascade that starts with the two cheapest models and keeps their answer when they
    agree, else climbs one model at a time, each judged valid or not (three models or more)."""
    policy = Acceptance(agreement=1.0, learned=None).policy(fmt, None)
    outcomes = []
    for case in cases:
        decision, ladder = ladder_of(snapshot, case, CascadeSpec(first=2))
        outcomes.append(_climb(case, decision, ladder, policy))
    return Routed(AGREEMENT_CASCADE, tuple(outcomes))


@dataclass(frozen=True, slots=True)
class _Rung:
    """A rung below the top as the learned check sees it: whether its reply holds an answer,
    the acceptance probability, and what the rung costs and scores when it speaks."""

    answered: bool
    probability: float
    cost_pico: int
    score: float


def _climbed(rungs: Sequence[_Rung], top: tuple[int, float], t: float) -> tuple[int, float]:
    """Cost and score of one prompt's cascade at threshold t: the learned check passes on the
    first rung with an answer and a probability of at least t, else the top rung speaks."""
    cost = 0
    for rung in rungs:
        cost += rung.cost_pico
        if rung.answered and rung.probability >= t:
            return cost, rung.score
    return cost + top[0], top[1]


def cascade_router(
    cases: Sequence[Case],
    snapshot: RouteSnapshot,
    acceptance: AcceptanceScorer | None,
    fmt: AnswerFormat,
    threshold: float,
    ranked: Sequence[str],
) -> Routed:
    """Each prompt up its ladder (one model a rung) until the learned acceptance check passes:
    run by `run_cascade` at `threshold`, and along the probabilities' quantiles from each rung's
    probability, computed once (what `learned` compares). With two models, the weak answer's
    probability orders the escalations."""
    remembered = None if acceptance is None else _Remembered(acceptance)
    ladders = [ladder_of(snapshot, case) for case in cases]
    policy = Acceptance(validity=False, learned=threshold).policy(fmt, remembered)
    outcomes = tuple(
        _climb(case, decision, ladder, policy)
        for case, (decision, ladder) in zip(cases, ladders, strict=True)
    )
    climbs = []
    for case, (_, ladder) in zip(cases, ladders, strict=True):
        rungs = []
        for step, models in enumerate(ladder[:-1]):
            view = view_of(case.prompt, fmt, step, _attempts(case, step, models))
            p = 0.0 if remembered is None else remembered.probability(view)
            speaker = view.speaker.model if view.speaker is not None else models[0]
            cost = sum(case.costs[m] for m in models)
            rungs.append(_Rung(view.answer is not None and remembered is not None, p, cost,
                               case.scores[speaker]))  # fmt: skip
        top = ladder[-1]
        climbs.append((rungs, (sum(case.costs[m] for m in top), case.scores[top[0]])))
    probabilities = [r.probability for rungs, _ in climbs for r in rungs]
    sweep = []
    for t in sorted({*thresholds(probabilities), threshold}):
        at = [_climbed(rungs, top, t) for rungs, top in climbs]
        accuracy = statistics.fmean(score for _, score in at)
        sweep.append(Point(t, accuracy, sum(cost for cost, _ in at)))
    gains = None
    if (
        remembered is not None
        and len(ranked) == 2
        and all(ladder == [(ranked[0],), (ranked[1],)] for _, ladder in ladders)
    ):
        # A weak reply with no answer is never kept: it goes to the strong model first.
        gains = tuple(-rungs[0].probability if rungs[0].answered else 1.0 for rungs, _ in climbs)
    return Routed(CASCADE, outcomes, gains, tuple(sweep))
