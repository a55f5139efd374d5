"""The cascade online: the cheapest rung first, a stronger one only when its answer is not kept.

`cascade.decide`, the pure step that `atom replay evaluate` runs over recorded answers, says what
to do next; this module does it. A rung is started only when the request's deadline leaves time
for its expected latency and its reservations fit the budget; otherwise the climb stops with the
best answer so far (504 or 402 when there is none). Its calls run together, each a budgeted call
(reserved before it starts, settled after it) retried as the fallback policy says, and stop
waiting near the deadline. Every move is on the record: a CascadeStepped event per step `decide`
takes, with the checks' verdicts and the replies they judged, and one for a stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .budget import BudgetExceeded
from .budgeted import BudgetedCaller
from .calls import CallFailed, CallResult
from .cascade import Acceptance, AcceptanceScorer, Action, Attempt, Step, decide, view_of
from .events import BudgetRejected, CascadeStepped
from .fallback import Retry, after_failure
from .request import (
    GatewayError,
    MissedDeadline,
    RequestContext,
    TokenSink,
    in_time,
    question_of,
)
from .scoring import record_reference
from .snapshot import CascadeRung, RouteDecision


@dataclass(frozen=True, slots=True)
class CascadeAnswer:
    """Where a cascade ended: the call whose reply answers, every move, the rungs climbed."""

    chosen: CallResult
    steps: tuple[dict[str, Any], ...]
    escalations: int
    strongest: str
    """The ladder's top model, against which the cascade's savings are counted."""


@dataclass(frozen=True, slots=True)
class _Reply:
    """A call a rung made: its reply to the checks, its result or why it has none."""

    attempt: Attempt
    label: str
    result: CallResult | None
    error: BaseException | None


class _Climb:
    """One request's cascade: its replies so far and the moves on its record."""

    def __init__(self, ctx: RequestContext, decision: RouteDecision) -> None:
        assert decision.cascade is not None
        self.ctx = ctx
        self.rungs = decision.cascade.rungs
        self.ladder = [rung.models for rung in self.rungs]
        self.latency = {c.model: c.expected_latency_ms for c in decision.candidates}
        self.prompt = question_of(ctx.req.messages)
        self.replies: list[_Reply] = []
        self.steps: list[dict[str, Any]] = []
        self.called = 0

    @property
    def attempts(self) -> list[Attempt]:
        return [reply.attempt for reply in self.replies]

    def record(self, **move: Any) -> None:
        """Put a move on the record, and keep it for the answer."""
        self.ctx.record(CascadeStepped(request_id=self.ctx.request_id, **move))
        self.steps.append(move)

    def record_step(self, step: Step, judged: Sequence[_Reply], cost_pico: int) -> None:
        fmt = self.ctx.req.answer_format
        self.record(
            **step.to_dict(),
            replies=[
                {
                    "member": r.label,
                    "model": r.attempt.model,
                    "call_id": None if r.result is None else r.result.call_id,
                    "answer": None if r.error is not None else fmt.extract(r.attempt.text),
                    "error": r.attempt.error,
                }
                for r in judged
            ],
            cost_pico=cost_pico,
        )

    def best_so_far(self) -> _Reply | None:
        """The reply speaking for the highest rung that gave an answer."""
        attempts = self.attempts
        for step in sorted({a.step for a in attempts}, reverse=True):
            speaker = view_of(self.prompt, self.ctx.req.answer_format, step, attempts).speaker
            if speaker is not None:
                return self.reply_of(speaker)
        return None

    def reply_of(self, attempt: Attempt) -> _Reply:
        return next(reply for reply in self.replies if reply.attempt is attempt)

    def stop(self, step: Step, why: str, best: _Reply | None) -> None:
        """Record the end of the climb short of an accepted answer, and what stands instead."""
        fmt = self.ctx.req.answer_format
        self.record(
            action="stop",
            step=step.step,
            models=list(step.models or self.ladder[step.step]),
            answer=None if best is None else fmt.extract(best.attempt.text),
            speaker=None if best is None else best.attempt.model,
            verdicts=[],
            reason=why + (f"; {best.attempt.model}'s answer stands" if best else ""),
            replies=[],
            cost_pico=0,
        )


async def answer_cascade(
    calls: BudgetedCaller,
    ctx: RequestContext,
    decision: RouteDecision,
    acceptance: AcceptanceScorer | None,
    on_token: TokenSink | None,
) -> CascadeAnswer:
    """Climb the decision's ladder as `decide` says, one budgeted step at a time (route() gives
    a decision with candidates a ladder of one rung at least)."""
    climb = _Climb(ctx, decision)
    settings = ctx.req.acceptance or Acceptance()
    policy = settings.policy(ctx.req.answer_format, acceptance)
    judged: list[_Reply] = []
    spent = 0
    while True:
        step = decide(climb.ladder, policy, climb.prompt, climb.attempts)
        climb.record_step(step, judged, spent)
        if step.action is Action.ACCEPT:
            if step.speaker is not None:
                chosen = climb.reply_of(step.speaker)
                break
            # Nothing stronger is left and the top gave no answer: a lower rung's may stand.
            best = climb.best_so_far()
            climb.stop(step, "the top rung gave no answer", best)
            if best is None:
                raise _unanswered(ctx, climb)
            chosen = best
            break
        held = _held_back(calls, ctx, climb, climb.rungs[step.step])
        if held is not None:
            best = climb.best_so_far()
            climb.stop(step, f"rung {step.step + 1} not started: {held}", best)
            if best is None:
                raise _not_started(ctx, step.step, held)
            chosen = best
            break
        before = ctx.spend.cost_pico
        judged = await _ask(calls, ctx, step, on_token)
        spent = ctx.spend.cost_pico - before
        climb.replies += judged
        climb.called += 1
    assert chosen.result is not None, "a reply that speaks holds an answer"
    for reply in climb.replies:
        if reply.result is not None and reply is not chosen:
            # Every rung's reply is scored (the chosen one with the request's answer): the
            # acceptance score learns from the answers it turned down too.
            record_reference(ctx, reply.result)
    return CascadeAnswer(
        chosen=chosen.result,
        steps=tuple(climb.steps),
        escalations=max(0, climb.called - 1),
        strongest=climb.ladder[-1][0],
    )


class _Late(Exception):
    """A rung the deadline leaves no time for."""


def _held_back(
    calls: BudgetedCaller, ctx: RequestContext, climb: _Climb, rung: CascadeRung
) -> BudgetExceeded | _Late | None:
    """Why the rung may not start: the deadline leaves less than its expected latency, or its
    reservations do not fit the budget; None when it may."""
    req = ctx.req
    if req.deadline_ms is not None:
        left = req.deadline_ms - ctx.elapsed_ms()
        expected = max(climb.latency.get(model, 0.0) for model in rung.models)
        if expected > left:
            return _Late(
                f"deadline: expected {expected:.0f} ms, {max(left, 0.0):.0f} ms left"
                f" of deadline_ms {req.deadline_ms:g}"
            )
    amount = sum(calls.reservation(m, ctx.prompt, req.params.max_tokens) for m in rung.models)
    tight = calls.book.headroom(ctx.scopes)
    if tight is not None and amount > tight[1]:
        return BudgetExceeded(tight[0], amount, tight[1])
    return None


def _unanswered(ctx: RequestContext, climb: _Climb) -> GatewayError:
    """No rung answered: 504 when the deadline cut a call short, 402 when the budget refused
    one, else 502."""
    tried = ctx.tried()
    errors = [reply.error for reply in climb.replies]
    if any(isinstance(error, MissedDeadline) for error in errors):
        return GatewayError(504, "timeout", "no rung of the cascade answered in time", tried=tried)
    refused = [error for error in errors if isinstance(error, BudgetExceeded)]
    if refused:
        return _not_started(ctx, len(climb.ladder) - 1, refused[-1])
    return GatewayError(
        502, "upstream_failed", f"no rung of the cascade answered: {'; '.join(tried)}", tried=tried
    )


def _not_started(ctx: RequestContext, step: int, held: BudgetExceeded | _Late) -> GatewayError:
    """No answer, and rung `step` (0 first) may not start: 402 for the budget, 504 for time."""
    tried = ctx.tried()
    message = f"rung {step + 1} not started: {held}; no rung below it answered"
    if isinstance(held, BudgetExceeded):
        ctx.record(
            BudgetRejected(
                request_id=ctx.request_id,
                scope=held.scope,
                amount_pico=held.amount_pico,
                headroom_pico=held.headroom_pico,
            )
        )
        return GatewayError(402, "budget_exceeded", message, tried=tried)
    return GatewayError(504, "timeout", message, tried=tried)


async def _ask(
    calls: BudgetedCaller, ctx: RequestContext, step: Step, on_token: TokenSink | None
) -> list[_Reply]:
    """The rung's calls, made together; each one's reply or why it has none."""
    models = step.models
    base_seed = ctx.req.params.seed if ctx.req.params.seed is not None else 0
    labels = [
        f"rung{step.step + 1}:{m}" + (f"#{i + 1}" if models.count(m) > 1 else "")
        for i, m in enumerate(models)
    ]

    async def call(i: int, model: str) -> CallResult:
        params = ctx.req.params
        if models.count(model) > 1:
            # Samples of one model differ by their seed, as an ensemble's do.
            params = replace(params, seed=base_seed + i)
        attempt = 1
        while True:
            try:
                return await calls.call(
                    ctx, model, attempt=attempt, on_token=on_token, params=params, member=labels[i]
                )
            except CallFailed as exc:
                after = after_failure(exc, attempt, delivered=False)
                if not isinstance(after, Retry):
                    raise
            await asyncio.sleep(after.delay_s)
            attempt += 1

    outcomes = await in_time(ctx, [call(i, m) for i, m in enumerate(models)])
    replies = []
    for label, model, outcome in zip(labels, models, outcomes, strict=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, CallResult):
            attempt = Attempt(
                step=step.step, model=model, text=outcome.text, mean_logprob=outcome.mean_logprob
            )
            replies.append(_Reply(attempt, label, outcome, None))
        else:
            error = f"{type(outcome).__name__}: {outcome}"
            if isinstance(outcome, CallFailed):
                error = f"{outcome.kind}: {outcome.message}"
            attempt = Attempt(step=step.step, model=model, text="", error=error)
            replies.append(_Reply(attempt, label, None, outcome))
    return replies
