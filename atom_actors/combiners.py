"""Ensemble combiners: the members' replies in, one answer with its agreement and confidence out.

Replies are compared by their canonical answers (see answers.AnswerFormat); a reply that calls
tools is compared by its calls instead: the same functions with equal canonical arguments, in
any order, are one answer, and any other reply a different one. A member that failed, missed
the deadline or gave no answer of the expected kind is left out with a reason. Ties are
settled by content, never by position, so the result is the same in any member order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from atom_actors.answers import FREE_TEXT, AnswerFormat, AnswerKind
from atom_actors.snapshot import EnsembleMethod

TOOL_CALLS_KEY: Final = "tool_calls:"
"""How the canonical answer of a reply that calls tools begins (no extracted answer can)."""


@dataclass(frozen=True, slots=True)
class MemberAnswer:
    """One member's reply; `error` is set when it failed or missed the deadline."""

    member: str
    model: str
    text: str
    quality: float
    mean_logprob: float | None = None
    error: str | None = None
    # The tools it calls, as (name, arguments in canonical JSON) pairs.
    tool_calls: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.quality <= 1.0:
            raise ValueError(f"quality must be in [0, 1], got {self.quality}")
        if self.mean_logprob is not None and not math.isfinite(self.mean_logprob):
            raise ValueError(f"mean_logprob must be finite, got {self.mean_logprob}")


@dataclass(frozen=True, slots=True)
class LeftOut:
    member: str
    reason: str


@dataclass(frozen=True, slots=True)
class EnsembleResult:
    """The combined answer: the text of the member that speaks for it, and how sure it is.

    `answer`, `normalized` and `chosen` are None when no member voted. `mean` is the
    quality-weighted mean of numeric answers, given by weighted_average only.
    """

    method: EnsembleMethod
    answer: str | None
    normalized: str | None
    chosen: str | None
    weights: Mapping[str, float]
    agreement: float
    confidence: float
    voters: int
    left_out: tuple[LeftOut, ...]
    mean: float | None = None
    # What each voter's weight stands for: "vote" (one each), "quality", "logprobs" (the
    # reply's exp(mean token logprob)), "agreement" (with the other replies) or "score".
    bases: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON values, for the EnsembleCombined event."""
        return {
            "method": self.method.value,
            "answer": self.answer,
            "normalized": self.normalized,
            "chosen": self.chosen,
            "weights": dict(self.weights),
            "agreement": self.agreement,
            "confidence": self.confidence,
            "voters": self.voters,
            "left_out": [{"member": o.member, "reason": o.reason} for o in self.left_out],
            "mean": self.mean,
            "weight_bases": dict(self.bases),
        }


Score = Callable[[MemberAnswer], float]


@dataclass(frozen=True, slots=True)
class _Vote:
    reply: MemberAnswer
    key: str

    @property
    def member(self) -> str:
        return self.reply.member


def _ballot(
    answers: Sequence[MemberAnswer], fmt: AnswerFormat
) -> tuple[list[_Vote], tuple[LeftOut, ...]]:
    if len({a.member for a in answers}) != len(answers):
        raise ValueError("member ids must be unique")
    votes: list[_Vote] = []
    left_out: list[LeftOut] = []
    for reply in answers:
        if reply.error is not None:
            left_out.append(LeftOut(reply.member, f"failed: {reply.error}"))
            continue
        key = answer_key(reply, fmt)
        if key is None:
            left_out.append(LeftOut(reply.member, fmt.describe_missing()))
        else:
            votes.append(_Vote(reply, key))
    return votes, tuple(sorted(left_out, key=lambda o: o.member))


def answer_key(reply: MemberAnswer, fmt: AnswerFormat) -> str | None:
    """A reply's canonical answer: its tool calls in canonical order when it makes any, else
    what `fmt` extracts from its text."""
    if reply.tool_calls:
        return TOOL_CALLS_KEY + orjson.dumps(sorted(reply.tool_calls)).decode()
    return fmt.extract(reply.text)


def similarity(fmt: AnswerFormat, a: str, b: str) -> float:
    """How alike two canonical answers are: tool calls are equal or not, text as `fmt` says."""
    if a.startswith(TOOL_CALLS_KEY) or b.startswith(TOOL_CALLS_KEY):
        return 1.0 if a == b else 0.0
    return fmt.similarity(a, b)


def _best(votes: Sequence[_Vote], weights: Mapping[str, float]) -> _Vote:
    return min(votes, key=lambda v: (-weights[v.member], -v.reply.quality, v.member))


def _empty(method: EnsembleMethod, left_out: tuple[LeftOut, ...]) -> EnsembleResult:
    return EnsembleResult(method, None, None, None, {}, 0.0, 0.0, 0, left_out)


def _result(
    method: EnsembleMethod,
    votes: Sequence[_Vote],
    left_out: tuple[LeftOut, ...],
    weights: Mapping[str, float],
    outcome: tuple[_Vote, float, float],
    bases: Mapping[str, str],
    mean: float | None = None,
) -> EnsembleResult:
    chosen, agreement, confidence = outcome
    return EnsembleResult(
        method=method,
        answer=chosen.reply.text,
        normalized=chosen.key,
        chosen=chosen.member,
        weights=weights,
        agreement=agreement,
        confidence=confidence,
        voters=len(votes),
        left_out=left_out,
        mean=mean,
        bases=bases,
    )


def _vote(votes: Sequence[_Vote], weights: Mapping[str, float]) -> tuple[_Vote, float, float]:
    """The answer with the most weight behind it; then the most voters, quality, the answer."""
    groups: dict[str, list[_Vote]] = {}
    for vote in votes:
        groups.setdefault(vote.key, []).append(vote)
    # fsum is exact, so a sum does not depend on the order of its terms.
    support = {key: math.fsum(weights[v.member] for v in group) for key, group in groups.items()}
    winner = min(
        groups,
        key=lambda key: (
            -support[key],
            -len(groups[key]),
            -math.fsum(v.reply.quality for v in groups[key]),
            key,
        ),
    )
    total = math.fsum(weights.values())
    confidence = support[winner] / total if total > 0 else 0.0
    return _best(groups[winner], weights), len(groups[winner]) / len(votes), confidence


def _agreement(vote: _Vote, votes: Sequence[_Vote], fmt: AnswerFormat) -> float:
    """Mean similarity of this vote to every other; 1.0 when it is the only one."""
    others = [other for other in votes if other is not vote]
    if not others:
        return 1.0
    return math.fsum(similarity(fmt, vote.key, other.key) for other in others) / len(others)


def _confidence(vote: _Vote, votes: Sequence[_Vote], fmt: AnswerFormat) -> float:
    if vote.reply.mean_logprob is not None:
        return min(1.0, math.exp(vote.reply.mean_logprob))
    return _agreement(vote, votes, fmt)


def _confidence_bases(votes: Sequence[_Vote]) -> dict[str, str]:
    return {v.member: "agreement" if v.reply.mean_logprob is None else "logprobs" for v in votes}


def _same(votes: Sequence[_Vote], basis: str) -> dict[str, str]:
    return dict.fromkeys((v.member for v in votes), basis)


def majority_vote(answers: Sequence[MemberAnswer], fmt: AnswerFormat = FREE_TEXT) -> EnsembleResult:
    """The answer most members gave; agreement and confidence are its share of the votes."""
    method = EnsembleMethod.MAJORITY_VOTE
    votes, left_out = _ballot(answers, fmt)
    if not votes:
        return _empty(method, left_out)
    weights = {vote.member: 1.0 for vote in votes}
    return _result(method, votes, left_out, weights, _vote(votes, weights), _same(votes, "vote"))


def weighted_average(
    answers: Sequence[MemberAnswer], fmt: AnswerFormat = FREE_TEXT
) -> EnsembleResult:
    """Each vote weighs the member's learned quality; for numbers also the weighted mean.

    The answer stays the weighted vote's: the mean of 17 and 19 is not a right answer to a
    question whose answer is 17, but it is reported for tasks that estimate a quantity.
    """
    method = EnsembleMethod.WEIGHTED_AVERAGE
    votes, left_out = _ballot(answers, fmt)
    if not votes:
        return _empty(method, left_out)
    weights = {vote.member: vote.reply.quality for vote in votes}
    numbers = [v for v in votes if not v.key.startswith(TOOL_CALLS_KEY)]
    total = math.fsum(weights[v.member] for v in numbers)
    mean = None
    if fmt.kind is AnswerKind.NUMBER and total > 0:
        mean = math.fsum(weights[v.member] * float(v.key) for v in numbers) / total
    outcome = _vote(votes, weights)
    return _result(method, votes, left_out, weights, outcome, _same(votes, "quality"), mean)


def confidence_weighted(
    answers: Sequence[MemberAnswer], fmt: AnswerFormat = FREE_TEXT
) -> EnsembleResult:
    """Each vote weighs exp(mean token logprob) where given, else its agreement with the rest."""
    method = EnsembleMethod.CONFIDENCE_WEIGHTED
    votes, left_out = _ballot(answers, fmt)
    if not votes:
        return _empty(method, left_out)
    weights = {vote.member: _confidence(vote, votes, fmt) for vote in votes}
    bases = _confidence_bases(votes)
    return _result(method, votes, left_out, weights, _vote(votes, weights), bases)


def best_of_n(
    answers: Sequence[MemberAnswer], fmt: AnswerFormat = FREE_TEXT, score: Score | None = None
) -> EnsembleResult:
    """The one reply `score` rates highest, else the most confident one (as confidence_weighted).

    Its score is the confidence; agreement is the share of voters with the same answer.
    """
    method = EnsembleMethod.BEST_OF_N
    votes, left_out = _ballot(answers, fmt)
    if not votes:
        return _empty(method, left_out)
    weights = {
        vote.member: score(vote.reply) if score else _confidence(vote, votes, fmt) for vote in votes
    }
    if any(not 0.0 <= weight <= 1.0 for weight in weights.values()):
        raise ValueError("scores must be in [0, 1]")
    best = _best(votes, weights)
    same = sum(1 for vote in votes if vote.key == best.key) / len(votes)
    bases = _same(votes, "score") if score else _confidence_bases(votes)
    return _result(method, votes, left_out, weights, (best, same, weights[best.member]), bases)


def consensus(answers: Sequence[MemberAnswer], fmt: AnswerFormat = FREE_TEXT) -> EnsembleResult:
    """The answer closest to all the others: the highest mean similarity, which is its agreement.

    For free text this is the medoid under word Jaccard similarity; for exact kinds, the mode.
    """
    method = EnsembleMethod.CONSENSUS
    votes, left_out = _ballot(answers, fmt)
    if not votes:
        return _empty(method, left_out)
    weights = {vote.member: _agreement(vote, votes, fmt) for vote in votes}
    best = _best(votes, weights)
    closeness = weights[best.member]
    outcome = (best, closeness, closeness)
    return _result(method, votes, left_out, weights, outcome, _same(votes, "agreement"))


def combine(
    method: EnsembleMethod,
    answers: Sequence[MemberAnswer],
    fmt: AnswerFormat = FREE_TEXT,
    score: Score | None = None,
) -> EnsembleResult:
    """Combine with the named method; `score` is used by best_of_n only."""
    match method:
        case EnsembleMethod.MAJORITY_VOTE:
            return majority_vote(answers, fmt)
        case EnsembleMethod.WEIGHTED_AVERAGE:
            return weighted_average(answers, fmt)
        case EnsembleMethod.CONFIDENCE_WEIGHTED:
            return confidence_weighted(answers, fmt)
        case EnsembleMethod.BEST_OF_N:
            return best_of_n(answers, fmt, score)
        case EnsembleMethod.CONSENSUS:
            return consensus(answers, fmt)
