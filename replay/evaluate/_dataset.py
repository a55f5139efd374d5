"""Reading, scoring and costing a recorded dataset, split into a train and a test part."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from atom_actors.catalog import ModelSpec
from atom_actors.cost import cost_pico
from atom_actors.datasets import (
    RecordedDataset,
    RecordedItem,
    load_dataset,
    load_jsonl,
    load_routellm,
)
from atom_actors.scorers import ReferenceScorer, ScoreInput, ScoreUnavailable

from ._settings import (
    CAPABILITY,
    DEFAULT_PRICES,
    NUMBER,
    PROMPT_LENGTH,
    DatasetFormat,
    EvaluationError,
    Price,
    ScorerKind,
    Settings,
)


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
                capabilities=frozenset({CAPABILITY}),
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
        return ReferenceScorer().score(ScoreInput(answer.text, fmt=NUMBER, expected=item.gold))
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
