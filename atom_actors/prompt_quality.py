"""Per-prompt quality: how well each model is expected to answer one prompt, learnt from scores.

A model's expected score on a prompt is what the prompt's length predicts (a least-squares line
over log length: longer problems are harder) plus the amount by which the k most similar scored
prompts (TF-IDF cosine over words) came out above or below that line, on average, shrunk toward
none as if `offset_prior` more neighbours had lain on the line.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

DEFAULT_NEIGHBOURS: Final = 40
# A handful of similar prompts is weak evidence: their offset counts against 20 on the line.
DEFAULT_OFFSET_PRIOR: Final = 20.0
_WORD = re.compile(r"[a-z]+|\d+")


def words(text: str) -> list[str]:
    """Lower-case runs of letters and runs of digits: "$1,800" gives "1" and "800"."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True, slots=True)
class ScoredPrompt:
    """A prompt and the score in [0, 1] each model earned on it (models without one are absent)."""

    prompt: str
    scores: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Line:
    """y = intercept + slope * x."""

    intercept: float
    slope: float

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x


def least_squares(points: Sequence[tuple[float, float]]) -> Line:
    """The line through (x, y) points with the least squared error; flat at mean y if x is."""
    if not points:
        raise ValueError("a line needs at least one point")
    n = len(points)
    mean_x = math.fsum(x for x, _ in points) / n
    mean_y = math.fsum(y for _, y in points) / n
    spread = math.fsum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0.0:
        return Line(mean_y, 0.0)
    slope = math.fsum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return Line(mean_y - slope * mean_x, slope)


def log_length(prompt: str) -> float:
    """log(1 + characters): the line's x."""
    return math.log1p(len(prompt))


@dataclass(frozen=True, slots=True)
class TfIdfIndex:
    """Documents as unit TF-IDF vectors in an inverted index, for cosine nearest neighbours."""

    idf: Mapping[str, float]
    postings: Mapping[str, tuple[tuple[int, float], ...]]
    size: int

    @classmethod
    def build(cls, documents: Sequence[str]) -> TfIdfIndex:
        """Sublinear term frequency (1 + log tf) times smoothed idf, log((1+N)/(1+df)) + 1."""
        counts = [Counter(words(d)) for d in documents]
        frequency = Counter(term for c in counts for term in c)
        n = len(documents)
        idf = {t: math.log((1 + n) / (1 + df)) + 1.0 for t, df in frequency.items()}
        postings: dict[str, list[tuple[int, float]]] = {}
        for doc, c in enumerate(counts):
            weights = {t: (1.0 + math.log(tf)) * idf[t] for t, tf in c.items()}
            norm = math.sqrt(math.fsum(w * w for w in weights.values()))
            for term, weight in weights.items():
                postings.setdefault(term, []).append((doc, weight / norm))
        return cls(idf, {t: tuple(p) for t, p in postings.items()}, n)

    def nearest(self, text: str, k: int) -> list[int]:
        """The k documents most similar to `text`, most similar first; ties to the earlier one.

        Only documents sharing a word with the text are similar at all, so fewer may come back.
        The query is not normalised: its length scales every similarity alike.
        """
        similarity = [0.0] * self.size
        for term, tf in Counter(words(text)).items():
            idf = self.idf.get(term)
            if idf is None:  # a word no document has adds nothing
                continue
            weight = (1.0 + math.log(tf)) * idf
            for doc, doc_weight in self.postings[term]:
                similarity[doc] += weight * doc_weight
        shared = [doc for doc, value in enumerate(similarity) if value > 0.0]
        # nlargest is stable, so among equals the earlier document comes first.
        return heapq.nlargest(k, shared, key=similarity.__getitem__)


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's expected score on a prompt, and how many scores it was learnt from."""

    score: float
    evidence: int


@dataclass(frozen=True, slots=True)
class PromptQuality:
    """Fitted per-prompt quality; build it with `fit_prompt_quality`."""

    lines: Mapping[str, Line]
    # residuals[model][i]: how far example i's score lies above the model's line (None: unscored)
    residuals: Mapping[str, tuple[float | None, ...]]
    index: TfIdfIndex
    neighbours: int
    offset_prior: float
    # How many examples each model was scored on: its predictions' evidence.
    evidence: Mapping[str, int]

    def predict(self, prompt: str) -> dict[str, Prediction]:
        """Each model's expected score on `prompt`, clamped to [0, 1]."""
        near = self.index.nearest(prompt, self.neighbours)
        x = log_length(prompt)
        predictions = {}
        for model, line in self.lines.items():
            residuals = self.residuals[model]
            offsets = [r for r in (residuals[i] for i in near) if r is not None]
            offset = math.fsum(offsets) / (len(offsets) + self.offset_prior) if offsets else 0.0
            score = min(1.0, max(0.0, line.at(x) + offset))
            predictions[model] = Prediction(score, self.evidence[model])
        return predictions


def fit_prompt_quality(
    examples: Sequence[ScoredPrompt],
    neighbours: int = DEFAULT_NEIGHBOURS,
    offset_prior: float = DEFAULT_OFFSET_PRIOR,
) -> PromptQuality:
    """Learn each scored model's line over log length, and every example's residual from it."""
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    if not 0.0 <= offset_prior < math.inf:
        raise ValueError(f"offset_prior must be finite and >= 0, got {offset_prior}")
    for example in examples:
        if any(not 0.0 <= s <= 1.0 for s in example.scores.values()):
            raise ValueError(f"scores must be in [0, 1], got {dict(example.scores)}")
    lines: dict[str, Line] = {}
    residuals: dict[str, tuple[float | None, ...]] = {}
    for model in _models(examples):
        lines[model] = least_squares(
            [(log_length(e.prompt), e.scores[model]) for e in examples if model in e.scores]
        )
        residuals[model] = tuple(
            e.scores[model] - lines[model].at(log_length(e.prompt)) if model in e.scores else None
            for e in examples
        )
    index = TfIdfIndex.build([e.prompt for e in examples])
    evidence = {m: sum(r is not None for r in rs) for m, rs in residuals.items()}
    return PromptQuality(lines, residuals, index, neighbours, offset_prior, evidence)


def _models(examples: Iterable[ScoredPrompt]) -> list[str]:
    return list(dict.fromkeys(model for e in examples for model in e.scores))
