"""Ensembles: one request fanned out to several members, their answers combined.

The members run concurrently, each a budgeted call; the combiner (`combiners.combine`, pure)
decides; the combination and every member's answer, weight and cost go on the record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .best_of import BestOfScorer, Scores
from .budgeted import BudgetedCaller
from .calls import CallResult
from .combiners import TOOL_CALLS_KEY, EnsembleResult, MemberAnswer, Score, answer_key, combine
from .events import EnsembleCombined
from .parameters import refused
from .request import GatewayError, RequestContext, TokenSink, in_time
from .scoring import record_agreement
from .snapshot import EnsembleMethod, RouteDecision


@dataclass(frozen=True, slots=True)
class EnsembleAnswer:
    """What an ensemble found: the member answer that speaks for it, and every member's."""

    method: EnsembleMethod
    chosen: CallResult
    combined: dict[str, Any]
    members: tuple[dict[str, Any], ...]
    judged: bool = False
    """The judge graded the answers already (best_of_n): it need not grade the chosen again."""


async def answer_ensemble(
    calls: BudgetedCaller,
    ctx: RequestContext,
    decision: RouteDecision,
    quality_of: Callable[[str], float],
    on_token: TokenSink | None,
    best_of: BestOfScorer | None = None,
) -> EnsembleAnswer:
    """Ask every member of the decision's plan, combine their answers, and record it;
    best_of_n's voters are scored by `best_of`."""
    plan = decision.ensemble
    assert plan is not None
    base_seed = ctx.req.params.seed if ctx.req.params.seed is not None else 0
    labels = [f"{m}#{i + 1}" for i, m in enumerate(plan.members)]

    asked_logprobs = ctx.req.params.logprobs

    async def member(i: int, model: str) -> CallResult:
        params = ctx.req.params
        if plan.members.count(model) > 1:
            # Samples of one model differ by their seed: self-consistency.
            params = replace(params, seed=base_seed + i)
        weighs_confidence = plan.method is EnsembleMethod.CONFIDENCE_WEIGHTED
        if weighs_confidence and not refused(calls.provider(model), ["logprobs"]):
            # Its weight is then its own confidence; a member whose provider gives no
            # logprobs is weighed by its agreement with the others (combiners.py).
            params = replace(params, logprobs=True)
        result = await calls.call(ctx, model, on_token=on_token, params=params, member=labels[i])
        # The tokens asked for the weight are not the client's answer unless it asked.
        return result if asked_logprobs else replace(result, logprobs=())

    # Members still running near the deadline are left out, so the others' answer stands.
    outcomes = await in_time(ctx, [member(i, m) for i, m in enumerate(plan.members)])
    answers = []
    results: dict[str, CallResult] = {}
    for label, model, outcome in zip(labels, plan.members, outcomes, strict=True):
        quality = quality_of(model)
        if isinstance(outcome, CallResult):
            results[label] = outcome
            made = tuple(call.canonical() for call in outcome.tool_calls)
            answers.append(
                MemberAnswer(
                    label, model, outcome.text, quality, outcome.mean_logprob, tool_calls=made
                )
            )
        elif isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome
        else:
            answers.append(MemberAnswer(label, model, "", quality, error=str(outcome)))
    fmt = ctx.req.answer_format
    scores = None
    if plan.method is EnsembleMethod.BEST_OF_N and best_of is not None:
        voters = [(a, results[a.member]) for a in answers if a.member in results]
        voters = [(a, r) for a, r in voters if answer_key(a, fmt) is not None]
        scores = await best_of.score(ctx, voters) if voters else None
    combined = combine(plan.method, answers, fmt, _score_of(scores))
    members = tuple(_member_row(a, combined, results) for a in answers)
    result = combined.to_dict()
    if scores is not None:
        result["scorer"] = scores.to_dict()
    ctx.record(
        EnsembleCombined(
            request_id=ctx.request_id,
            method=plan.method.value,
            result=result,
            members=list(members),
            scorer=None if scores is None else scores.to_dict(),
        )
    )
    if combined.chosen is None or combined.answer is None:
        tried = [f"{a.member}: {a.error}" for a in answers]
        raise GatewayError(502, "upstream_failed", "no ensemble member answered", tried=tried)
    for answer in answers:
        call = results.get(answer.member)
        if call is None:
            continue
        if combined.normalized is not None and combined.normalized.startswith(TOOL_CALLS_KEY):
            # Calls agree or not: the same functions with equal arguments, or anything else.
            agreed = answer_key(answer, fmt) == combined.normalized
            record_agreement(ctx, call, combined.answer, score=1.0 if agreed else 0.0)
        else:
            record_agreement(ctx, call, combined.answer)
    judged = scores is not None and scores.scorer == "judge"
    return EnsembleAnswer(plan.method, results[combined.chosen], result, members, judged)


def _score_of(scores: Scores | None) -> Score | None:
    """The combiner's view of a scorer's scores; None leaves best_of_n to confidence."""
    if scores is None or not scores.scores:
        return None
    by_member = scores.scores
    return lambda answer: by_member[answer.member]


def _member_row(
    answer: MemberAnswer, combined: EnsembleResult, results: dict[str, CallResult]
) -> dict[str, Any]:
    result = results.get(answer.member)
    return {
        "member": answer.member,
        "model": answer.model,
        "text": answer.text,
        "error": answer.error,
        "tool_calls": [call.to_openai() for call in result.tool_calls] if result else [],
        "weight": combined.weights.get(answer.member),
        "weight_basis": combined.bases.get(answer.member),
        "cost_pico": result.cost_pico if result is not None else 0,
    }
