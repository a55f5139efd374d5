"""Reading, scoring and costing a recorded dataset, split into a train and a test part."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.catalog import ModelSpec
from atom_actors.cost import PICO_PER_USD, cost_pico
from atom_actors.datasets import (
    RecordedDataset,
    RecordedItem,
    load_dataset,
    load_jsonl,
    load_routellm,
)
from atom_actors.scorers import ReferenceScorer, ScoreInput, ScoreUnavailable

from ._settings import (
    AGREEMENT_CASCADE,
    CAPABILITY,
    DEFAULT_PRICES,
    PROMPT_LENGTH,
    DatasetFormat,
    EvaluationError,
    Price,
    ScorerKind,
    Settings,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One prompt as the evaluation sees it: each model's answer, score and cost."""

    prompt: str
    texts: Mapping[str, str]
    logprobs: Mapping[str, float | None]
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
    recorded_costs: int  # answers whose cost the data carries


def load_file(path: Path, fmt: DatasetFormat | None) -> RecordedDataset:
    """The dataset in the given format, else the one its path implies; every prompt answered."""
    if not path.exists():
        raise EvaluationError(f"{path}: no such file")
    match fmt:
        case DatasetFormat.ROUTELLM_CSV:
            dataset = load_routellm(path)
        case DatasetFormat.JSONL:
            dataset = load_jsonl(path)
        case None:
            dataset = load_dataset(path)
    if not dataset.items:
        raise EvaluationError(f"{path}: no prompts")
    for number, item in enumerate(dataset.items, start=1):
        missing = [m for m in dataset.models if m not in item.answers]
        if missing:
            raise EvaluationError(f"{path}: prompt {number} has no answer from {missing[0]}")
    return dataset


def load(settings: Settings) -> tuple[RecordedDataset, RecordedDataset]:
    """The train and test parts: the dataset split by the settings, or the two files."""
    if settings.dataset is not None:
        dataset = load_file(settings.dataset, settings.format)
        train, test = dataset.split(settings.split[0] / sum(settings.split), settings.seed)
        if not train.items or not test.items:
            raise EvaluationError(
                f"--split {settings.split[0]}:{settings.split[1]} leaves {len(train.items)}"
                f" prompts to fit on and {len(test.items)} to test; each part needs one"
            )
        return train, test
    assert settings.train is not None and settings.test is not None
    train, test = (
        load_file(settings.train, settings.format),
        load_file(settings.test, settings.format),
    )
    if set(train.models) != set(test.models):
        raise EvaluationError(
            f"--train has models {', '.join(train.models)}; --test has {', '.join(test.models)}"
        )
    return train, test


def catalog_of(
    models: Sequence[str], prices: Mapping[str, Price], items: Sequence[RecordedItem]
) -> tuple[ModelSpec, ...]:
    """A recorded-provider catalog entry per model, at the given price, the default one, or the
    one its recorded costs imply (their sum over the tokens they paid for)."""
    unknown = sorted(set(prices) - set(models))
    if unknown:
        raise EvaluationError(f"--prices: the dataset has no model {unknown[0]}")
    specs = []
    for model in models:
        price = prices.get(model) or DEFAULT_PRICES.get(model) or _implied(model, items)
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


def _implied(model: str, items: Sequence[RecordedItem]) -> Price | None:
    answers = [item.answers[model] for item in items]
    if any(a.cost_usd is None for a in answers):
        return None
    tokens = sum(a.prompt_tokens + a.completion_tokens for a in answers)
    per_mtok = math.fsum(a.cost_usd or 0.0 for a in answers) / max(tokens, 1) * 1e6
    return Price(per_mtok, per_mtok)


def _score(item: RecordedItem, model: str, scorer: ScorerKind, fmt: AnswerFormat) -> float:
    answer = item.answers[model]
    if scorer is ScorerKind.RECORDED:
        if answer.correct is None:
            raise EvaluationError(f"--scorer recorded: an answer of {model} has no correctness")
        return 1.0 if answer.correct else 0.0
    try:
        expected = _expected(item.gold, fmt)
        return ReferenceScorer().score(ScoreInput(answer.text, fmt=fmt, expected=expected))
    except ScoreUnavailable as exc:
        raise EvaluationError(f"--scorer {exc} (try --scorer recorded)") from None


def _expected(gold: str | None, fmt: AnswerFormat) -> str | None:
    """The gold answer as a reply would give it: a JSON answer's gold may be the field's value
    alone ("4"), which is then placed at the field's path."""
    if gold is None or fmt.kind is not AnswerKind.JSON or fmt.extract(gold) is not None:
        return gold
    try:
        value: object = json.loads(gold)
    except ValueError:
        value = gold
    for key in reversed((fmt.field or "").split(".")):
        value = {key: value}
    return json.dumps(value)


def case_of(
    item: RecordedItem, catalog: Sequence[ModelSpec], scorer: ScorerKind, fmt: AnswerFormat
) -> Case:
    """Score and cost every model's recorded answer to the item: its recorded cost, else the
    price of its tokens."""
    answers = {spec.name: item.answers[spec.name] for spec in catalog}
    scores = {model: _score(item, model, scorer, fmt) for model in answers}
    costs = {}
    for spec in catalog:
        answer = answers[spec.name]
        costs[spec.name] = (
            round(answer.cost_usd * PICO_PER_USD)
            if answer.cost_usd is not None
            else cost_pico(spec, answer.prompt_tokens, answer.completion_tokens)
        )
    return Case(
        prompt=item.prompt,
        texts={model: answer.text for model, answer in answers.items()},
        logprobs={model: answer.mean_logprob for model, answer in answers.items()},
        scores=scores,
        costs=costs,
        agreements=tuple(
            (scores[model] == 1.0) == answer.correct
            for model, answer in answers.items()
            if answer.correct is not None and scorer is ScorerKind.REFERENCE
        ),
        tokens_estimated=sum(
            answer.tokens_estimated and answer.cost_usd is None for answer in answers.values()
        ),
    )


def rank_by_strength(train: Sequence[Case], catalog: Sequence[ModelSpec]) -> tuple[str, ...]:
    """Models weakest first: by accuracy on the train part, then the dearer as the stronger."""

    def strength(spec: ModelSpec) -> tuple[float, float, float, str]:
        accuracy = statistics.fmean(case.scores[spec.name] for case in train)
        return accuracy, spec.output_usd_per_mtok, spec.input_usd_per_mtok, spec.name

    return tuple(spec.name for spec in sorted(catalog, key=strength))


def prepare(settings: Settings, parts: tuple[RecordedDataset, RecordedDataset]) -> Prepared:
    """Price the models, score and cost every answer, rank the models."""
    train_part, test_part = parts
    everything = train_part.items + test_part.items
    catalog = catalog_of(train_part.models, settings.prices, everything)
    fmt = settings.answer_format
    train = tuple(case_of(item, catalog, settings.scorer, fmt) for item in train_part.items)
    test = tuple(case_of(item, catalog, settings.scorer, fmt) for item in test_part.items)
    ranked = rank_by_strength(train, catalog)
    if len(ranked) != 2 and settings.strategy == PROMPT_LENGTH:
        raise EvaluationError("prompt_length needs a dataset of two models")
    if len(ranked) < 3 and settings.strategy == AGREEMENT_CASCADE:
        raise EvaluationError(f"{AGREEMENT_CASCADE} needs a dataset of three models or more")
    recorded = sum(
        answer.cost_usd is not None for item in test_part.items for answer in item.answers.values()
    )
    return Prepared(settings, catalog, train, test, ranked, recorded)
