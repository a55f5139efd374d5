"""Learned routers for quality_first, side by side on the shared GSM8K recordings.

Each predictor learns, from the train half of a split only, a per-prompt gain of the strong model
over the weak one; a threshold on the gains traces RouteLLM's curve on the test half. Nothing is
tuned on a test half: where a predictor has a knob, it is fixed here or chosen by 2-fold
cross-validation inside the train half. numpy is used here only (it comes with llama-cpp-python).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from atom_actors.datasets import RecordedDataset, RecordedItem
from atom_actors.prompt_quality import ScoredPrompt, fit_prompt_quality, words
from replay._routellm import threshold_curve

Scores = Callable[[RecordedItem, str], float]
Embed = Callable[[Sequence[str]], NDArray[np.float64]]
# (train items, test items, weak, strong, score) -> the test prompts' gains
Predictor = Callable[
    [Sequence[RecordedItem], Sequence[RecordedItem], str, str, Scores], list[float]
]
Matrix = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    apgrs: tuple[float, ...]
    cpt50s: tuple[float, ...]
    cpt80s: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "apgr_mean": round(float(np.mean(self.apgrs)), 4),
            "apgr_min": round(min(self.apgrs), 4),
            "apgr": [round(a, 4) for a in self.apgrs],
            "cpt50_mean": round(float(np.mean(self.cpt50s)), 4),
            "cpt80_mean": round(float(np.mean(self.cpt80s)), 4),
        }


def measure(
    name: str,
    predictor: Predictor,
    dataset: RecordedDataset,
    seeds: Sequence[int],
    weak: str,
    strong: str,
    score: Scores,
) -> Result:
    """The predictor's APGR and CPT on the test half of each seed's 50:50 split."""
    apgrs, cpt50s, cpt80s = [], [], []
    for seed in seeds:
        train, test = dataset.split(0.5, seed)
        gains = predictor(train.items, test.items, weak, strong, score)
        curve = threshold_curve(
            gains, [score(i, weak) for i in test.items], [score(i, strong) for i in test.items]
        )
        apgrs.append(curve.apgr())
        cpt50s.append(curve.cpt(0.5) or 1.0)
        cpt80s.append(curve.cpt(0.8) or 1.0)
    return Result(name, tuple(apgrs), tuple(cpt50s), tuple(cpt80s))


def _apgr(
    gains: Sequence[float], items: Sequence[RecordedItem], weak: str, strong: str, score: Scores
) -> float:
    return threshold_curve(
        gains, [score(i, weak) for i in items], [score(i, strong) for i in items]
    ).apgr()


# ATOM's router: a line over log length plus TF-IDF neighbours' residuals (prompt_quality.py).


def tfidf_knn(neighbours: int = 40, offset_prior: float = 20.0) -> Predictor:
    def predict(
        train: Sequence[RecordedItem],
        test: Sequence[RecordedItem],
        weak: str,
        strong: str,
        score: Scores,
    ) -> list[float]:
        examples = [
            ScoredPrompt(i.prompt, {weak: score(i, weak), strong: score(i, strong)}) for i in train
        ]
        quality = fit_prompt_quality(examples, neighbours, offset_prior)
        out = []
        for item in test:
            p = quality.predict(item.prompt)
            out.append(p[strong].score - p[weak].score)
        return out

    return predict


def cross_validated(grid: Sequence[tuple[str, Predictor]]) -> Predictor:
    """The grid's predictor with the best APGR over 2 folds of the train half, refitted on it."""

    def predict(
        train: Sequence[RecordedItem],
        test: Sequence[RecordedItem],
        weak: str,
        strong: str,
        score: Scores,
    ) -> list[float]:
        half = len(train) // 2
        folds = [(train[:half], train[half:]), (train[half:], train[:half])]
        best = max(
            grid,
            key=lambda entry: sum(
                _apgr(entry[1](a, b, weak, strong, score), b, weak, strong, score) for a, b in folds
            ),
        )
        return best[1](train, test, weak, strong, score)

    return predict


# Features of the prompt, and linear models over them.


def hand_features(text: str) -> list[float]:
    """Length, how many numbers and which kinds, sentences, and words that signal fractions."""
    numbers = re.findall(r"\d+(?:\.\d+)?", text)
    return [
        math.log1p(len(text)),
        len(numbers),
        len(set(numbers)),
        sum("." in n for n in numbers),
        text.count("%"),
        sum(float(n) >= 100 for n in numbers),
        len(re.findall(r"[.?!]\s", text)),
        float(bool(re.search(r"half|third|quarter|fraction|percent", text, re.I))),
        float(bool(re.search(r"each|every|per", text, re.I))),
        max((len(n) for n in numbers), default=0),
    ]


def tfidf_matrix(train: Sequence[str], test: Sequence[str]) -> tuple[Matrix, Matrix]:
    """Unit TF-IDF rows over the words seen at least twice in the train part."""
    counts = [Counter(words(t)) for t in train]
    df = Counter(term for c in counts for term in c)
    vocabulary = {t: j for j, t in enumerate(sorted(t for t, n in df.items() if n >= 2))}
    n = len(train)
    idf = np.array([math.log((1 + n) / (1 + df[t])) + 1 for t in vocabulary])

    def row(text: str) -> Matrix:
        v = np.zeros(len(vocabulary))
        for term, tf in Counter(words(text)).items():
            if term in vocabulary:
                v[vocabulary[term]] = 1 + math.log(tf)
        v *= idf
        norm = np.linalg.norm(v)
        return v / norm if norm else v

    return np.array([row(t) for t in train]), np.array([row(t) for t in test])


def standardised(a: Matrix, b: Matrix) -> tuple[Matrix, Matrix]:
    mean, spread = a.mean(0), a.std(0) + 1e-9
    return (a - mean) / spread, (b - mean) / spread


def logistic(x: Matrix, y: Matrix, l2: float, weights: Matrix | None = None) -> Matrix:
    """Weights (bias first) of an L2-penalised logistic regression, by Newton's method."""
    x = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(x.shape[1])
    sample = np.ones(len(x)) if weights is None else weights
    penalty = l2 * np.r_[1e-6, np.ones(x.shape[1] - 1)]
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ w)))
        gradient = x.T @ (sample * (p - y)) + penalty * w
        hessian = (x.T * (sample * p * (1 - p))) @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def probability(w: Matrix, x: Matrix) -> Matrix:
    return 1 / (1 + np.exp(-(np.hstack([np.ones((len(x), 1)), x]) @ w)))


Featurise = Callable[[Sequence[RecordedItem], Sequence[RecordedItem]], tuple[Matrix, Matrix]]


def hand(train: Sequence[RecordedItem], test: Sequence[RecordedItem]) -> tuple[Matrix, Matrix]:
    a = np.array([hand_features(i.prompt) for i in train])
    b = np.array([hand_features(i.prompt) for i in test])
    return standardised(a, b)


def tfidf(train: Sequence[RecordedItem], test: Sequence[RecordedItem]) -> tuple[Matrix, Matrix]:
    return tfidf_matrix([i.prompt for i in train], [i.prompt for i in test])


def embedded(embed: Embed) -> Featurise:
    def featurise(
        train: Sequence[RecordedItem], test: Sequence[RecordedItem]
    ) -> tuple[Matrix, Matrix]:
        return standardised(embed([i.prompt for i in train]), embed([i.prompt for i in test]))

    return featurise


def calibrated_difference(features: Featurise, l2: float) -> Predictor:
    """P(strong right) - P(weak right), each a calibrated logistic model of the features."""

    def predict(
        train: Sequence[RecordedItem],
        test: Sequence[RecordedItem],
        weak: str,
        strong: str,
        score: Scores,
    ) -> list[float]:
        a, b = features(train, test)
        ys = np.array([score(i, strong) for i in train])
        yw = np.array([score(i, weak) for i in train])
        return list(probability(logistic(a, ys, l2), b) - probability(logistic(a, yw, l2), b))

    return predict


def preference(features: Featurise, l2: float) -> Predictor:
    """RouteLLM's matrix factorisation with two models: a logistic model of which one wins,
    learnt from the prompts where exactly one is right (ties carry no preference)."""

    def predict(
        train: Sequence[RecordedItem],
        test: Sequence[RecordedItem],
        weak: str,
        strong: str,
        score: Scores,
    ) -> list[float]:
        a, b = features(train, test)
        margin = np.array([score(i, strong) - score(i, weak) for i in train])
        decided = margin != 0
        w = logistic(a[decided], (margin[decided] > 0).astype(float), l2)
        return list(probability(w, b))

    return predict


def _unit(embed: Embed, items: Sequence[RecordedItem]) -> NDArray[np.float64]:
    """The items' prompt embeddings, each scaled to length one (cosine is then a dot product)."""
    vectors = embed([i.prompt for i in items])
    unit: NDArray[np.float64] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def neighbours(embed: Embed, k: int = 40, prior: float = 20.0) -> Predictor:
    """prompt_quality's neighbour residuals with cosine over the embeddings instead of TF-IDF."""

    def predict(
        train: Sequence[RecordedItem],
        test: Sequence[RecordedItem],
        weak: str,
        strong: str,
        score: Scores,
    ) -> list[float]:
        a, b = _unit(embed, train), _unit(embed, test)
        lengths = np.log1p([len(i.prompt) for i in train])
        test_lengths = np.log1p([len(i.prompt) for i in test])
        gains = np.zeros(len(test))
        for model, sign in ((strong, 1.0), (weak, -1.0)):
            y = np.array([score(i, model) for i in train])
            slope, intercept = np.polyfit(lengths, y, 1)
            residual = y - (intercept + slope * lengths)
            near = np.argsort(-(b @ a.T), axis=1)[:, :k]
            offset = residual[near].sum(1) / (k + prior)
            gains += sign * (intercept + slope * test_lengths + offset)
        return list(gains)

    return predict


def clusters(embed: Embed, count: int = 16, prior: float = 10.0, seed: int = 0) -> Predictor:
    """Per (prompt cluster, model) success rates, shrunk toward the model's mean: k-means over
    the embeddings, then the strong model's rate minus the weak one's in the prompt's cluster."""

    def predict(
        train: Sequence[RecordedItem],
        test: Sequence[RecordedItem],
        weak: str,
        strong: str,
        score: Scores,
    ) -> list[float]:
        a, b = _unit(embed, train), _unit(embed, test)
        rng = np.random.default_rng(seed)
        centres = a[rng.choice(len(a), count, replace=False)]
        for _ in range(30):
            assigned = np.argmax(a @ centres.T, axis=1)
            for c in range(count):
                members = a[assigned == c]
                if len(members):
                    centre = members.mean(0)
                    centres[c] = centre / np.linalg.norm(centre)
        assigned = np.argmax(a @ centres.T, axis=1)
        test_assigned = np.argmax(b @ centres.T, axis=1)
        gains = np.zeros(len(test))
        for model, sign in ((strong, 1.0), (weak, -1.0)):
            y = np.array([score(i, model) for i in train])
            rate = np.array(
                [
                    (y[assigned == c].sum() + prior * y.mean()) / ((assigned == c).sum() + prior)
                    for c in range(count)
                ]
            )
            gains += sign * rate[test_assigned]
        return list(gains)

    return predict


def rank_average(*predictors: Predictor) -> Predictor:
    """The mean of each predictor's rank of the prompt: a blend that needs no common scale."""

    def predict(
        train: Sequence[RecordedItem],
        test: Sequence[RecordedItem],
        weak: str,
        strong: str,
        score: Scores,
    ) -> list[float]:
        ranks = [np.argsort(np.argsort(p(train, test, weak, strong, score))) for p in predictors]
        return list(np.mean(ranks, axis=0))

    return predict


def features_knn(
    features: Featurise, near: Featurise, k: int = 40, prior: float = 20.0, l2: float = 10.0
) -> Predictor:
    """prompt_quality's shape with a richer line: a ridge regression over `features` per model,
    plus the residuals of the k nearest train prompts by cosine over `near`, shrunk by `prior`."""

    def predict(
        train: Sequence[RecordedItem],
        test: Sequence[RecordedItem],
        weak: str,
        strong: str,
        score: Scores,
    ) -> list[float]:
        a, b = features(train, test)
        a1, b1 = np.hstack([np.ones((len(a), 1)), a]), np.hstack([np.ones((len(b), 1)), b])
        na, nb = near(train, test)
        na = na / (np.linalg.norm(na, axis=1, keepdims=True) + 1e-12)
        nb = nb / (np.linalg.norm(nb, axis=1, keepdims=True) + 1e-12)
        nearest = np.argsort(-(nb @ na.T), axis=1)[:, :k]
        gains = np.zeros(len(test))
        for model, sign in ((strong, 1.0), (weak, -1.0)):
            y = np.array([score(i, model) for i in train])
            penalty = l2 * np.eye(a1.shape[1])
            penalty[0, 0] = 0.0
            w = np.linalg.solve(a1.T @ a1 + penalty, a1.T @ y)
            residual = y - a1 @ w
            gains += sign * (b1 @ w + residual[nearest].sum(1) / (k + prior))
        return list(gains)

    return predict
