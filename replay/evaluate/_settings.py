"""What an evaluation is asked to do: its settings, prices and the errors it reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.cascade import DEFAULT_THRESHOLD
from atom_actors.snapshot import EnsembleMethod, Strategy

RANDOM: Final = "random"
PROMPT_LENGTH: Final = "prompt_length"
CASCADE: Final = "cascade"
AGREEMENT_CASCADE: Final = "cascade:agreement"
STRATEGIES: Final = (*(s.value for s in Strategy), AGREEMENT_CASCADE, RANDOM, PROMPT_LENGTH)
DEFAULT_DB: Final = "atom-eval.db"
CAPABILITY: Final = "reasoning"
# The answer allowance of each request's reservation; recorded GSM8K answers run far shorter.
MAX_TOKENS: Final = 1024
NUMBER: Final = AnswerFormat(AnswerKind.NUMBER)
ACTOR: Final = "atom replay evaluate"


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


def parse_answer_format(text: str) -> AnswerFormat:
    """ "number", "choice", "text" or "json:FIELD" as an AnswerFormat."""
    kind, colon, path = text.partition(":")
    try:
        answer_kind = AnswerKind(kind)
    except ValueError:
        answer_kind = None
    if (
        answer_kind is None
        or (answer_kind is AnswerKind.JSON) != bool(path)
        or (colon and answer_kind is not AnswerKind.JSON)
    ):
        raise EvaluationError(
            f"--answer-format: {text!r} is not one of number, choice, text, json:FIELD"
        )
    return AnswerFormat(answer_kind, path or None)


def format_name(fmt: AnswerFormat) -> str:
    """The --answer-format spelling of a format."""
    return f"json:{fmt.field}" if fmt.kind is AnswerKind.JSON else fmt.kind.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """One evaluation's parameters: a dataset to split, or a train and a test file."""

    dataset: Path | None = None
    train: Path | None = None
    test: Path | None = None
    strategy: str
    ensemble: EnsembleMethod = EnsembleMethod.MAJORITY_VOTE
    format: DatasetFormat | None = None
    split: tuple[int, int] = (50, 50)
    seed: int = 0
    prices: Mapping[str, Price] = field(default_factory=dict)
    scorer: ScorerKind = ScorerKind.REFERENCE
    answer_format: AnswerFormat = NUMBER
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.train is None and self.test is None):
            raise EvaluationError("give --dataset, or --train and --test, not both")
        if self.dataset is None and (self.train is None or self.test is None):
            raise EvaluationError("--train and --test go together")

    @property
    def source(self) -> str:
        """The data, as the report names it."""
        if self.dataset is not None:
            return str(self.dataset)
        return f"{self.train} (train), {self.test} (test)"

    @property
    def selected(self) -> str:
        """The row reported at the top: the strategy, or the ensemble with its method."""
        return f"ensemble:{self.ensemble}" if self.strategy == Strategy.ENSEMBLE else self.strategy

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": None if self.dataset is None else str(self.dataset),
            "train": None if self.train is None else str(self.train),
            "test": None if self.test is None else str(self.test),
            "format": self.format and self.format.value,
            "strategy": self.strategy,
            "ensemble": self.ensemble.value,
            "split": None if self.dataset is None else f"{self.split[0]}:{self.split[1]}",
            "seed": self.seed,
            "prices": {model: str(price) for model, price in self.prices.items()},
            "scorer": self.scorer.value,
            "answer_format": format_name(self.answer_format),
            "threshold": self.threshold,
        }
