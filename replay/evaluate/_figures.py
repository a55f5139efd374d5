"""Figures: each router's accuracy, cost and calls, and the run that computes them."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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
    ensemble_router,
    model_router,
    prompt_length_router,
    random_router,
    snapshot_of,
    strategy_router,
)
from ._settings import PROMPT_LENGTH, RANDOM, Settings


@dataclass(frozen=True, slots=True)
class Row:
    """A router's figures on the test part; strong share, PGR and curve need two models."""

    name: str
    accuracy: float
    cost_pico: int
    calls: Mapping[str, int]
    strong_share: float | None
    pgr: float | None
    curve: Curve | None

    @property
    def apgr(self) -> float | None:
        return self.curve.apgr() if self.curve else None

    def cpt(self, target: float) -> float | None:
        return self.curve.cpt(target) if self.curve else None

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
        }


def figures(routed: Routed, cases: Sequence[Case], ranked: Sequence[str]) -> Row:
    """Accuracy, cost and calls; with two models also strong share, PGR and the curve."""
    accuracy = statistics.fmean(outcome.score for outcome in routed.outcomes)
    calls = Counter(model for outcome in routed.outcomes for model in outcome.models)
    strong_share = pgr = curve = None
    if len(ranked) == 2:
        weak, strong = ranked
        weak_scores = [case.scores[weak] for case in cases]
        strong_scores = [case.scores[strong] for case in cases]
        strong_share = calls[strong] / calls.total()
        gap = statistics.fmean(strong_scores) - statistics.fmean(weak_scores)
        if gap:
            pgr = (accuracy - statistics.fmean(weak_scores)) / gap
            if routed.gains is not None:
                curve = threshold_curve(routed.gains, weak_scores, strong_scores)
    return Row(
        name=routed.name,
        accuracy=accuracy,
        cost_pico=sum(outcome.cost_pico for outcome in routed.outcomes),
        calls={model: calls[model] for model in ranked},
        strong_share=strong_share,
        pgr=pgr,
        curve=curve,
    )


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What a run found: every router's row, the selected router's outcomes, and the context."""

    settings: Settings
    catalog: tuple[ModelSpec, ...]
    ranked: tuple[str, ...]
    train_size: int
    test_size: int
    rows: tuple[Row, ...]
    selected: Routed
    agreement: float | None
    tokens_estimated: int
    answers: int

    def row(self, name: str) -> Row:
        return next(row for row in self.rows if row.name == name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the selected router's figures at the top, then context and every row."""
        two = len(self.ranked) == 2
        singles = [self.row(f"model:{model}") for model in self.ranked]
        best = max(singles, key=lambda row: (row.accuracy, -row.cost_pico))
        return {
            **self.row(self.settings.selected).to_dict(),
            "strategy": self.settings.selected,
            "models": list(self.ranked),
            "weak_accuracy": singles[0].accuracy if two else None,
            "strong_accuracy": singles[-1].accuracy if two else None,
            **{
                f"{name}_apgr": self.row(name).apgr if two else None
                for name in (Strategy.QUALITY_FIRST.value, RANDOM, PROMPT_LENGTH)
            },
            "best_single_model": {
                "model": best.name.removeprefix("model:"),
                "accuracy": best.accuracy,
                "cost_usd": to_usd(best.cost_pico),
            },
            "test_size": self.test_size,
            "train_size": self.train_size,
            "scorer": self.settings.scorer.value,
            "scorer_agreement_with_csv": self.agreement,
            "answers_with_estimated_tokens": self.tokens_estimated,
            "answers": self.answers,
            "prices_usd_per_mtok": {spec.name: [spec.input_usd_per_mtok, spec.output_usd_per_mtok]
                                    for spec in self.catalog},
            "rows": {row.name: row.to_dict() for row in self.rows},
        }  # fmt: skip


Progress = Callable[[int, int], None]


def quiet(done: int, total: int) -> None:
    """Show no progress."""


def evaluate(prepared: Prepared, progress: Progress = quiet) -> Evaluation:
    """Fit on the train part, then run every strategy, ensemble and baseline on the test part."""
    train, test, ranked = prepared.train, prepared.test, prepared.ranked
    quality = fit_prompt_quality([ScoredPrompt(case.prompt, case.scores) for case in train])
    strategies = [s for s in Strategy if s is not Strategy.ENSEMBLE]
    total = len(test) + len(strategies) + len(EnsembleMethod)
    snapshots = []
    for done, case in enumerate(test, start=1):
        snapshots.append(snapshot_of(prepared.catalog, quality.predict(case.prompt)))
        progress(done, total)
    routers = []
    for strategy in strategies:
        routers.append(strategy_router(strategy, test, snapshots, ranked))
        progress(len(test) + len(routers), total)
    for method in EnsembleMethod:
        routers.append(ensemble_router(method, test, snapshots))
        progress(len(test) + len(routers), total)
    routers.append(random_router(test, ranked, prepared.settings.seed))
    if len(ranked) == 2:
        routers.append(prompt_length_router(test, train, ranked))
    routers += [model_router(model, test) for model in ranked]
    agreements = [agrees for case in test for agrees in case.agreements]
    return Evaluation(
        settings=prepared.settings,
        catalog=prepared.catalog,
        ranked=ranked,
        train_size=len(train),
        test_size=len(test),
        rows=tuple(figures(routed, test, ranked) for routed in routers),
        selected=next(r for r in routers if r.name == prepared.settings.selected),
        agreement=statistics.fmean(agreements) if agreements else None,
        tokens_estimated=sum(case.tokens_estimated for case in test),
        answers=len(test) * len(ranked),
    )
