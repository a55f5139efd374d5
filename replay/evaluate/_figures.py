"""Figures: each router's accuracy and cost, the frontier of them all, and the run computing them.

A configuration is a router at one setting of its knob (a strategy has one, a swept router one
per point). The frontier is the configurations no other beats on both cost and accuracy. Two
figures answer a buyer, against the best single model (the most accurate; the cheaper on ties):
parity, the cheapest configuration at least as accurate, as a share of that model's cost; and
the best accuracy at no more than that model's cost.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from atom_actors.catalog import ModelSpec
from atom_actors.cost import to_usd
from atom_actors.prompt_quality import ScoredPrompt, fit_prompt_quality
from atom_actors.snapshot import EnsembleMethod, Strategy

from .._routellm import Curve, threshold_curve
from ._dataset import Case, Prepared
from ._routers import (
    Routed,
    agreement_router,
    cascade_router,
    ensemble_router,
    fit_cascade,
    global_snapshot,
    model_router,
    prompt_length_router,
    random_router,
    snapshot_of,
    strategy_router,
)
from ._settings import CASCADE, PROMPT_LENGTH, RANDOM, Settings


@dataclass(frozen=True, slots=True)
class Config:
    """One configuration: a router (at a knob's setting) and what it gave on the test part."""

    name: str
    accuracy: float
    cost_pico: int

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.name, "accuracy": self.accuracy, "cost_usd": to_usd(self.cost_pico)}


def frontier(configs: Iterable[Config]) -> tuple[Config, ...]:
    """The configurations no other is both cheaper (or as cheap) and more accurate than,
    cheapest first; each is more accurate than every one before it."""
    best: list[Config] = []
    for config in sorted(configs, key=lambda c: (c.cost_pico, -c.accuracy, c.name)):
        if not best or config.accuracy > best[-1].accuracy:
            best.append(config)
    return tuple(best)


def at_parity(configs: Iterable[Config], target: Config) -> Config | None:
    """The cheapest configuration at least as accurate as `target`, or None."""
    reaching = [c for c in configs if c.accuracy >= target.accuracy]
    return min(reaching, key=lambda c: (c.cost_pico, -c.accuracy, c.name), default=None)


def within_cost(configs: Iterable[Config], target: Config) -> Config | None:
    """The most accurate configuration costing no more than `target`, or None."""
    cheap = [c for c in configs if c.cost_pico <= target.cost_pico]
    return min(cheap, key=lambda c: (-c.accuracy, c.cost_pico, c.name), default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """A router's figures on the test part; strong share, PGR and curve need two models."""

    name: str
    accuracy: float
    cost_pico: int
    calls: Mapping[str, int]
    strong_share: float | None
    pgr: float | None
    curve: Curve | None
    configs: tuple[Config, ...]
    parity: Config | None
    within: Config | None
    best_cost_pico: int

    @property
    def apgr(self) -> float | None:
        return self.curve.apgr() if self.curve else None

    def cpt(self, target: float) -> float | None:
        return self.curve.cpt(target) if self.curve else None

    @property
    def parity_share(self) -> float | None:
        """The cost of this router's cheapest configuration at parity, per the best model's."""
        if self.parity is None or not self.best_cost_pico:
            return None
        return self.parity.cost_pico / self.best_cost_pico

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "cost_usd": to_usd(self.cost_pico),
            "calls": dict(self.calls),
            "strong_share": self.strong_share,
            "pgr": self.pgr,
            "apgr": self.apgr,
            "cpt50": self.cpt(0.5),
            "cpt80": self.cpt(0.8),
            "cost_share_at_parity": self.parity_share,
            "accuracy_at_best_cost": None if self.within is None else self.within.accuracy,
            "sweep": [c.to_dict() for c in self.configs[1:]],
        }


def configs_of(routed: Routed, accuracy: float, cost_pico: int) -> tuple[Config, ...]:
    """The router at its default setting, then at each point of its sweep."""
    swept = (Config(f"{routed.name}@{p.knob:.3g}", p.accuracy, p.cost_pico) for p in routed.sweep)
    return (Config(routed.name, accuracy, cost_pico), *swept)


def figures(routed: Routed, cases: Sequence[Case], ranked: Sequence[str], best: Config) -> Row:
    """Accuracy, cost, calls and the buyer's figures; with two models strong share, PGR, curve."""
    accuracy = statistics.fmean(outcome.score for outcome in routed.outcomes)
    cost = sum(outcome.cost_pico for outcome in routed.outcomes)
    calls = Counter(model for outcome in routed.outcomes for model in outcome.models)
    strong_share = pgr = curve = None
    if len(ranked) == 2:
        weak, strong = ranked
        weak_scores = [case.scores[weak] for case in cases]
        strong_scores = [case.scores[strong] for case in cases]
        strong_share = calls[strong] / len(cases)
        gap = statistics.fmean(strong_scores) - statistics.fmean(weak_scores)
        if gap:
            pgr = (accuracy - statistics.fmean(weak_scores)) / gap
            if routed.gains is not None:
                curve = threshold_curve(routed.gains, weak_scores, strong_scores)
    configs = configs_of(routed, accuracy, cost)
    return Row(
        name=routed.name,
        accuracy=accuracy,
        cost_pico=cost,
        calls={model: calls[model] for model in ranked},
        strong_share=strong_share,
        pgr=pgr,
        curve=curve,
        configs=configs,
        parity=at_parity(configs, best),
        within=within_cost(configs, best),
        best_cost_pico=best.cost_pico,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """What a run found: every router's row, the selected router's outcomes, and the context."""

    settings: Settings
    catalog: tuple[ModelSpec, ...]
    ranked: tuple[str, ...]
    train_size: int
    test_size: int
    rows: tuple[Row, ...]
    selected: Routed
    best: Config
    agreement: float | None
    tokens_estimated: int
    recorded_costs: int
    answers: int

    def row(self, name: str) -> Row:
        return next(row for row in self.rows if row.name == name)

    @property
    def configs(self) -> tuple[Config, ...]:
        return tuple(config for row in self.rows for config in row.configs)

    @property
    def frontier(self) -> tuple[Config, ...]:
        return frontier(self.configs)

    @property
    def parity(self) -> Config | None:
        return at_parity(self.configs, self.best)

    @property
    def within(self) -> Config | None:
        return within_cost(self.configs, self.best)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the selected router's figures at the top, then context and every row."""
        two = len(self.ranked) == 2
        singles = [self.row(f"model:{model}") for model in self.ranked]
        parity, within = self.parity, self.within
        return {
            **self.row(self.settings.selected).to_dict(),
            "strategy": self.settings.selected,
            "models": list(self.ranked),
            "weak_accuracy": singles[0].accuracy if two else None,
            "strong_accuracy": singles[-1].accuracy if two else None,
            **{
                f"{name}_apgr": self.row(name).apgr if two else None
                for name in (Strategy.QUALITY_FIRST.value, CASCADE, RANDOM, PROMPT_LENGTH)
            },
            "best_single_model": {
                "model": self.best.name.removeprefix("model:"),
                "accuracy": self.best.accuracy,
                "cost_usd": to_usd(self.best.cost_pico),
            },
            "parity": None
            if parity is None
            else {
                **parity.to_dict(),
                "cost_share": parity.cost_pico / self.best.cost_pico
                if self.best.cost_pico
                else None,
            },
            "best_within_cost": None if within is None else within.to_dict(),
            "frontier": [config.to_dict() for config in self.frontier],
            "cascade_threshold": self.settings.threshold,
            "test_size": self.test_size,
            "train_size": self.train_size,
            "scorer": self.settings.scorer.value,
            "scorer_agreement_with_csv": self.agreement,
            "answers_with_estimated_tokens": self.tokens_estimated,
            "answers_with_recorded_cost": self.recorded_costs,
            "answers": self.answers,
            "prices_usd_per_mtok": {
                spec.name: [spec.input_usd_per_mtok, spec.output_usd_per_mtok]
                for spec in self.catalog
            },
            "rows": {row.name: row.to_dict() for row in self.rows},
        }


Progress = Callable[[int, int], None]


def quiet(done: int, total: int) -> None:
    """Show no progress."""


def evaluate(prepared: Prepared, progress: Progress = quiet) -> Evaluation:
    """Fit on the train part, then run every strategy, ensemble and baseline on the test part."""
    train, test, ranked = prepared.train, prepared.test, prepared.ranked
    settings = prepared.settings
    fmt = settings.answer_format
    quality = fit_prompt_quality([ScoredPrompt(case.prompt, case.scores) for case in train])
    strategies = [s for s in Strategy if s not in (Strategy.ENSEMBLE, Strategy.CASCADE)]
    total = len(test) + len(strategies) + len(EnsembleMethod) + 1
    snapshots = []
    for done, case in enumerate(test, start=1):
        snapshots.append(snapshot_of(prepared.catalog, quality.predict(case.prompt)))
        progress(done, total)
    routers: list[Routed] = []

    def add(routed: Routed) -> None:
        routers.append(routed)
        progress(min(len(test) + len(routers), total), total)

    for strategy in strategies:
        add(strategy_router(strategy, test, snapshots, ranked))
    for method in EnsembleMethod:
        add(ensemble_router(method, test, snapshots, fmt))
    ladder_snapshot = global_snapshot(prepared.catalog, train)
    acceptance = fit_cascade(train, ladder_snapshot, fmt)
    add(cascade_router(test, ladder_snapshot, acceptance, fmt, settings.threshold, ranked))
    if len(ranked) >= 3:
        routers.append(agreement_router(test, ladder_snapshot, fmt))
    routers.append(random_router(test, ranked, settings.seed))
    if len(ranked) == 2:
        routers.append(prompt_length_router(test, train, ranked))
    routers += [model_router(model, test) for model in ranked]
    singles = [
        Config(
            f"model:{m}", statistics.fmean(c.scores[m] for c in test), sum(c.costs[m] for c in test)
        )
        for m in ranked
    ]
    best = max(singles, key=lambda c: (c.accuracy, -c.cost_pico, c.name))
    agreements = [agrees for case in test for agrees in case.agreements]
    return Evaluation(
        settings=settings,
        catalog=prepared.catalog,
        ranked=ranked,
        train_size=len(train),
        test_size=len(test),
        rows=tuple(figures(routed, test, ranked, best) for routed in routers),
        selected=next(r for r in routers if r.name == settings.selected),
        best=best,
        agreement=statistics.fmean(agreements) if agreements else None,
        tokens_estimated=sum(case.tokens_estimated for case in test),
        recorded_costs=prepared.recorded_costs,
        answers=len(test) * len(ranked),
    )
