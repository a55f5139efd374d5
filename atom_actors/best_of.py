"""best_of_n's scorer: the judge model when one is configured, else the learned reward.

The judge grades every voter's reply before the answer goes: its calls are the request's own
(reserved in its scopes, on its record, within its deadline), and each grade is recorded
(ScoreRecorded, or ScoreFailed). A scorer chooses only when it can score every voter: when the
judge cannot (a call failed, the budget refused one, the deadline came), the reward chooses, the
learned acceptance model's probability that each reply is right (`acceptance.py`, fitted on the
log's scored calls). With neither, the combiner's own confidence does. Which scorer chose, its
scores and why go in EnsembleCombined and the response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .acceptance import AcceptanceModel
from .acceptance_learner import AcceptanceLearner
from .budgeted import BudgetedCaller
from .calls import CallResult
from .cascade import Attempt, view_of
from .combiners import MemberAnswer
from .cost import prompt_size
from .providers import CallParams
from .request import RequestContext, in_time, question_of
from .scorers import JudgeScorer
from .scoring import JUDGE_MAX_TOKENS, judge_prompt, record_judged, record_unjudged


@dataclass(frozen=True, slots=True)
class Scores:
    """Who scored best_of_n's voters ("judge", "reward" or "confidence"), their scores, and why
    that scorer; `scores` is empty for confidence, which the combiner computes itself."""

    scorer: str
    scores: Mapping[str, float]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"scorer": self.scorer, "scores": dict(self.scores), "reason": self.reason}


def rewards(
    model: AcceptanceModel, question: str, ctx: RequestContext, voters: Sequence[MemberAnswer]
) -> dict[str, float]:
    """Each reply's probability of being right, by the acceptance model (pure)."""
    fmt = ctx.req.answer_format
    return {
        v.member: model.probability(
            view_of(
                question,
                fmt,
                0,
                [Attempt(step=0, model=v.model, text=v.text, mean_logprob=v.mean_logprob)],
            )
        )
        for v in voters
    }


class BestOfScorer:
    """Scores best_of_n's voters with the judge, else the reward, else leaves it to confidence."""

    def __init__(
        self, calls: BudgetedCaller, judge_model: str | None, acceptance: AcceptanceLearner
    ) -> None:
        self._calls = calls
        self.judge_model = judge_model
        self._acceptance = acceptance

    async def score(
        self, ctx: RequestContext, voters: Sequence[tuple[MemberAnswer, CallResult]]
    ) -> Scores:
        """Every voter's score by the first scorer that can give them all."""
        why = "no judge model is configured"
        if self.judge_model is not None:
            graded, failed = await self._judge(ctx, voters, self.judge_model)
            if not failed:
                return Scores("judge", graded, f"graded by {self.judge_model}")
            why = f"the judge could not grade every reply ({'; '.join(failed)})"
        reward_model = await self._acceptance.current()
        if reward_model is None:
            return Scores("confidence", {}, f"{why}, and no answer is scored yet to learn from")
        members = [member for member, _ in voters]
        found = rewards(reward_model, question_of(ctx.req.messages), ctx, members)
        return Scores("reward", found, f"{why}: the learned acceptance score")

    async def _judge(
        self, ctx: RequestContext, voters: Sequence[tuple[MemberAnswer, CallResult]], judge: str
    ) -> tuple[dict[str, float], list[str]]:
        """The judge's grade of each voter's reply, and why it has none for the others."""
        scorer = JudgeScorer()

        async def grade(member: MemberAnswer, result: CallResult) -> tuple[float, str]:
            prompt = judge_prompt(ctx, result)
            reply = await self._calls.call(
                ctx,
                judge,
                params=CallParams(max_tokens=JUDGE_MAX_TOKENS, temperature=0.0),
                member=f"judge:{member.member}",
                messages=prompt,
                prompt=prompt_size(prompt),
            )
            return scorer.parse(reply.text), reply.text

        outcomes = await in_time(ctx, [grade(member, result) for member, result in voters])
        graded: dict[str, float] = {}
        failed: list[str] = []
        for (member, result), outcome in zip(voters, outcomes, strict=True):
            if isinstance(outcome, tuple):
                graded[member.member] = outcome[0]
                record_judged(ctx, result, outcome[0], outcome[1])
                continue
            if not isinstance(outcome, Exception):
                raise outcome
            record_unjudged(ctx, result, str(outcome))
            failed.append(f"{member.member}: {outcome}")
        return graded, failed
