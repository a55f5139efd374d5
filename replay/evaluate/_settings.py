"""What an evaluation is asked to do: its settings, prices and the errors it reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.snapshot import EnsembleMethod, Strategy

RANDOM: Final = "random"
PROMPT_LENGTH: Final = "prompt_length"
STRATEGIES: Final = (*(s.value for s in Strategy), RANDOM, PROMPT_LENGTH)
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
