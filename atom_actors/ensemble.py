"""Ensembles: one request fanned out to several members, their answers combined.

The members run concurrently, each a budgeted call; the combiner (`combiners.combine`, pure)
decides; the combination and every member's answer, weight and cost go on the record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from .budgeted import BudgetedCaller
from .calls import CallResult
from .combiners import TOOL_CALLS_KEY, EnsembleResult, MemberAnswer, answer_key, combine
from .events import EnsembleCombined
from .request import GatewayError, RequestContext, TokenSink
from .scoring import record_agreement
from .snapshot import EnsembleMethod, RouteDecision

DEADLINE_MARGIN_S: Final = 0.05
"""An ensemble stops waiting for its members this long before the request's deadline."""


class MissedDeadline(Exception):
    """An ensemble member that had not answered when the deadline came."""


@dataclass(frozen=True, slots=True)
class EnsembleAnswer:
    """What an ensemble found: the member answer that speaks for it, and every member's."""

    method: EnsembleMethod
    chosen: CallResult
    combined: dict[str, Any]
    members: tuple[dict[str, Any], ...]


async def answer_ensemble(
    calls: BudgetedCaller,
    ctx: RequestContext,
    decision: RouteDecision,
    quality_of: Callable[[str], float],
    on_token: TokenSink | None,
) -> EnsembleAnswer:
    """Ask every member of the decision's plan, combine their answers, and record it."""
    plan = decision.ensemble
    assert plan is not None
    base_seed = ctx.req.params.seed if ctx.req.params.seed is not None else 0
    labels = [f"{m}#{i + 1}" for i, m in enumerate(plan.members)]

    async def member(i: int, model: str) -> CallResult:
        params = ctx.req.params
        if plan.members.count(model) > 1:
            # Samples of one model differ by their seed: self-consistency.
            params = replace(params, seed=base_seed + i)
        return await calls.call(ctx, model, on_token=on_token, params=params, member=labels[i])

    tasks = [asyncio.ensure_future(member(i, m)) for i, m in enumerate(plan.members)]
    # Members still running near the deadline are left out, so the others' answer stands.
    wait_s = None
    if ctx.req.deadline_ms is not None:
        elapsed_s = time.perf_counter() - ctx.started
        wait_s = max(0.0, ctx.req.deadline_ms / 1000 - elapsed_s - DEADLINE_MARGIN_S)
    try:
        _, late = await asyncio.wait(tasks, timeout=wait_s)
    except asyncio.CancelledError:
        # The client went away (or the deadline passed): no member outlives its request.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    outcomes: list[CallResult | BaseException] = [
        MissedDeadline(f"no answer within deadline_ms {ctx.req.deadline_ms:g}")
        if task in late
        else (task.exception() or task.result())
        for task in tasks
    ]
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
    combined = combine(plan.method, answers, ctx.req.answer_format)
    members = tuple(_member_row(a, combined, results) for a in answers)
    ctx.record(
        EnsembleCombined(
            request_id=ctx.request_id,
            method=plan.method.value,
            result=combined.to_dict(),
            members=list(members),
        )
    )
    if combined.chosen is None or combined.answer is None:
        tried = [f"{a.member}: {a.error}" for a in answers]
        raise GatewayError(502, "upstream_failed", "no ensemble member answered", tried=tried)
    fmt = ctx.req.answer_format
    for answer in answers:
        result = results.get(answer.member)
        if result is None:
            continue
        if combined.normalized is not None and combined.normalized.startswith(TOOL_CALLS_KEY):
            # Calls agree or not: the same functions with equal arguments, or anything else.
            agreed = answer_key(answer, fmt) == combined.normalized
            record_agreement(ctx, result, combined.answer, score=1.0 if agreed else 0.0)
        else:
            record_agreement(ctx, result, combined.answer)
    return EnsembleAnswer(plan.method, results[combined.chosen], combined.to_dict(), members)


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
        "cost_pico": result.cost_pico if result is not None else 0,
    }
