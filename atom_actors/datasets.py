"""Recorded datasets: prompts with the answers real models gave, for offline evaluation.

Two formats load into one `RecordedDataset`:

- RouteLLM's GSM8K files (`gsm8k_responses.csv`, with `contaminated_prompts.jsonl` and
  `gsm8k_test.jsonl` beside it when present);
- JSONL, one prompt a line (docs/datasets.md has an example):
  `{"prompt": str, "gold"?: str, "responses": {model: {"text": str, "correct"?: bool,
  "prompt_tokens"?: int, "completion_tokens"?: int, "cost_usd"?: float,
  "mean_logprob"?: float}}}`.

Token counts the data does not carry are estimated as ceil(characters / 4), the usual
rule of thumb for English text under BPE tokenizers; `RecordedAnswer.tokens_estimated` says so.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import orjson

from .cost import estimate_tokens

ROUTELLM_RESPONSES = "gsm8k_responses.csv"
ROUTELLM_CONTAMINATED = "contaminated_prompts.jsonl"
ROUTELLM_GOLD = "gsm8k_test.jsonl"
_RESPONSE_SUFFIX = "_response"
_GOLD_MARKER = "#### "

_T = TypeVar("_T")


class DatasetError(ValueError):
    """A recorded dataset file is malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class RecordedAnswer:
    """One model's recorded answer to one prompt."""

    text: str
    correct: bool | None
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool
    cost_usd: float | None = None
    mean_logprob: float | None = None


@dataclass(frozen=True, slots=True)
class RecordedItem:
    """One prompt, its gold answer when known, and each model's answer."""

    prompt: str
    gold: str | None
    answers: Mapping[str, RecordedAnswer]


@dataclass(frozen=True, slots=True)
class RecordedDataset:
    """Prompts in a fixed order, answered by the same `models`."""

    models: tuple[str, ...]
    items: tuple[RecordedItem, ...]

    def accuracy(self, model: str) -> float | None:
        """Share of this model's judged answers that are correct; None when none is judged."""
        judged = [a.correct for a in self._answers_of(model) if a.correct is not None]
        return sum(judged) / len(judged) if judged else None

    def split(self, train_fraction: float, seed: int) -> tuple[RecordedDataset, RecordedDataset]:
        """A seeded random train/test split; each part keeps the dataset's order."""
        if not 0.0 <= train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be within [0, 1], got {train_fraction}")
        order = list(range(len(self.items)))
        random.Random(seed).shuffle(order)
        train = frozenset(order[: round(train_fraction * len(order))])
        return (
            RecordedDataset(
                self.models, tuple(it for i, it in enumerate(self.items) if i in train)
            ),
            RecordedDataset(
                self.models, tuple(it for i, it in enumerate(self.items) if i not in train)
            ),
        )

    def _answers_of(self, model: str) -> Iterator[RecordedAnswer]:
        if model not in self.models:
            raise KeyError(f"model {model!r} is not in this dataset (models: {self.models})")
        return (item.answers[model] for item in self.items if model in item.answers)


def load_dataset(path: str | Path) -> RecordedDataset:
    """Load a RouteLLM directory or CSV, or a JSONL file, chosen by the path."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".csv":
        return load_routellm(path)
    if path.suffix == ".jsonl":
        return load_jsonl(path)
    raise DatasetError(f"{path}: not a RouteLLM directory, .csv or .jsonl file")


def load_routellm(path: str | Path, *, decontaminate: bool = True) -> RecordedDataset:
    """Load RouteLLM's GSM8K responses (a directory, or its CSV with the other files beside it)."""
    path = Path(path)
    csv_path = path / ROUTELLM_RESPONSES if path.is_dir() else path
    contaminated_path = csv_path.with_name(ROUTELLM_CONTAMINATED)
    gold_path = csv_path.with_name(ROUTELLM_GOLD)
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        models = _routellm_models(csv_path, reader.fieldnames or [])
        rows = [(reader.line_num, row) for row in reader]
    excluded = (
        _contaminated_prompts(contaminated_path)
        if decontaminate and contaminated_path.exists()
        else frozenset()
    )
    kept = [(line, row) for line, row in rows if row["prompt"] not in excluded]
    golds = (
        _match_golds([row["prompt"] for _, row in kept], _read_gold(gold_path))
        if gold_path.exists()
        else {}
    )
    items = tuple(
        RecordedItem(
            prompt=row["prompt"],
            gold=golds.get(row["prompt"]),
            answers=MappingProxyType(
                {
                    m: _answer(
                        row["prompt"],
                        row[m + _RESPONSE_SUFFIX],
                        _parse_bool(row[m], f"{csv_path}:{line}"),
                        None,
                        None,
                    )
                    for m in models
                }
            ),
        )
        for line, row in kept
    )
    return RecordedDataset(models, items)


def load_jsonl(path: str | Path) -> RecordedDataset:
    """Load the JSONL format described in this module's docstring."""
    path = Path(path)
    items: list[RecordedItem] = []
    models: dict[str, None] = {}
    for lineno, record in _read_jsonl(path):
        where = f"{path}:{lineno}"
        item = _jsonl_item(record, where)
        models.update(dict.fromkeys(item.answers))
        items.append(item)
    return RecordedDataset(tuple(models), tuple(items))


def _routellm_models(csv_path: Path, header: Iterable[str]) -> tuple[str, ...]:
    columns = set(header)
    if "prompt" not in columns:
        raise DatasetError(f"{csv_path}: no `prompt` column")
    models = tuple(c for c in header if c + _RESPONSE_SUFFIX in columns)
    if not models:
        raise DatasetError(f"{csv_path}: no `<model>` and `<model>_response` column pair")
    return models


def _contaminated_prompts(path: Path) -> frozenset[str]:
    return frozenset(
        _field(record, "eval_prompt", str, f"{path}:{lineno}")
        for lineno, record in _read_jsonl(path)
    )


def _read_gold(path: Path) -> dict[str, str]:
    """Question -> gold answer (the text after '#### ')."""
    golds: dict[str, str] = {}
    for lineno, record in _read_jsonl(path):
        where = f"{path}:{lineno}"
        answer = _field(record, "answer", str, where)
        if _GOLD_MARKER not in answer:
            raise DatasetError(f"{where}: answer has no {_GOLD_MARKER!r}")
        golds[_field(record, "question", str, where)] = answer.rsplit(_GOLD_MARKER, 1)[1].strip()
    return golds


def _match_golds(prompts: Iterable[str], golds: Mapping[str, str]) -> dict[str, str]:
    """Prompt -> gold: the question equal to the prompt, else the last one the prompt contains.

    Few-shot prompts carry their worked examples first and the question last, hence "last".
    """
    matched: dict[str, str] = {}
    for prompt in prompts:
        if prompt in golds:
            matched[prompt] = golds[prompt]
            continue
        found = [(prompt.rfind(q), q) for q in golds if q in prompt]
        if found:
            matched[prompt] = golds[max(found)[1]]
    return matched


def _jsonl_item(record: Mapping[str, Any], where: str) -> RecordedItem:
    prompt = _field(record, "prompt", str, where)
    gold = record.get("gold")
    if gold is not None and not isinstance(gold, str | int | float):
        raise DatasetError(f"{where}: `gold` must be a string or a number")
    responses = _field(record, "responses", dict, where)
    answers: dict[str, RecordedAnswer] = {}
    for model, response in responses.items():
        at = f"{where}: responses[{model!r}]"
        if not isinstance(response, dict):
            raise DatasetError(f"{at} must be an object")
        correct = response.get("correct")
        if correct is not None and not isinstance(correct, bool):
            raise DatasetError(f"{at}.correct must be true, false or absent")
        answers[model] = _answer(
            prompt,
            _field(response, "text", str, at),
            correct,
            _optional_count(response, "prompt_tokens", at),
            _optional_count(response, "completion_tokens", at),
            cost_usd=_optional_number(response, "cost_usd", at, minimum=0.0),
            mean_logprob=_optional_number(response, "mean_logprob", at, maximum=0.0),
        )
    return RecordedItem(prompt, None if gold is None else str(gold), MappingProxyType(answers))


def _answer(
    prompt: str,
    text: str,
    correct: bool | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    *,
    cost_usd: float | None = None,
    mean_logprob: float | None = None,
) -> RecordedAnswer:
    return RecordedAnswer(
        cost_usd=cost_usd,
        mean_logprob=mean_logprob,
        text=text,
        correct=correct,
        prompt_tokens=estimate_tokens(prompt) if prompt_tokens is None else prompt_tokens,
        completion_tokens=estimate_tokens(text) if completion_tokens is None else completion_tokens,
        tokens_estimated=prompt_tokens is None or completion_tokens is None,
    )


def _parse_bool(value: str, where: str) -> bool | None:
    match value.strip():
        case "True" | "true" | "1":
            return True
        case "False" | "false" | "0":
            return False
        case "":
            return None
        case other:
            raise DatasetError(f"{where}: expected True or False, got {other!r}")


def _optional_count(record: Mapping[str, Any], key: str, where: str) -> int | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DatasetError(f"{where}.{key} must be a non-negative integer")
    return value


def _optional_number(
    record: Mapping[str, Any],
    key: str,
    where: str,
    *,
    minimum: float = -math.inf,
    maximum: float = math.inf,
) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not minimum <= value <= maximum
        or not math.isfinite(value)
    ):
        bounds = "a number >= 0" if minimum == 0.0 else "a number <= 0"
        raise DatasetError(f"{where}.{key} must be {bounds}")
    return float(value)


def _field(record: Mapping[str, Any], key: str, kind: type[_T], where: str) -> _T:
    value = record.get(key)
    if not isinstance(value, kind):
        raise DatasetError(f"{where}: `{key}` must be a {kind.__name__}")
    return value


def _read_jsonl(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, record


def to_jsonl(dataset: RecordedDataset) -> str:
    """The dataset in the JSONL format `load_jsonl` reads (token counts and costs included)."""
    lines = []
    for item in dataset.items:
        responses: dict[str, dict[str, Any]] = {}
        for model, answer in item.answers.items():
            response: dict[str, Any] = {"text": answer.text}
            if answer.correct is not None:
                response["correct"] = answer.correct
            if not answer.tokens_estimated:
                response["prompt_tokens"] = answer.prompt_tokens
                response["completion_tokens"] = answer.completion_tokens
            if answer.cost_usd is not None:
                response["cost_usd"] = answer.cost_usd
            if answer.mean_logprob is not None:
                response["mean_logprob"] = answer.mean_logprob
            responses[model] = response
        record: dict[str, Any] = {"prompt": item.prompt}
        if item.gold is not None:
            record["gold"] = item.gold
        record["responses"] = responses
        lines.append(orjson.dumps(record).decode())
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True, slots=True)
class SyntheticModel:
    """A model of a synthetic dataset: how often it is right, and what each answer costs."""

    name: str
    accuracy: float
    cost_usd: float


def synthesize(
    models: Sequence[SyntheticModel], prompts: int, correlation: float, seed: int = 0
) -> RecordedDataset:
    """A recorded dataset with known answers: prompt k asks for a sum, `gold` is its value.

    Prompt k has a difficulty u_k and model i a draw v_ik, each spread evenly over [0, 1)
    (the (j + 1/2)/n points, shuffled): model i is right on prompt k when w < accuracy_i, where
    w is u_k with probability `correlation`, else v_ik. So each model is right on exactly
    round(accuracy x prompts) prompts when correlation is 0 or 1; at 1 the weaker model's right
    prompts are a subset of the stronger's, at 0 the models err independently. A wrong answer
    is gold + 1 + the model's index, so no two models are wrong alike. Every answer states its
    own correctness, 10 + 10 tokens, and its model's cost_usd.
    """
    if prompts < 1:
        raise ValueError(f"prompts must be >= 1, got {prompts}")
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [0, 1], got {correlation}")
    rng = random.Random(seed)

    def spread() -> list[float]:
        points = [(j + 0.5) / prompts for j in range(prompts)]
        rng.shuffle(points)
        return points

    shared = spread()
    own = {m.name: spread() for m in models}
    coins = [[rng.random() < correlation for _ in models] for _ in range(prompts)]
    items = []
    for k in range(prompts):
        a, b = rng.randrange(10, 1000), rng.randrange(10, 1000)
        gold = a + b
        answers = {}
        for i, m in enumerate(models):
            draw = shared[k] if coins[k][i] else own[m.name][k]
            right = draw < m.accuracy
            value = gold if right else gold + 1 + i
            answers[m.name] = RecordedAnswer(
                text=f"#### {value}",
                correct=right,
                prompt_tokens=10,
                completion_tokens=10,
                tokens_estimated=False,
                cost_usd=m.cost_usd,
            )
        prompt = f"Question {k}: what is {a} + {b}?"
        items.append(RecordedItem(prompt, str(gold), MappingProxyType(answers)))
    return RecordedDataset(tuple(m.name for m in models), tuple(items))
