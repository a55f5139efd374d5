"""One model call paid for: reserved, and on the record, before it starts; settled after it.

The reservation is the most the call can cost (`cost.call_reservation`: the prompt's bound and
the max_tokens sent upstream); the settlement is what it did cost, by the rule that applies
(`cost.settle`): the provider's usage, or, for a call broken off after its first tokens (the
client gone, the deadline, the upstream), the prompt's bound and the tokens streamed so far.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from eventstore import GuardRefused

from .budget import BudgetBook, BudgetExceeded, Reservation
from .calls import CallFailed, CallResult, ModelCaller
from .catalog import ModelSpec
from .cost import PromptSize, Settlement, call_reservation, output_bound, prompt_bound, settle
from .parameters import asked, refused, without
from .providers import CallParams, Delta, ToolCallDelta
from .request import Attempt, Publish, RequestContext, TokenSink


class BudgetedCaller:
    """Makes the calls of requests, each reserved before it starts and settled after it."""

    def __init__(
        self,
        caller: ModelCaller,
        book: BudgetBook,
        specs: Mapping[str, ModelSpec],
        *,
        publish: Publish | None = None,
        listening: Callable[[str], bool] | None = None,
    ) -> None:
        self._caller = caller
        self.book = book
        self._specs = specs
        self._publish = publish
        # Whether anyone listens to a topic: a request's tokens are not even packed otherwise.
        self._listening = listening

    def provider(self, model: str) -> str:
        """The provider `model` is called through (its name in parameters.REFUSED)."""
        return self._specs[model].provider

    def reservation(self, model: str, prompt: PromptSize, max_tokens: int | None) -> int:
        """What a call to `model` with this prompt must reserve, in pico-dollars."""
        return call_reservation(self._specs[model], prompt, max_tokens)

    async def call(
        self,
        ctx: RequestContext,
        model: str,
        *,
        attempt: int = 1,
        on_token: TokenSink | None = None,
        params: CallParams | None = None,
        member: str | None = None,
        messages: Sequence[dict[str, Any]] | None = None,
        prompt: PromptSize | None = None,
    ) -> CallResult:
        """Call `model` for the request, in its scopes; raises BudgetExceeded before any call
        that does not fit, CallFailed (settled) for a call that got no answer."""
        spec = self._specs[model]
        params = params or ctx.req.params
        if ctx.req.drop_params:
            dropped = refused(spec.provider, asked(params))
            if dropped:
                params = without(params, dropped)
                ctx.dropped[model] = dropped
        prompt = prompt or ctx.prompt
        # ATOM always sends max_tokens: the answer's cost is then bounded by what it reserves.
        max_tokens = output_bound(spec, params.max_tokens)
        bound = prompt_bound(spec, prompt)
        amount = call_reservation(spec, prompt, max_tokens)
        reservation, reserved = self.book.reserve(ctx.request_id, ctx.scopes, amount, model)
        reserved_event = reserved.new(**ctx.metadata)
        ctx.log.add(reserved_event)
        streamed = 0
        topic = f"tokens:{ctx.request_id}"
        label = member or model
        publish, listening = self._publish, self._listening

        def on_delta(delta: Delta, _ms: float) -> None:
            nonlocal streamed
            streamed += delta.token_bound
            elapsed = (time.perf_counter() - ctx.started) * 1000
            if on_token is not None:
                on_token(label, delta.text, elapsed)
                ctx.delivered = member is None
            if publish is not None and (listening is None or listening(topic)):
                payload = {"member": label, "text": delta.text, "ms": round(elapsed, 3)}
                publish(topic, payload, ctx.tenancy)

        def on_tool_piece(piece: ToolCallDelta, _ms: float) -> None:
            nonlocal streamed
            streamed += piece.token_bound
            elapsed = (time.perf_counter() - ctx.started) * 1000
            if ctx.on_tool_call is not None:
                ctx.on_tool_call(label, piece, elapsed)
                ctx.delivered = member is None
            if publish is not None and (listening is None or listening(topic)):
                payload = {
                    "member": label,
                    "text": "",
                    "tool_call": piece.to_openai(),
                    "ms": round(elapsed, 3),
                }
                publish(topic, payload, ctx.tenancy)

        def broken_off() -> Settlement:
            return settle(
                spec,
                completed=False,
                reported=None,
                prompt_tokens_bound=bound,
                streamed_tokens=streamed,
                max_tokens=max_tokens,
            )

        try:
            result = await self._caller.call(
                model,
                ctx.req.messages if messages is None else messages,
                replace(params, max_tokens=max_tokens),
                request_id=ctx.request_id,
                attempt=attempt,
                on_delta=on_delta,
                # The call's events are its own actor's, on behalf of the request's caller.
                metadata={k: v for k, v in ctx.metadata.items() if k != "actor"},
                # The caller commits the request's log, this reservation with it, before it
                # calls upstream: the money is on the record before it can be spent. In a
                # limited scope, under the reservation's guard: other nodes cannot race it.
                log=ctx.log,
                on_tool_call=on_tool_piece if params.tools else None,
                guard=reservation.guard,
            )
        except GuardRefused:
            # Others' spending took the room since this process last read the budgets.
            ctx.log.withdraw(reserved_event)
            self.book.withdraw(reservation)
            assert reservation.budget_guard is not None and reservation.budget_guard.refused
            scope, room = reservation.budget_guard.refused
            raise BudgetExceeded(scope, amount, room) from None
        except CallFailed as exc:
            ctx.attempts.append(Attempt(model, attempt, exc.kind, exc.message))
            self._settle(ctx, reservation, broken_off())
            raise
        except asyncio.CancelledError:
            self._settle(ctx, reservation, broken_off())
            raise
        ctx.attempts.append(Attempt(model, attempt, "ok"))
        self._settle(ctx, reservation, result.settlement)
        return result

    def _settle(self, ctx: RequestContext, reservation: Reservation, cost: Settlement) -> None:
        ctx.spend.add(cost)
        settled = self.book.settle(reservation, cost)
        ctx.log.add(
            settled.new(**ctx.metadata),
            on_committed=lambda position: self.book.settled_at(reservation, position),
        )
