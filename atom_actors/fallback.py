"""The retry and fallback loop: a failed call is retried, then the next candidate answers.

`after_failure` is the policy, a pure function of a failure and its attempt; `answer_single`
runs it, one budgeted call at a time, each on the record.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from dataclasses import dataclass
from typing import Final

from .budget import BudgetExceeded
from .budgeted import BudgetedCaller
from .calls import CallFailed, CallResult
from .events import BudgetRejected
from .request import GatewayError, RequestContext, TokenSink
from .snapshot import RouteDecision

RETRIES: Final = 2
"""Retries of a retryable failure (429, 5xx, timeouts) on one model before falling back."""
BACKOFF_S: Final = 0.2
MAX_BACKOFF_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Retry:
    """Call the same model again after `delay_s`."""

    delay_s: float


class Stop(enum.Enum):
    NEXT_MODEL = "next model"
    """This model will not answer: the next candidate may."""
    CANCELLED = "cancelled"
    """The request itself went away: nothing more is called."""
    BROKEN_STREAM = "broken stream"
    """Tokens of this answer reached the client already: another answer cannot follow them."""


def after_failure(failure: CallFailed, attempt: int, delivered: bool) -> Retry | Stop:
    """What follows a failed call: a retry with backoff (or the upstream's Retry-After), the
    next model, or the end of the request."""
    if failure.kind == "cancelled":
        return Stop.CANCELLED
    if delivered:
        return Stop.BROKEN_STREAM
    if not failure.retryable or attempt > RETRIES:
        return Stop.NEXT_MODEL
    return Retry(min(failure.retry_after or BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S))


async def answer_single(
    calls: BudgetedCaller,
    ctx: RequestContext,
    decision: RouteDecision,
    on_token: TokenSink | None,
) -> CallResult:
    """The first answer of the decision's candidates, each retried as the policy says."""
    last: CallFailed | None = None
    budget_error: BudgetExceeded | None = None
    for candidate in decision.candidates:
        for attempt in itertools.count(1):
            try:
                return await calls.call(ctx, candidate.model, attempt=attempt, on_token=on_token)
            except BudgetExceeded as exc:
                budget_error = exc
                break
            except CallFailed as exc:
                last = exc
                step = after_failure(exc, attempt, ctx.delivered)
            if isinstance(step, Retry):
                await asyncio.sleep(step.delay_s)
                continue
            if step is Stop.CANCELLED:
                raise last
            if step is Stop.BROKEN_STREAM:
                raise GatewayError(
                    502,
                    "upstream_failed",
                    f"{last.model} broke off after its first tokens were streamed "
                    f"({last.kind}: {last.message}); a streamed answer is not retried",
                    tried=ctx.tried(),
                ) from last
            break
    tried = ctx.tried()
    if last is None and budget_error is not None:
        ctx.record(
            BudgetRejected(
                request_id=ctx.request_id,
                scope=budget_error.scope,
                amount_pico=budget_error.amount_pico,
                headroom_pico=budget_error.headroom_pico,
            )
        )
        raise GatewayError(402, "budget_exceeded", str(budget_error), tried=tried)
    status = 504 if last is not None and last.kind == "timeout" else 502
    raise GatewayError(
        status, "upstream_failed", f"every model failed: {'; '.join(tried)}", tried=tried
    )
