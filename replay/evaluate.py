"""`atom replay evaluate`: ATOM's routing strategies and ensembles over recorded answers, offline.

Every test prompt goes through the real `route()` and `combine()`; the answer is the one the
chosen model gave in the dataset, scored and costed as recorded. The snapshot each prompt is
routed on carries the per-prompt quality learnt from the train part's scores, and quality_first's
knob, the quality gain the dearer model must promise, traces its curve. The run is logged.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import random
import statistics
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import orjson

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.catalog import ModelSpec
from atom_actors.combiners import MemberAnswer, combine
from atom_actors.cost import PromptSize, cost_pico, estimate_message_tokens, to_usd
from atom_actors.datasets import (
    ROUTELLM_RESPONSES,
    DatasetError,
    RecordedDataset,
    RecordedItem,
    load_dataset,
    load_jsonl,
    load_routellm,
)
from atom_actors.prompt_quality import Prediction, ScoredPrompt, fit_prompt_quality
from atom_actors.quality import Evidence
from atom_actors.scorers import ReferenceScorer, ScoreInput, ScoreUnavailable
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
from eventstore import NO_STREAM, NewEvent, open_store

from ._routellm import Curve, threshold_curve

RANDOM: Final = "random"
PROMPT_LENGTH: Final = "prompt_length"
STRATEGIES: Final = (*(s.value for s in Strategy), RANDOM, PROMPT_LENGTH)
DEFAULT_DB: Final = "atom-eval.db"
_CAPABILITY: Final = "reasoning"
# The answer allowance of each request's reservation; recorded GSM8K answers run far shorter.
_MAX_TOKENS: Final = 1024
_NUMBER: Final = AnswerFormat(AnswerKind.NUMBER)
_ACTOR: Final = "atom replay evaluate"


class EvaluationError(ValueError):
    """Bad input to an evaluation; the message is one line for the user."""


class DatasetFormat(StrEnum):
    ROUTELLM_CSV = "routellm-csv"
    JSONL = "jsonl"


class ScorerKind(StrEnum):
    REFERENCE = "reference"
    RECORDED = "recorded"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input_usd_per_mtok: float
    output_usd_per_mtok: float

    def __str__(self) -> str:
        return f"{self.input_usd_per_mtok:g}/{self.output_usd_per_mtok:g}"


# The dataset README's prices at the time the answers were recorded.
DEFAULT_PRICES: Final[Mapping[str, Price]] = {
    "gpt-4-1106-preview": Price(10.0, 30.0),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": Price(0.6, 0.6),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """One evaluation's parameters."""

    dataset: Path
    strategy: str
    ensemble: EnsembleMethod = EnsembleMethod.MAJORITY_VOTE
    format: DatasetFormat | None = None
    split: tuple[int, int] = (50, 50)
    seed: int = 0
    prices: Mapping[str, Price] = field(default_factory=dict)
    scorer: ScorerKind = ScorerKind.REFERENCE

    @property
    def selected(self) -> str:
        """The row reported at the top: the strategy, or the ensemble with its method."""
        return f"ensemble:{self.ensemble}" if self.strategy == Strategy.ENSEMBLE else self.strategy

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "format": self.format and self.format.value,
            "strategy": self.strategy,
            "ensemble": self.ensemble.value,
            "split": f"{self.split[0]}:{self.split[1]}",
            "seed": self.seed,
            "prices": {model: str(price) for model, price in self.prices.items()},
            "scorer": self.scorer.value,
        }


# Reading, scoring and costing the dataset.


@dataclass(frozen=True, slots=True)
class Case:
    """One prompt as the evaluation sees it: each model's answer, score and cost."""

    prompt: str
    texts: Mapping[str, str]
    scores: Mapping[str, float]
    costs: Mapping[str, int]
    # Per model with a correctness flag: whether the reference scorer agrees with it.
    agreements: tuple[bool, ...]
    tokens_estimated: int


@dataclass(frozen=True, slots=True)
class Prepared:
    """A dataset priced, split, scored and costed: every input check has passed."""

    settings: Settings
    catalog: tuple[ModelSpec, ...]
    train: tuple[Case, ...]
    test: tuple[Case, ...]
    ranked: tuple[str, ...]  # weakest first


def load(settings: Settings) -> RecordedDataset:
    """The dataset in the given format, else the one its path implies; every prompt answered."""
    path = settings.dataset
    if not path.exists():
        raise EvaluationError(f"{path}: no such file")
    match settings.format:
        case DatasetFormat.ROUTELLM_CSV:
            dataset = load_routellm(path)
        case DatasetFormat.JSONL:
            dataset = load_jsonl(path)
        case None:
            dataset = load_dataset(path)
    for number, item in enumerate(dataset.items, start=1):
        missing = [m for m in dataset.models if m not in item.answers]
        if missing:
            raise EvaluationError(f"{path}: prompt {number} has no answer from {missing[0]}")
    return dataset


def catalog_of(models: Sequence[str], prices: Mapping[str, Price]) -> tuple[ModelSpec, ...]:
    """A recorded-provider catalog entry per model, at the given price else the default one."""
    unknown = sorted(set(prices) - set(models))
    if unknown:
        raise EvaluationError(f"--prices: the dataset has no model {unknown[0]}")
    specs = []
    for model in models:
        price = prices.get(model) or DEFAULT_PRICES.get(model)
        if price is None:
            raise EvaluationError(f"no price for {model}: pass --prices '{model}=IN/OUT'")
        specs.append(
            ModelSpec(
                name=model,
                provider="recorded",
                model=model,
                capabilities=frozenset({_CAPABILITY}),
                input_usd_per_mtok=price.input_usd_per_mtok,
                output_usd_per_mtok=price.output_usd_per_mtok,
                # A recorded answer fitted its model's window, so no window may exclude it.
                context_window=10**9,
            )
        )
    return tuple(specs)


def _score(item: RecordedItem, model: str, scorer: ScorerKind) -> float:
    answer = item.answers[model]
    if scorer is ScorerKind.RECORDED:
        if answer.correct is None:
            raise EvaluationError(f"--scorer recorded: an answer of {model} has no correctness")
        return 1.0 if answer.correct else 0.0
    try:
        return ReferenceScorer().score(ScoreInput(answer.text, fmt=_NUMBER, expected=item.gold))
    except ScoreUnavailable as exc:
        raise EvaluationError(f"--scorer {exc} (try --scorer recorded)") from None


def case_of(item: RecordedItem, catalog: Sequence[ModelSpec], scorer: ScorerKind) -> Case:
    """Score and cost every model's recorded answer to the item."""
    answers = {spec.name: item.answers[spec.name] for spec in catalog}
    scores = {model: _score(item, model, scorer) for model in answers}
    return Case(
        prompt=item.prompt,
        texts={model: answer.text for model, answer in answers.items()},
        scores=scores,
        costs={
            s.name: cost_pico(s, answers[s.name].prompt_tokens, answers[s.name].completion_tokens)
            for s in catalog
        },
        agreements=tuple(
            (scores[model] == 1.0) == answer.correct
            for model, answer in answers.items()
            if answer.correct is not None and scorer is ScorerKind.REFERENCE
        ),
        tokens_estimated=sum(answer.tokens_estimated for answer in answers.values()),
    )


def rank_by_strength(train: Sequence[Case], catalog: Sequence[ModelSpec]) -> tuple[str, ...]:
    """Models weakest first: by accuracy on the train part, then the dearer as the stronger."""

    def strength(spec: ModelSpec) -> tuple[float, float, float, str]:
        accuracy = statistics.fmean(case.scores[spec.name] for case in train)
        return accuracy, spec.output_usd_per_mtok, spec.input_usd_per_mtok, spec.name

    return tuple(spec.name for spec in sorted(catalog, key=strength))


def prepare(settings: Settings, dataset: RecordedDataset) -> Prepared:
    """Price the models, split the prompts, score and cost every answer, rank the models."""
    catalog = catalog_of(dataset.models, settings.prices)
    train_part, test_part = dataset.split(settings.split[0] / sum(settings.split), settings.seed)
    if not train_part.items or not test_part.items:
        raise EvaluationError(
            f"--split {settings.split[0]}:{settings.split[1]} leaves {len(train_part.items)}"
            f" prompts to fit on and {len(test_part.items)} to test; each part needs one"
        )
    train = tuple(case_of(item, catalog, settings.scorer) for item in train_part.items)
    test = tuple(case_of(item, catalog, settings.scorer) for item in test_part.items)
    ranked = rank_by_strength(train, catalog)
    if len(ranked) != 2 and settings.strategy == PROMPT_LENGTH:
        raise EvaluationError("prompt_length needs a dataset of two models")
    return Prepared(settings, catalog, train, test, ranked)


# Routers: each takes every test prompt and says what it did with it.


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


def _snapshot(catalog: tuple[ModelSpec, ...], predicted: Mapping[str, Prediction]) -> RouteSnapshot:
    # A prediction weighs as the scores it was learnt from, so the prior barely moves it.
    figures = {
        model: ModelFigures(quality={_CAPABILITY: Evidence(p.score * p.evidence, p.evidence)})
        for model, p in predicted.items()
        if p.evidence
    }
    return RouteSnapshot(catalog=catalog, figures=figures)


def _request(case: Case, strategy: Strategy, ensemble: EnsembleSpec | None = None) -> RouteRequest:
    prompt_tokens = estimate_message_tokens([{"role": "user", "content": case.prompt}])
    return RouteRequest(
        _CAPABILITY,
        PromptSize.of_tokens(prompt_tokens),
        _MAX_TOKENS,
        strategy,
        ensemble=ensemble or EnsembleSpec(),
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
        result = combine(method, members, _NUMBER)
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


# Figures.


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


def _quiet(done: int, total: int) -> None:
    """Show no progress."""


def evaluate(prepared: Prepared, progress: Progress = _quiet) -> Evaluation:
    """Fit on the train part, then run every strategy, ensemble and baseline on the test part."""
    train, test, ranked = prepared.train, prepared.test, prepared.ranked
    quality = fit_prompt_quality([ScoredPrompt(case.prompt, case.scores) for case in train])
    strategies = [s for s in Strategy if s is not Strategy.ENSEMBLE]
    total = len(test) + len(strategies) + len(EnsembleMethod)
    snapshots = []
    for done, case in enumerate(test, start=1):
        snapshots.append(_snapshot(prepared.catalog, quality.predict(case.prompt)))
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


# The record of a run.


def _sha256(path: Path) -> str:
    file = path / ROUTELLM_RESPONSES if path.is_dir() else path
    return hashlib.sha256(file.read_bytes()).hexdigest()


def run(prepared: Prepared, db: str, progress: Progress = _quiet) -> tuple[Evaluation, str]:
    """Evaluate, recording the run in the event log at `db`; returns it and its id.

    EvaluationStarted is committed before the work; the EvaluationDecided events (one per test
    prompt, for the selected router) and EvaluationCompleted follow in one atomic batch.
    """
    evaluation_id = str(uuid.uuid4())
    stream = f"evaluation-{evaluation_id}"
    metadata = {"correlation_id": evaluation_id, "actor": _ACTOR}
    started = {
        "evaluation_id": evaluation_id,
        "settings": prepared.settings.to_dict(),
        "dataset_sha256": _sha256(prepared.settings.dataset),
        "models": list(prepared.ranked),
        "train_size": len(prepared.train),
        "test_size": len(prepared.test),
    }
    with open_store(db) as store:
        store.append(stream, [NewEvent("EvaluationStarted", started, metadata)], NO_STREAM)
        evaluation = evaluate(prepared, progress)
        decided = [
            NewEvent("EvaluationDecided", _decided(evaluation, position, case, outcome), metadata)
            for position, (case, outcome) in enumerate(
                zip(prepared.test, evaluation.selected.outcomes, strict=True), start=1
            )
        ]
        figures = {"evaluation_id": evaluation_id, **evaluation.to_dict()}
        completed = NewEvent("EvaluationCompleted", figures, metadata)
        store.append(stream, [*decided, completed], 0)
    return evaluation, evaluation_id


def _decided(evaluation: Evaluation, position: int, case: Case, outcome: Outcome) -> dict[str, Any]:
    return {
        "position": position,
        "prompt_sha256": hashlib.sha256(case.prompt.encode()).hexdigest(),
        "router": evaluation.selected.name,
        "models": list(outcome.models),
        "score": outcome.score,
        "correct": outcome.score == 1.0,
        "cost_pico": outcome.cost_pico,
        "cost_usd": to_usd(outcome.cost_pico),
        **outcome.detail,
    }


# Output.


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table(evaluation: Evaluation, evaluation_id: str, db: str) -> str:
    """The readable report: the context, one line per router, and what the columns mean."""
    settings = evaluation.settings
    prices = {spec.name: Price(spec.input_usd_per_mtok, spec.output_usd_per_mtok)
              for spec in evaluation.catalog}  # fmt: skip
    models = ", ".join(
        f"{model} ({prices[model]}, {_percent(evaluation.row(f'model:{model}').accuracy)})"
        for model in evaluation.ranked
    )
    scorer = (
        "reference: the final number against the gold answer"
        if settings.scorer is ScorerKind.REFERENCE
        else "recorded: the dataset's own correctness flags"
    )
    if evaluation.agreement is not None:
        scorer += f"; agrees with the dataset's flags on {_percent(evaluation.agreement)}"
    width = max(len(row.name) for row in evaluation.rows)
    lines = [
        f"dataset  {settings.dataset}: fit on {evaluation.train_size} prompts, tested on"
        f" {evaluation.test_size} (split {settings.split[0]}:{settings.split[1]},"
        f" seed {settings.seed})",
        f"models   weakest first on the train part (USD per 1M tokens in/out, test accuracy):"
        f" {models}",
        f"scorer   {scorer}",
        f"tokens   {evaluation.tokens_estimated} of {evaluation.answers} answers' token counts"
        " estimated as ceil(characters / 4)",
        "",
        f"  {'router':<{width}}  accuracy  cost USD  strong     PGR   APGR   CPT50   CPT80",
    ]
    for row in evaluation.rows:
        mark = "*" if row.name == settings.selected else " "
        pgr = "-" if row.pgr is None else f"{row.pgr:.3f}"
        apgr = "-" if row.apgr is None else f"{row.apgr:.3f}"
        lines.append(
            f"{mark} {row.name:<{width}}  {_percent(row.accuracy):>8}"
            f" {to_usd(row.cost_pico):>9.4f} {_percent(row.strong_share):>7} {pgr:>7}"
            f" {apgr:>6} {_percent(row.cpt(0.5)):>7} {_percent(row.cpt(0.8)):>7}"
        )
    lines += [
        "",
        "* selected. strong: share of calls to the strong model. APGR, CPT50/80: the curve"
        " of a threshold on quality_first's",
        "  predicted gain of the strong model (its knob), on random's draw, on prompt_length's"
        " length.",
        f"recorded as evaluation {evaluation_id} in {db}",
    ]
    return "\n".join(lines)


def plot(evaluation: Evaluation, path: Path) -> None:
    """Accuracy against the strong share: the swept routers' curves, the strategies' points."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 5))
    for row in evaluation.rows:
        if row.curve is not None:
            shares = [point.strong_share for point in row.curve.points]
            accuracies = [point.accuracy for point in row.curve.points]
            axes.plot(shares, accuracies, label=f"{row.name} (APGR {row.curve.apgr():.3f})")
        elif row.strong_share is not None and not row.name.startswith("ensemble:"):
            axes.plot(row.strong_share, row.accuracy, "o", label=row.name)
    axes.set_xlabel(f"share of calls to the strong model, {evaluation.ranked[-1]}")
    axes.set_ylabel(f"accuracy on the {evaluation.test_size} test prompts")
    axes.set_title(f"Routing on {evaluation.settings.dataset.name}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot.close(figure)


def _progress_bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    sys.stderr.write(f"\revaluating [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\r\033[K")
    sys.stderr.flush()


# The command line.


def add_parser(commands: Any) -> None:
    """Add `evaluate` to `atom replay`'s subcommands (the argparse subparsers action)."""
    parser = commands.add_parser(
        "evaluate",
        help="evaluate routing strategies and ensembles on recorded answers",
        description=(
            "Learn per-prompt quality from the train part of a recorded dataset, then route "
            "each test prompt with ATOM's strategies, its five ensemble methods over every "
            "model, and two baselines, answering from the recorded answers (no network). "
            "Prints a table of every router with the selected one marked, or with --json one "
            "JSON object with the selected one's figures at the top; records the run in an "
            "event log. With two models it reports RouteLLM's PGR, and APGR and CPT of the "
            "curves traced by a threshold on quality_first's predicted gain of the strong "
            "model, on random's draw and on prompt_length's length."
        ),
    )
    add = parser.add_argument
    add(
        "--dataset",
        required=True,
        metavar="FILE",
        help="RouteLLM responses CSV (or its directory), or a JSONL file",
    )
    add("--format", metavar="FORMAT", help="routellm-csv or jsonl (default: from the file name)")
    add(
        "--strategy",
        metavar="S",
        help=f"the selected strategy, one of: {', '.join(STRATEGIES)}. The last two are "
        "baselines: a uniform draw, and prompts longer than the train part's median to the "
        "strong model",
    )
    add(
        "--ensemble",
        metavar="M",
        help="the ensemble's method; implies --strategy ensemble. One of: "
        f"{', '.join(EnsembleMethod)} (default: majority_vote)",
    )
    add(
        "--split",
        default="50:50",
        metavar="TRAIN:TEST",
        help="relative sizes of the train and test parts (default: 50:50)",
    )
    add(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the split and of the random baseline (default: 0)",
    )
    add(
        "--prices",
        nargs="+",
        action="extend",
        default=[],
        metavar="MODEL=IN/OUT",
        help="USD per 1M input/output tokens; defaults: "
        + ", ".join(f"{model}={price}" for model, price in DEFAULT_PRICES.items()),
    )
    add(
        "--scorer",
        default=ScorerKind.REFERENCE.value,
        metavar="SCORER",
        help="reference: the final number against the gold answer (default); "
        "recorded: the dataset's own correctness flags",
    )
    add(
        "--plot",
        metavar="FILE",
        help="write accuracy against the strong model's share of calls as a PNG (two models)",
    )
    add("--json", action="store_true", help="print one JSON object instead of the table")
    add("--db", default=DEFAULT_DB, metavar="PATH",
        help=f"the event log to record the run in (default: {DEFAULT_DB})")  # fmt: skip


def _one_of(kind: type[StrEnum], text: str, option: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise EvaluationError(f"{option}: no {text!r}; one of {choices}") from None


def parse_split(text: str) -> tuple[int, int]:
    """ "70:30" as (70, 30): two whole numbers, not both zero."""
    train, colon, test = text.partition(":")
    if not (colon and train.isdigit() and test.isdigit()) or int(train) + int(test) == 0:
        raise EvaluationError(f"--split: {text!r} is not TRAIN:TEST, e.g. 50:50")
    return int(train), int(test)


def parse_price(text: str) -> tuple[str, Price]:
    """ "MODEL=IN/OUT" as the model and its price; the name may hold "/" but not "="."""
    model, equals, amounts = text.rpartition("=")
    given, slash, taken = amounts.partition("/")
    try:
        price = Price(float(given), float(taken))
    except ValueError:
        price = None
    if not (model and equals and slash and price and _fair(price)):
        raise EvaluationError(f"--prices: {text!r} is not MODEL=IN/OUT, e.g. gpt-4=30/60")
    return model, price


def _fair(price: Price) -> bool:
    return all(
        0.0 <= p < float("inf") for p in (price.input_usd_per_mtok, price.output_usd_per_mtok)
    )


def settings_from(options: argparse.Namespace) -> Settings:
    """The command line's settings, each value checked."""
    strategy = options.strategy
    if options.ensemble is not None:
        strategy = strategy or Strategy.ENSEMBLE.value
        if strategy != Strategy.ENSEMBLE:
            raise EvaluationError(f"--ensemble goes with --strategy ensemble, not {strategy}")
    if strategy not in STRATEGIES:
        given = " is required" if strategy is None else f": no {strategy!r}"
        raise EvaluationError(f"--strategy{given}; one of {', '.join(STRATEGIES)}")
    return Settings(
        dataset=Path(options.dataset),
        strategy=strategy,
        ensemble=_one_of(EnsembleMethod, options.ensemble or "majority_vote", "--ensemble"),
        format=None
        if options.format is None
        else _one_of(DatasetFormat, options.format, "--format"),
        split=parse_split(options.split),
        seed=options.seed,
        prices=dict(parse_price(text) for text in options.prices),
        scorer=_one_of(ScorerKind, options.scorer, "--scorer"),
    )


def command(options: argparse.Namespace) -> int:
    """Run `atom replay evaluate`: 0 when done, 2 on bad input (one line on stderr)."""
    try:
        settings = settings_from(options)
        prepared = prepare(settings, load(settings))
        if options.plot and len(prepared.ranked) != 2:
            raise EvaluationError("--plot needs a dataset of two models")
        if options.plot and importlib.util.find_spec("matplotlib") is None:
            raise EvaluationError("--plot needs matplotlib: pip install matplotlib")
        progress = _progress_bar if sys.stderr.isatty() else _quiet
        evaluation, evaluation_id = run(prepared, options.db, progress)
    except (EvaluationError, DatasetError) as exc:
        print(f"atom replay evaluate: {exc}", file=sys.stderr)
        return 2
    if options.plot:
        plot(evaluation, Path(options.plot))
    if options.json:
        report = {**evaluation.to_dict(), "evaluation_id": evaluation_id, "db": options.db}
        print(orjson.dumps(report).decode())
    else:
        print(table(evaluation, evaluation_id, options.db))
    return 0
