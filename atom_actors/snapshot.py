"""What routing reads and returns: a request, a snapshot of the models, and the decision."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from atom_actors.catalog import ModelSpec
from atom_actors.cost import PromptSize
from atom_actors.quality import Evidence


class Health(StrEnum):
    """A model's circuit breaker: open refuses calls, half_open lets a trial call through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Strategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    QUALITY_FIRST = "quality_first"
    COST_FIRST = "cost_first"
    SPEED_FIRST = "speed_first"
    CAPABILITY = "capability"
    ENSEMBLE = "ensemble"
    CASCADE = "cascade"


class EnsembleMethod(StrEnum):
    MAJORITY_VOTE = "majority_vote"
    WEIGHTED_AVERAGE = "weighted_average"
    CONFIDENCE_WEIGHTED = "confidence_weighted"
    BEST_OF_N = "best_of_n"
    CONSENSUS = "consensus"


@dataclass(frozen=True, slots=True)
class EnsembleSpec:
    """Who answers an ensemble: the named members, else the `size` strongest eligible models.

    With samples > 1 it is N samples of one model: the first named member, else the strongest.
    """

    method: EnsembleMethod = EnsembleMethod.MAJORITY_VOTE
    members: tuple[str, ...] = ()
    samples: int = 1
    size: int = 3

    def __post_init__(self) -> None:
        if self.samples < 1 or self.size < 1:
            raise ValueError("an ensemble needs samples >= 1 and size >= 1")


@dataclass(frozen=True, slots=True)
class CascadeSpec:
    """How a cascade starts: `first` cheapest models, or `samples` calls of the cheapest one,
    answer together (so their agreement can be checked); at most `steps` rungs in all."""

    first: int = 1
    samples: int = 1
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.first < 1 or self.samples < 1 or (self.steps is not None and self.steps < 1):
            raise ValueError("a cascade needs first >= 1, samples >= 1 and steps >= 1")
        if self.first > 1 and self.samples > 1:
            raise ValueError("a cascade starts with several models or several samples, not both")


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One request as routing sees it; allow=None allows every model, an empty set none.

    max_tokens None is each model's own max_output_tokens, which ATOM then sends upstream.
    """

    capability: str
    prompt: PromptSize
    max_tokens: int | None = None
    strategy: Strategy = Strategy.QUALITY_FIRST
    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()
    min_quality: float | None = None
    max_cost_usd: float | None = None
    deadline_ms: float | None = None
    ensemble: EnsembleSpec = EnsembleSpec()
    cascade: CascadeSpec = CascadeSpec()
    # Capabilities the request's content needs beside `capability`: "multimodal" for images,
    # "tools" for tool definitions.
    needs: frozenset[str] = frozenset()
    # Parameters it sets that some provider refuses (see parameters.py): models of those
    # providers are left out.
    parameters: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.prompt.estimate < 0 or self.prompt.bound < 0 or self.prompt.images < 0:
            raise ValueError("a prompt's sizes must be >= 0")
        # 0 for an embeddings call, which generates nothing.
        if self.max_tokens is not None and self.max_tokens < 0:
            raise ValueError("max_tokens must be >= 0")
        if self.min_quality is not None and not 0.0 <= self.min_quality <= 1.0:
            raise ValueError(f"min_quality must be in [0, 1], got {self.min_quality}")
        if self.max_cost_usd is not None and not self.max_cost_usd >= 0.0:
            raise ValueError(f"max_cost_usd must be >= 0, got {self.max_cost_usd}")
        if self.deadline_ms is not None and not self.deadline_ms > 0.0:
            raise ValueError(f"deadline_ms must be > 0, got {self.deadline_ms}")


@dataclass(frozen=True, slots=True)
class ModelFigures:
    """What has been observed of one model; None until there is data."""

    quality: Mapping[str, Evidence] = field(default_factory=dict)
    ttft_ms: float | None = None
    tokens_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.ttft_ms is not None and not (math.isfinite(self.ttft_ms) and self.ttft_ms >= 0):
            raise ValueError(f"ttft_ms must be finite and >= 0, got {self.ttft_ms}")
        if self.tokens_per_s is not None and not (
            math.isfinite(self.tokens_per_s) and self.tokens_per_s > 0
        ):
            raise ValueError(f"tokens_per_s must be finite and > 0, got {self.tokens_per_s}")


@dataclass(frozen=True, slots=True)
class RouteSnapshot:
    """The state routing decides on, built by the router from projections.

    A model missing from `health` is closed, from `figures` unobserved; `unavailable` names
    models that cannot be called and why (e.g. "credentials: OPENAI_API_KEY not set").
    headroom_usd is what this request's reservation must fit; None means no budget applies.
    """

    catalog: tuple[ModelSpec, ...]
    health: Mapping[str, Health] = field(default_factory=dict)
    figures: Mapping[str, ModelFigures] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)
    headroom_usd: float | None = None
    round_robin_counter: int = 0

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.catalog]
        if len(set(names)) != len(names):
            raise ValueError("catalog model names must be unique")

    def figures_of(self, model: str) -> ModelFigures:
        return self.figures.get(model, _UNOBSERVED)

    def health_of(self, model: str) -> Health:
        return self.health.get(model, Health.CLOSED)


_UNOBSERVED = ModelFigures()


@dataclass(frozen=True, slots=True)
class Candidate:
    """An eligible model, the strategy's score (higher ranks first) and what to expect of it.

    expected_cost_usd is the reservation in USD: the cost if the answer runs to max_tokens.
    """

    model: str
    score: float
    quality: float
    quality_evidence: int
    expected_cost_usd: float
    reservation_pico: int
    expected_latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "score": self.score,
            "quality": self.quality,
            "quality_evidence": self.quality_evidence,
            "expected_cost_usd": self.expected_cost_usd,
            "reservation_pico": self.reservation_pico,
            "expected_latency_ms": self.expected_latency_ms,
        }


@dataclass(frozen=True, slots=True)
class Exclusion:
    model: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class EnsemblePlan:
    """The calls an ensemble makes (a model repeats for samples) and how they are combined."""

    method: EnsembleMethod
    members: tuple[str, ...]
    reservation_pico: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method.value,
            "members": list(self.members),
            "reservation_pico": self.reservation_pico,
        }


@dataclass(frozen=True, slots=True)
class CascadeRung:
    """One step of a cascade: the calls it makes together, and what they reserve together."""

    models: tuple[str, ...]
    reservation_pico: int

    def to_dict(self) -> dict[str, Any]:
        return {"models": list(self.models), "reservation_pico": self.reservation_pico}


@dataclass(frozen=True, slots=True)
class CascadePlan:
    """The ladder, cheapest rung first: each rung is reserved just before it is called."""

    rungs: tuple[CascadeRung, ...]

    @property
    def reservation_pico(self) -> int:
        """What the whole ladder could cost: the most a cascade can spend."""
        return sum(rung.reservation_pico for rung in self.rungs)

    def to_dict(self) -> dict[str, Any]:
        return {"rungs": [rung.to_dict() for rung in self.rungs]}


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Candidates best first (the first is the choice, the rest the fallback order), and why."""

    strategy: Strategy
    candidates: tuple[Candidate, ...]
    excluded: tuple[Exclusion, ...]
    reason: str
    next_counter: int | None = None
    ensemble: EnsemblePlan | None = None
    cascade: CascadePlan | None = None

    @property
    def chosen(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(candidate.model for candidate in self.candidates)

    @property
    def over_budget(self) -> bool:
        """No model is left and the budget is why: the router answers 402, not 503."""
        return not self.candidates and any(e.reason.startswith("budget:") for e in self.excluded)

    def to_dict(self) -> dict[str, Any]:
        """The decision as plain JSON values, for the RouteDecided event."""
        chosen = self.chosen
        return {
            "strategy": self.strategy.value,
            "chosen": chosen.model if chosen else None,
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "excluded": [exclusion.to_dict() for exclusion in self.excluded],
            "reason": self.reason,
            "next_counter": self.next_counter,
            "ensemble": self.ensemble.to_dict() if self.ensemble else None,
            "cascade": self.cascade.to_dict() if self.cascade else None,
        }
