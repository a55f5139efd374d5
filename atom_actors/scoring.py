"""Scores on the record: the reference and agreement scores of an answer, and the judge.

Scorers decide (`scorers.py`, pure); this module records what they decide in the request's
stream, where the Performance projection learns each model's quality from it.
"""

from __future__ import annotations

import asyncio
import time

from eventstore import BufferedStream, EventStore, WrongExpectedVersion

from .budget import BudgetExceeded
from .budgeted import BudgetedCaller
from .calls import CallFailed, CallResult
from .cost import prompt_size
from .events import ScoreFailed, ScoreRecorded, request_stream
from .principal import Principal, tenancy_of
from .providers import CallParams
from .request import GatewayError, RequestContext, question_of
from .scorers import (
    AgreementScorer,
    FeedbackScorer,
    JudgeScorer,
    ReferenceScorer,
    ScoreInput,
    ScoreUnavailable,
)

JUDGE_MAX_TOKENS = 64
FEEDBACK_RETRIES = 5


def _call_score(
    ctx: RequestContext,
    result: CallResult,
    scorer: str,
    version: str,
    score: float,
    detail: str = "",
) -> ScoreRecorded:
    return ScoreRecorded(
        request_id=ctx.request_id,
        subject=result.call_id,
        subject_kind="call",
        model=result.model,
        capability=ctx.req.capability,
        scorer=scorer,
        scorer_version=version,
        score=score,
        detail=detail,
    )


def record_reference(ctx: RequestContext, result: CallResult) -> None:
    """Score the answer against the request's expected one, when it carries one."""
    if ctx.req.expected is None:
        return
    scorer = ReferenceScorer()
    subject = ScoreInput(result.text, fmt=ctx.req.answer_format, expected=ctx.req.expected)
    try:
        score = scorer.score(subject)
    except ScoreUnavailable:
        return
    ctx.record(_call_score(ctx, result, scorer.id, scorer.version, score))


def record_agreement(
    ctx: RequestContext, result: CallResult, consensus: str, score: float | None = None
) -> None:
    """Score an ensemble member's answer by its agreement with the combined one; `score` when
    it is known already (tool calls agree or not)."""
    scorer = AgreementScorer()
    if score is None:
        subject = ScoreInput(result.text, fmt=ctx.req.answer_format, consensus=consensus)
        score = scorer.score(subject)
    ctx.record(_call_score(ctx, result, scorer.id, scorer.version, round(score, 6)))


def record_judged(ctx: RequestContext, result: CallResult, score: float, reply: str) -> None:
    """Record the judge's grade of an answer, with the start of its reply."""
    ctx.record(_call_score(ctx, result, JudgeScorer.id, JudgeScorer.version, score, reply[:500]))


def record_unjudged(ctx: RequestContext, result: CallResult, reason: str) -> None:
    """Record that the judge could not grade an answer, and why."""
    ctx.record(
        ScoreFailed(
            request_id=ctx.request_id,
            subject=result.call_id,
            scorer=JudgeScorer.id,
            reason=reason,
        )
    )


def judge_prompt(ctx: RequestContext, result: CallResult) -> list[dict[str, str]]:
    """The messages that ask the judge to grade an answer to the request's question."""
    req = ctx.req
    subject = ScoreInput(result.text, question=question_of(req.messages), expected=req.expected)
    return JudgeScorer().prompt(subject)


class Judge:
    """A configured model that grades answers after they have gone, never delaying them.

    Its calls are paid like any other: reserved in the scopes of the request they grade.
    """

    def __init__(self, store: EventStore, calls: BudgetedCaller, model: str) -> None:
        self._store = store
        self._calls = calls
        self.model = model
        self._background: set[asyncio.Task[None]] = set()

    def grade_later(self, ctx: RequestContext, result: CallResult) -> None:
        """Grade an answer in the background; the judge never grades its own."""
        if result.model == self.model:
            return
        task = asyncio.create_task(self._grade(ctx, result))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _grade(self, ctx: RequestContext, result: CallResult) -> None:
        scorer = JudgeScorer()
        req = ctx.req
        prompt = judge_prompt(ctx, result)
        judge = RequestContext(
            request_id=ctx.request_id,
            req=req,
            principal=ctx.principal,
            prompt=prompt_size(prompt),
            log=BufferedStream(self._store, request_stream(ctx.request_id)),
            metadata={**ctx.metadata, "actor": "judge", "causation_id": result.call_id},
            started=time.perf_counter(),
        )
        try:
            reply = await self._calls.call(
                judge,
                self.model,
                params=CallParams(max_tokens=JUDGE_MAX_TOKENS, temperature=0.0),
                member="judge",
                messages=prompt,
            )
            score = scorer.parse(reply.text)
        except (CallFailed, BudgetExceeded, ScoreUnavailable) as exc:
            record_unjudged(judge, result, str(exc))
        else:
            record_judged(judge, result, score, reply.text)
        await judge.log.commit()

    async def drain(self) -> None:
        """Wait for the grades under way, at shutdown."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


async def feedback(
    store: EventStore, request_id: str, score: float, principal: Principal, comment: str = ""
) -> int:
    """Record a client's score of an answer; returns the score's log position.

    Only the request's own tenancy (or an operator) may score it. A key scores a request
    once: a later score replaces its earlier one in the projections, and both stay on the
    record (the new one says which value it replaces).
    """
    scorer = FeedbackScorer()
    stream = request_stream(request_id)
    for _ in range(FEEDBACK_RETRIES):
        events = await store.read_stream_async(stream)
        received = events[0].data if events and events[0].type == "RequestReceived" else None
        completed = [e for e in events if e.type == "RequestCompleted"]
        if (
            received is None
            or not completed
            or not principal.may_see(tenancy_of(received.get("api_key_id"), received.get("tenant")))
        ):
            # Another tenancy's request is answered as one that does not exist, and its id
            # is not echoed: an error names nothing of anyone else's.
            raise GatewayError(
                404,
                "unknown_request",
                "no answered request of yours has this id",
                field="request_id",
            )
        try:
            value = scorer.score(ScoreInput(completed[-1].data["text"], feedback=score))
        except ValueError as exc:
            raise GatewayError(400, "invalid_field", str(exc), field="score") from exc
        earlier = [
            e.data["score"]
            for e in events
            if e.type == "ScoreRecorded"
            and e.data.get("scorer") == scorer.id
            and e.data.get("by") == principal.key_id
        ]
        event = ScoreRecorded(
            request_id=request_id,
            subject=request_id,
            subject_kind="request",
            model=completed[-1].data["model"],
            capability=received.get("capability"),
            scorer=scorer.id,
            scorer_version=scorer.version,
            score=value,
            detail=comment[:500],
            by=principal.key_id,
            replaces=earlier[-1] if earlier else None,
        )
        metadata = {
            "correlation_id": request_id,
            "api_key_id": principal.key_id,
            "tenancy": principal.tenancy,
        }
        try:
            # Expecting the version read: a rival score in between would make both replace
            # the same earlier one.
            positions = await store.append_async(
                stream, [event.new(**metadata)], events[-1].stream_version
            )
        except WrongExpectedVersion:
            continue
        return positions[-1]
    raise GatewayError(
        503, "busy", f"request {request_id!r} kept changing while its score was recorded"
    )
