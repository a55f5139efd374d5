"""The cascade's learned acceptance score: the probability that a rung's answer is right.

A logistic model over features of the rung's replies (below), fitted by Newton's method with an
L2 penalty on scored history: each `ScoredRung` is a rung's replies and the score its answer
earned (a ScoreRecorded of the reference scorer, a judge, feedback). Features, each in about
[0, 1] so one penalty suits them all:

- `valid`: the speaking reply holds an answer of the format;
- `marked`: the answer follows an explicit cue (GSM8K's "####", "answer:", a JSON reply);
- `whole`: for numbers, the answer is a whole number (word problems mostly have whole answers);
- `arithmetic_errors`: for numbers, the share of the reply's own worked equations
  (`<<6*7=42>>`, `6 x 7 = 42`) that do not hold;
- `length`: log(1 + reply characters) / 8; `prompt_length`: log(1 + prompt characters) / 8;
- `share`, `several`: the share of the rung's replies behind its answer, and whether it had more
  than one reply; `confidence`, `has_confidence`: exp(mean logprob) where given;
- one indicator per model seen in training (the speaker's).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from atom_actors.answers import AnswerKind
from atom_actors.cascade import RungView

FEATURES: Final = (
    "bias",
    "valid",
    "marked",
    "whole",
    "arithmetic_errors",
    "length",
    "prompt_length",
    "share",
    "several",
    "confidence",
    "has_confidence",
)
DEFAULT_L2: Final = 1.0
_CUE = re.compile(r"####|(?i:answer)\s*(?i:is)?\s*:")
_CALCULATOR = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
_EQUATION = re.compile(
    r"(\d[\d.,]*\s*(?:[-+*/x\u00d7]\s*\d[\d.,]*\s*)+)=\s*\$?(-?\d[\d,]*(?:\.\d+)?)"
)
_OPERATORS: Final[dict[type[ast.operator], Callable[[float, float], float]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def arithmetic(expression: str) -> float | None:
    """The value of a plain arithmetic expression (+ - * / x, parentheses), else None."""
    text = expression.replace(",", "").replace("x", "*").replace("\u00d7", "*").strip()
    try:
        tree = ast.parse(text, mode="eval").body
        return _value(tree)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError):
        return None


def _value(node: ast.expr) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    raise ValueError("not plain arithmetic")


def arithmetic_errors(text: str) -> float:
    """The share of the reply's checkable equations that are wrong (0.0 with none to check)."""
    claims = _CALCULATOR.findall(text) or _EQUATION.findall(text)
    checked = wrong = 0
    for expression, stated in claims:
        value = arithmetic(expression)
        try:
            claimed = float(stated.replace(",", "").replace("$", ""))
        except ValueError:
            continue
        if value is None:
            continue
        checked += 1
        wrong += abs(value - claimed) > 1e-6 * max(1.0, abs(value))
    return wrong / checked if checked else 0.0


def features(rung: RungView, models: Sequence[str]) -> list[float]:
    """The rung's feature vector: FEATURES in order, then one indicator per model."""
    speaker = rung.speaker
    text = speaker.text if speaker is not None else ""
    number = rung.fmt.kind is AnswerKind.NUMBER
    answer = rung.answer or ""
    logprob = speaker.mean_logprob if speaker is not None else None
    values = [
        1.0,
        float(rung.answer is not None),
        float(rung.fmt.kind is AnswerKind.JSON or bool(_CUE.search(text))),
        float(number and rung.answer is not None and "." not in answer and "-" not in answer),
        arithmetic_errors(text) if number else 0.0,
        math.log1p(len(text)) / 8.0,
        math.log1p(len(rung.prompt)) / 8.0,
        rung.share,
        float(len(rung.attempts) > 1),
        math.exp(logprob) if logprob is not None else 0.0,
        float(logprob is not None),
    ]
    model = speaker.model if speaker is not None else None
    return values + [float(model == m) for m in models]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoredRung:
    """A rung's replies and the score in [0, 1] its answer earned: one example of history."""

    rung: RungView
    score: float


@dataclass(frozen=True, slots=True)
class AcceptanceModel:
    """A fitted logistic acceptance model; `probability` is a cascade.AcceptanceScorer."""

    models: tuple[str, ...]
    weights: tuple[float, ...]

    def probability(self, rung: RungView) -> float:
        return _sigmoid(
            math.fsum(w * x for w, x in zip(self.weights, features(rung, self.models), strict=True))
        )


def fit_acceptance(history: Sequence[ScoredRung], l2: float = DEFAULT_L2) -> AcceptanceModel:
    """Fit the acceptance model to scored history (a score counts as that share of a success)."""
    if not history:
        raise ValueError("an acceptance model needs scored history")
    models = tuple(sorted({h.rung.speaker.model for h in history if h.rung.speaker is not None}))
    rows = [features(h.rung, models) for h in history]
    return AcceptanceModel(models, tuple(fit_logistic(rows, [h.score for h in history], l2)))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def fit_logistic(
    rows: Sequence[Sequence[float]], targets: Sequence[float], l2: float, iterations: int = 30
) -> list[float]:
    """Weights minimising log loss + l2/2 * |w|^2 (bias included), by Newton's method."""
    if not rows or len(rows) != len(targets):
        raise ValueError("rows and targets must be non-empty and of one length")
    if any(not 0.0 <= t <= 1.0 for t in targets):
        raise ValueError("targets must be in [0, 1]")
    if not l2 > 0.0:
        raise ValueError(f"l2 must be > 0 (it keeps the Newton step defined), got {l2}")
    d = len(rows[0])
    w = [0.0] * d
    for _ in range(iterations):
        gradient = [l2 * wi for wi in w]
        hessian = [[l2 if i == j else 0.0 for j in range(d)] for i in range(d)]
        for x, t in zip(rows, targets, strict=True):
            p = _sigmoid(math.fsum(wi * xi for wi, xi in zip(w, x, strict=True)))
            r = p * (1.0 - p)
            for i in range(d):
                if x[i]:
                    gradient[i] += (p - t) * x[i]
                    row = hessian[i]
                    for j in range(d):
                        row[j] += r * x[i] * x[j]
        step = _solve(hessian, gradient)
        w = [wi - si for wi, si in zip(w, step, strict=True)]
        if max(abs(s) for s in step) < 1e-9:
            break
    return w


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """x with matrix @ x = vector, by Gaussian elimination with partial pivoting."""
    n = len(vector)
    a = [[*row, b] for row, b in zip(matrix, vector, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(col + 1, n):
            factor = a[r][col] / a[col][col]
            for c in range(col, n + 1):
                a[r][c] -= factor * a[col][c]
    x = [0.0] * n
    for r in reversed(range(n)):
        x[r] = (a[r][n] - math.fsum(a[r][c] * x[c] for c in range(r + 1, n))) / a[r][r]
    return x
