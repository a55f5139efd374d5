"""The gateway: one request from receipt to answer, every step on the record.

RequestReceived -> (CacheHit | RouteDecided -> [BudgetReserved -> ModelCall* -> BudgetSettled]
per attempt, or per ensemble member -> EnsembleCombined) -> ScoreRecorded* -> RequestCompleted
or RequestFailed. The answer goes back only after the events that account for it are committed.

Each step is a module of its own: `cache` answers again, `budgeted` pays for one call,
`fallback` retries and falls back, `ensemble` fans out and combines, `cascading` climbs a
cascade's ladder (CascadeStepped per move), `scoring` records scores and runs the judge;
`strategies` decides the route. This module tells the story that joins them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from eventstore import BufferedStream, EventStore, LiveProjections, StoreClosed, new_event_id

from .acceptance_learner import AcceptanceLearner
from .best_of import BestOfScorer
from .budget import RESERVATION_TTL_S, BudgetBook
from .budgeted import BudgetedCaller
from .cache import AnswerCache, request_params
from .calls import CallResult, call_prompt_size
from .cascading import CascadeAnswer, answer_cascade
from .catalog import ModelSpec, unavailable_reason
from .cost import cost_pico, to_usd
from .ensemble import EnsembleAnswer, answer_ensemble
from .events import (
    BudgetRejected,
    DomainEvent,
    RequestCompleted,
    RequestFailed,
    RequestReceived,
    RouteDecided,
    request_stream,
)
from .fallback import answer_single
from .parameters import asked, field, refused, why
from .principal import Principal
from .projections import percentile
from .providers import ToolCall, tool_call_deltas
from .quality import Evidence, learned_quality
from .request import (
    GatewayError,
    ProcessRequest,
    ProcessResult,
    Publish,
    RequestContext,
    TokenSink,
    ToolCallEvents,
)
from .scoring import Judge, feedback, record_reference
from .snapshot import (
    CascadeSpec,
    EnsembleSpec,
    Health,
    ModelFigures,
    RouteDecision,
    RouteRequest,
    RouteSnapshot,
    Strategy,
)
from .strategies import route
from .system import ActorSystem

CATCH_UP_S: Final = 2.0
"""How long a request refused for want of budget waits to read the log up to its head."""


class Gateway:
    """Answers requests through the actor system, with routing, budgets, cache and scores."""

    def __init__(
        self,
        store: EventStore,
        actors: ActorSystem,
        projections: LiveProjections,
        *,
        publish: Publish | None = None,
        listening: Callable[[str], bool] | None = None,
        env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        judge_model: str | None = None,
        reservation_ttl_s: float = RESERVATION_TTL_S,
    ) -> None:
        self.store = store
        self.actors = actors
        self.projections = projections
        self.budget = BudgetBook(
            lambda: projections.state("budgets"),
            lambda: projections.position,
            clock,
            reservation_ttl_s=reservation_ttl_s,
        )
        self.calls = BudgetedCaller(
            actors.caller, self.budget, actors.specs, publish=publish, listening=listening
        )
        self.cache = AnswerCache(projections, clock)
        self.judge = None if judge_model is None else Judge(store, self.calls, judge_model)
        # The cascade's learned acceptance score, fitted on the log's scored calls; best_of_n's
        # reward when no judge scores its replies.
        self.acceptance = AcceptanceLearner(store, lambda: projections.state("scored_calls"))
        self.best_of = BestOfScorer(self.calls, judge_model, self.acceptance)
        self.publish = publish
        self._env = env
        self._round_robin = 0
        self._in_flight = 0
        # (projection position, health, figures) as the performance projection last said.
        self._observed_at: tuple[int, Mapping[str, Health], Mapping[str, ModelFigures]] | None = (
            None
        )

    def _alone(self) -> bool:
        """Whether one request is all this gateway has in flight (its log may commit inline)."""
        return self._in_flight == 1

    @property
    def catalog(self) -> tuple[ModelSpec, ...]:
        return tuple(self.actors.specs.values())

    # What routing sees.

    def unavailable(self) -> dict[str, str]:
        """Models that cannot be called now, and why."""
        running = self.actors.directory.models()
        reasons = {}
        for spec in self.catalog:
            reason = unavailable_reason(spec, self._env)
            state = running.get(spec.name, "not started")
            if reason is None and state != "running":
                reason = state
            if reason is not None:
                reasons[spec.name] = reason
        return reasons

    def figures(self) -> Mapping[str, ModelFigures]:
        """What the performance projection has observed of each model."""
        return self._observed()[1]

    def _observed(self) -> tuple[Mapping[str, Health], Mapping[str, ModelFigures]]:
        """Each model's health and figures, read again only once the projections have moved:
        every routed request asks for them."""
        position = self.projections.position
        if self._observed_at is None or self._observed_at[0] != position:
            health, figures = {}, {}
            for name, row in self.projections.state("performance")["models"].items():
                if row["health"] in Health.__members__.values():
                    health[name] = Health(row["health"])
                quality = {cap: Evidence(t, int(n)) for cap, (t, n) in row["quality"].items()}
                tps = row["tps_total"] / row["tps_count"] if row["tps_count"] else None
                figures[name] = ModelFigures(quality, percentile(row["ttft_ms"], 0.5), tps)
            self._observed_at = (position, health, figures)
        return self._observed_at[1], self._observed_at[2]

    def snapshot(self, scopes: Sequence[str]) -> RouteSnapshot:
        tight = self.budget.headroom(scopes)
        health, figures = self._observed()
        return RouteSnapshot(
            catalog=self.catalog,
            health=health,
            figures=figures,
            unavailable=self.unavailable(),
            headroom_usd=None if tight is None else to_usd(max(tight[1], 0)),
            round_robin_counter=self._round_robin,
        )

    def quality_of(self, model: str, capability: str) -> float:
        spec = self.actors.specs[model]
        evidence = self.figures().get(model, ModelFigures()).quality.get(capability, Evidence())
        return learned_quality(spec.quality_prior, evidence)

    # A request's story.

    async def process(
        self,
        req: ProcessRequest,
        principal: Principal,
        on_token: TokenSink | None = None,
        request_id: str | None = None,
        on_tool_call: ToolCallEvents | None = None,
    ) -> ProcessResult:
        """Answer one request; raises GatewayError (after recording it) when there is none.

        `on_token` hears every piece of text as it streams, `on_tool_call` every piece of a
        tool call."""
        if req.model is not None and req.model not in self.actors.specs:
            raise GatewayError(404, "unknown_model", f"no model named {req.model!r}", field="model")
        size = call_prompt_size(req.messages, req.params)
        needs = self._needs(req, size.images > 0)
        parameters = self._parameters(req)
        request_id = request_id or new_event_id()
        ctx = RequestContext(
            request_id=request_id,
            req=req,
            principal=principal,
            prompt=size,
            log=BufferedStream(self.store, request_stream(request_id), alone=self._alone),
            metadata={
                "correlation_id": request_id,
                "api_key_id": principal.key_id,
                "tenancy": principal.tenancy,
                "actor": "gateway",
            },
            on_tool_call=on_tool_call,
            needs=needs,
            parameters=parameters,
        )
        ctx.record(
            RequestReceived(
                request_id=request_id,
                endpoint=req.endpoint,
                messages=list(req.messages),
                params=request_params(ctx),
                model=req.model,
                capability=req.capability,
                strategy=None if req.model else req.strategy.value,
                api_key_id=principal.key_id,
                tenant=principal.tenant,
                stream=req.stream,
                expected=req.expected,
                answer_format=req.answer_format.kind.value,
                answer_field=req.answer_format.field,
                cascade=req.cascade_settings(),
            )
        )
        self._announce(ctx, "requests", {"request_id": request_id, "state": "received"})
        self._in_flight += 1
        try:
            if req.deadline_ms is None:
                return await self._answer(ctx, on_token)
            async with asyncio.timeout(req.deadline_ms / 1000):
                return await self._answer(ctx, on_token)
        except TimeoutError:
            error = GatewayError(
                504,
                "timeout",
                f"no answer within deadline_ms {req.deadline_ms:g}",
                tried=ctx.tried(),
            )
            await self._fail(ctx, error)
            raise error from None
        except GatewayError as error:
            await self._fail(ctx, error)
            raise
        except asyncio.CancelledError:
            # The client went away: its story ends on the record too, with what it cost.
            ctx.record(self._failed(ctx, GatewayError(499, "cancelled", "the client went away")))
            self._announce(ctx, "requests", {"request_id": ctx.request_id, "state": "failed"})
            raise
        finally:
            self._in_flight -= 1
            # Cancelled, the request cannot wait for its log: what it did is queued to it.
            with contextlib.suppress(StoreClosed):
                ctx.log.flush()

    async def _answer(self, ctx: RequestContext, on_token: TokenSink | None) -> ProcessResult:
        key = self.cache.key(ctx)
        if key is not None and ctx.req.use_cache:
            hit = self.cache.lookup(key)
            if hit is not None:
                return await self._from_cache(ctx, key, hit, on_token)
        try:
            return await self._routed(ctx, key, on_token)
        except GatewayError as refused:
            # Refused for want of budget on this process's view: another node may have freed
            # room it has not read yet. Read the log to its head, and route once more if that
            # made room.
            if refused.status != 402 or not await self._more_room(ctx.scopes):
                raise
        return await self._routed(ctx, key, on_token)

    async def _more_room(self, scopes: Sequence[str]) -> bool:
        """Read the log up to its head; whether that left the scopes more room than before
        (settlements of other nodes': this process counts its own already)."""
        before = self.budget.headroom(scopes)
        await self.projections.catch_up(timeout=CATCH_UP_S)
        after = self.budget.headroom(scopes)
        return before is not None and after is not None and after[1] > before[1]

    async def _routed(
        self, ctx: RequestContext, key: str | None, on_token: TokenSink | None
    ) -> ProcessResult:
        decision = route(self.snapshot(ctx.scopes), self._route_request(ctx))
        if decision.next_counter is not None:
            self._round_robin = decision.next_counter
        ctx.record(
            RouteDecided(
                request_id=ctx.request_id,
                strategy=decision.strategy.value,
                chosen=decision.chosen.model if decision.chosen else None,
                order=list(decision.order),
                reason=decision.reason,
                candidates=[c.to_dict() for c in decision.candidates],
                excluded=[x.to_dict() for x in decision.excluded],
                ensemble=decision.ensemble.to_dict() if decision.ensemble else None,
                cascade=decision.cascade.to_dict() if decision.cascade else None,
            )
        )
        if not decision.candidates:
            raise self._no_candidate(ctx, decision)
        if decision.ensemble is not None:
            answer = await answer_ensemble(
                self.calls,
                ctx,
                decision,
                lambda model: self.quality_of(model, ctx.req.capability),
                on_token,
                self.best_of,
            )
            return await self._complete(ctx, decision, answer.chosen, key, answer)
        if decision.cascade is not None:
            acceptance = await self.acceptance.current()
            climbed = await answer_cascade(self.calls, ctx, decision, acceptance, on_token)
            return await self._complete(ctx, decision, climbed.chosen, key, cascade=climbed)
        result = await answer_single(self.calls, ctx, decision, on_token)
        return await self._complete(ctx, decision, result, key)

    def _needs(self, req: ProcessRequest, images: bool) -> frozenset[str]:
        """What the request's content needs of a model: images go only to multimodal models,
        tool definitions to models with the tools capability. A named model that lacks one is
        refused at once."""
        needs = []
        if images:
            needs.append(("multimodal", "images", "messages"))
        if req.params.tools:
            needs.append(("tools", "tools", "tools"))
        if req.params.embed:
            needs.append(("embeddings", "embedding inputs", "model"))
        if req.model is not None:
            spec = self.actors.specs[req.model]
            for capability, what, field in needs:
                if capability not in spec.capabilities:
                    raise GatewayError(
                        400,
                        "bad_request",
                        f"model {req.model!r} does not take {what} "
                        f"(it lacks the {capability} capability)",
                        field=field,
                    )
        return frozenset(capability for capability, _, _ in needs)

    def _parameters(self, req: ProcessRequest) -> frozenset[str]:
        """The parameters the request sets that some provider refuses; a named model whose
        provider refuses one is refused at once, naming it, unless they may be dropped."""
        names = asked(req.params)
        if names and req.model is not None and not req.drop_params:
            provider = self.actors.specs[req.model].provider
            if no := refused(provider, names):
                raise GatewayError(
                    400,
                    "bad_request",
                    f"model {req.model!r} cannot honour {field(no[0])}: {why(provider, no[0])}; "
                    'leave it out, or allow dropping it with "atom": {"drop_params": true}',
                    field=field(no[0]),
                )
        return names

    def _route_request(self, ctx: RequestContext) -> RouteRequest:
        req = ctx.req
        strategy = req.strategy
        allow = req.allow
        if req.model is not None:
            # A named model still goes through the filters: health, budget, context window.
            allow, strategy = frozenset({req.model}), Strategy.COST_FIRST
        if req.ensemble is not None:
            strategy = Strategy.ENSEMBLE
        return RouteRequest(
            capability=req.capability,
            prompt=ctx.prompt,
            max_tokens=req.params.max_tokens,
            strategy=strategy,
            allow=allow,
            deny=req.deny,
            min_quality=req.min_quality,
            max_cost_usd=req.max_cost_usd,
            deadline_ms=req.deadline_ms,
            ensemble=req.ensemble or EnsembleSpec(),
            needs=ctx.needs,
            parameters=frozenset() if req.drop_params else ctx.parameters,
            cascade=req.cascade or CascadeSpec(),
        )

    def _no_candidate(self, ctx: RequestContext, decision: RouteDecision) -> GatewayError:
        reasons = "; ".join(f"{x.model}: {x.reason}" for x in decision.excluded) or "none"
        if decision.over_budget:
            tight = self.budget.headroom(ctx.scopes)
            scope, room = tight if tight is not None else ("global", 0)
            ctx.record(
                BudgetRejected(
                    request_id=ctx.request_id, scope=scope, amount_pico=0, headroom_pico=room
                )
            )
            return GatewayError(402, "budget_exceeded", f"no model fits the budget: {reasons}")
        return GatewayError(503, "no_model", f"no model can serve this request: {reasons}")

    # How it ends.

    async def _complete(
        self,
        ctx: RequestContext,
        decision: RouteDecision,
        result: CallResult,
        cache_key: str | None,
        ensemble: EnsembleAnswer | None = None,
        cascade: CascadeAnswer | None = None,
    ) -> ProcessResult:
        req = ctx.req
        record_reference(ctx, result)
        latency_ms = ctx.elapsed_ms()
        spend = ctx.spend
        completed = RequestCompleted(
            request_id=ctx.request_id,
            model=result.model,
            text=result.text,
            prompt_tokens=spend.prompt_tokens,
            completion_tokens=spend.completion_tokens,
            cost_pico=spend.cost_pico,
            latency_ms=latency_ms,
            finish_reason=result.finish_reason,
            strategy=None if req.model else decision.strategy.value,
            ensemble_method=ensemble.method.value if ensemble else None,
            attempts=len(ctx.attempts),
            fallbacks=0 if ensemble else sum(1 for a in ctx.attempts if a.outcome != "ok"),
            agreement=ensemble.combined["agreement"] if ensemble else None,
            baseline_pico=self._baseline(decision, ctx, result, cascade),
            cached=False,
            cache_key=cache_key,
            tenant=ctx.principal.tenant,
            capability=req.capability,
            tool_calls=_openai_calls(result.tool_calls),
            dropped_params=list(dropped) if (dropped := ctx.dropped.get(result.model)) else None,
            escalations=cascade.escalations if cascade else 0,
        )
        position = await self._finish(ctx, completed)
        self._announce(ctx, "requests", {"request_id": ctx.request_id, "state": "completed"})
        judged = (ensemble and ensemble.judged) or req.params.embed
        if self.judge is not None and not judged:
            # The judge grades after the answer has gone: it never delays it.
            self.judge.grade_later(ctx, result)
        return _result(
            completed,
            position,
            route={
                "strategy": decision.strategy.value,
                "chosen": result.model,
                "order": list(decision.order),
                "reason": decision.reason,
                "excluded": [x.to_dict() for x in decision.excluded],
            },
            attempts=tuple(ctx.attempts),
            ensemble=ensemble.combined if ensemble else None,
            members=ensemble.members if ensemble else (),
            cascade=cascade.steps if cascade else (),
            tool_calls=result.tool_calls,
            stop_sequence=result.stop_sequence,
            dropped_params=ctx.dropped.get(result.model, ()),
            logprobs=result.logprobs,
            embeddings=result.embeddings,
        )

    def _baseline(
        self,
        decision: RouteDecision,
        ctx: RequestContext,
        result: CallResult,
        cascade: CascadeAnswer | None,
    ) -> int:
        """What the same tokens would have cost at the dearest eligible model; for a cascade,
        what its answer would have cost from the ladder's strongest model."""
        specs = self.actors.specs
        if cascade is not None:
            strongest = specs[cascade.strongest]
            return cost_pico(strongest, result.prompt_tokens, result.completion_tokens)
        spend = ctx.spend
        eligible = [specs[c.model] for c in decision.candidates if c.model in specs]
        return max(
            (cost_pico(s, spend.prompt_tokens, spend.completion_tokens) for s in eligible),
            default=spend.cost_pico,
        )

    async def _finish(self, ctx: RequestContext, event: DomainEvent) -> int:
        """Append the request's last event; return its position once it and all before it
        are committed."""
        ctx.record(event)
        return await ctx.log.commit()

    async def _fail(self, ctx: RequestContext, error: GatewayError) -> None:
        error.request_id = ctx.request_id
        error.position = await asyncio.shield(self._finish(ctx, self._failed(ctx, error)))
        self._announce(ctx, "requests", {"request_id": ctx.request_id, "state": "failed"})

    @staticmethod
    def _failed(ctx: RequestContext, error: GatewayError) -> RequestFailed:
        return RequestFailed(
            request_id=ctx.request_id,
            kind=error.kind,
            message=error.message,
            status=error.status,
            tried=error.tried or ctx.tried(),
            latency_ms=ctx.elapsed_ms(),
            strategy=None if ctx.req.model else ctx.req.strategy.value,
            cost_pico=ctx.spend.cost_pico,
        )

    def _announce(self, ctx: RequestContext, topic: str, payload: dict[str, Any]) -> None:
        if self.publish is not None:
            self.publish(topic, payload, ctx.tenancy)

    async def _from_cache(
        self, ctx: RequestContext, key: str, hit: dict[str, Any], on_token: TokenSink | None
    ) -> ProcessResult:
        self.cache.replay(ctx, key, hit, on_token, self.publish)
        tool_calls = tuple(ToolCall.from_openai(call) for call in hit.get("tool_calls") or ())
        if tool_calls and ctx.on_tool_call is not None:
            for piece in tool_call_deltas(tool_calls):
                ctx.on_tool_call(hit["model"], piece, ctx.elapsed_ms())
        latency_ms = ctx.elapsed_ms()
        strategy = None if ctx.req.model else ctx.req.strategy.value
        completed = RequestCompleted(
            request_id=ctx.request_id,
            model=hit["model"],
            text=hit["text"],
            prompt_tokens=hit["prompt_tokens"],
            completion_tokens=hit["completion_tokens"],
            cost_pico=0,
            latency_ms=latency_ms,
            finish_reason=hit["finish_reason"],
            strategy=strategy,
            attempts=0,
            cached=True,
            cache_key=key,
            tenant=ctx.principal.tenant,
            capability=ctx.req.capability,
            tool_calls=hit.get("tool_calls"),
        )
        position = await self._finish(ctx, completed)
        route = {"strategy": "cache", "chosen": hit["model"], "source": hit["request_id"]}
        return _result(completed, position, route, tool_calls=tool_calls)

    # Around requests.

    async def feedback(
        self, request_id: str, score: float, principal: Principal, comment: str = ""
    ) -> int:
        """Record a client's score of an answer; returns the score's log position."""
        return await feedback(self.store, request_id, score, principal, comment)

    async def drain(self) -> None:
        """Wait for background work (judges, a refit) to finish, at shutdown."""
        if self.judge is not None:
            await self.judge.drain()
        await self.acceptance.drain()


def _openai_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]] | None:
    return [call.to_openai() for call in calls] if calls else None


def _result(
    completed: RequestCompleted, position: int, route: dict[str, Any], **more: Any
) -> ProcessResult:
    """The answer a request's RequestCompleted records, at its log position."""
    return ProcessResult(
        request_id=completed.request_id,
        model=completed.model,
        text=completed.text,
        prompt_tokens=completed.prompt_tokens,
        completion_tokens=completed.completion_tokens,
        cost_pico=completed.cost_pico,
        latency_ms=completed.latency_ms,
        finish_reason=completed.finish_reason,
        route=route,
        cached=completed.cached,
        position=position,
        **more,
    )
