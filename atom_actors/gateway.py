"""The gateway: one request from receipt to answer, every step on the record.

RequestReceived -> (CacheHit | RouteDecided -> [BudgetReserved -> ModelCall* -> BudgetSettled]
per attempt, or per ensemble member -> EnsembleCombined) -> ScoreRecorded* -> RequestCompleted
or RequestFailed. The answer goes back only after the events that account for it are committed.
Decisions are the pure functions of strategies, combiners and scorers; this is their shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from eventstore import BufferedStream, EventStore, LiveProjections, StoreClosed, new_event_id

from .answers import FREE_TEXT, AnswerFormat
from .budget import BudgetBook, BudgetExceeded, Reservation, scopes_of
from .calls import CallFailed, CallResult
from .catalog import ModelSpec, unavailable_reason
from .combiners import MemberAnswer, combine
from .cost import cost_pico, estimate_message_tokens, reservation_pico, to_usd
from .events import (
    BudgetRejected,
    CacheHit,
    DomainEvent,
    EnsembleCombined,
    RequestCompleted,
    RequestFailed,
    RequestReceived,
    RouteDecided,
    ScoreFailed,
    ScoreRecorded,
    request_stream,
)
from .projections import percentile
from .providers import CallParams, Delta
from .quality import Evidence, learned_quality
from .scorers import (
    AgreementScorer,
    FeedbackScorer,
    JudgeScorer,
    ReferenceScorer,
    ScoreInput,
    ScoreUnavailable,
)
from .snapshot import (
    EnsembleMethod,
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

CACHE_TTL_S = 3600.0
RETRIES = 2
"""Retries of a retryable failure (429, 5xx, timeouts) on one model before falling back."""
BACKOFF_S = 0.2
DEADLINE_MARGIN_S = 0.05
"""An ensemble stops waiting for its members this long before the request's deadline."""

Publish = Callable[[str, dict[str, Any], str], object]
"""publish(topic, payload, audience): live news of a request, for those who may see it."""
TokenSink = Callable[[str, str, float], None]
"""Called with (member or model, text, ms since the request started) for every delta."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the API key's id, role and tenant (None when run from a trusted tool)."""

    key_id: str | None = None
    role: str = "admin"
    tenant: str | None = None

    @property
    def audience(self) -> str:
        """Who may watch this caller's requests live: see `audience_of`."""
        return audience_of(self.key_id, self.tenant)


def audience_of(key_id: str | None, tenant: str | None) -> str:
    """The audience of a caller's live news (tokens, request states) on the stream hub: its
    tenant's keys (keys without a tenant are one tenant together), or for a trusted tool's
    requests (no key) only operators."""
    if key_id is None and tenant is None:
        return "internal"
    return f"tenant:{tenant or ''}"


@dataclass(frozen=True, slots=True)
class ProcessRequest:
    """One request: a named model, or a capability and a strategy for the router to choose."""

    messages: Sequence[dict[str, Any]]
    params: CallParams = field(default_factory=CallParams)
    model: str | None = None
    capability: str = "text_generation"
    strategy: Strategy = Strategy.QUALITY_FIRST
    ensemble: EnsembleSpec | None = None
    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()
    min_quality: float | None = None
    max_cost_usd: float | None = None
    deadline_ms: float | None = None
    expected: str | None = None
    answer_format: AnswerFormat = FREE_TEXT
    use_cache: bool = True
    endpoint: str = "process"
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Attempt:
    model: str
    attempt: int
    outcome: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class ProcessResult:
    request_id: str
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_pico: int
    latency_ms: float
    finish_reason: str
    route: dict[str, Any]
    attempts: tuple[Attempt, ...]
    cached: bool = False
    ensemble: dict[str, Any] | None = None
    members: tuple[dict[str, Any], ...] = ()
    position: int = 0

    @property
    def cost_usd(self) -> float:
        return to_usd(self.cost_pico)


class MissedDeadline(Exception):
    """An ensemble member that had not answered when the deadline came."""


class GatewayError(Exception):
    """A request that got no answer; `status` is the HTTP status it maps to."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        request_id: str | None = None,
        tried: Sequence[str] = (),
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.request_id = request_id
        self.tried = list(tried)
        self.field = field
        self.retry_after = retry_after
        # Where the request's RequestFailed is in the log, once it is recorded.
        self.position = 0


@dataclass(slots=True)
class _Request:
    """What one request has written and decided so far."""

    request_id: str
    req: ProcessRequest
    principal: Principal
    started: float
    metadata: dict[str, Any]
    # The request's stream: its events are buffered, and appended together where they can be.
    log: BufferedStream
    attempts: list[Attempt] = field(default_factory=list)
    round_robin: int = 0
    # Tokens of an answer went out to a streaming client: that answer can no longer be retried.
    delivered: bool = False

    @property
    def audience(self) -> str:
        return self.principal.audience


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
    ) -> None:
        self.store = store
        self.actors = actors
        self.projections = projections
        self.budget = BudgetBook(
            lambda: projections.state("budgets"), lambda: projections.position, clock
        )
        self.publish = publish
        # Whether anyone listens to a topic: a request's tokens are not even packed otherwise.
        self._listening = listening
        self._env = env
        self._clock = clock
        self._round_robin = 0
        self._in_flight = 0
        self.judge_model = judge_model
        self._background: set[asyncio.Task[None]] = set()
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

    # ---------------------------------------------------------------------------- snapshot

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

    # ----------------------------------------------------------------------------- process

    async def process(
        self,
        req: ProcessRequest,
        principal: Principal,
        on_token: TokenSink | None = None,
        request_id: str | None = None,
    ) -> ProcessResult:
        """Answer one request; raises GatewayError (after recording it) when there is none."""
        if req.model is not None and req.model not in self.actors.specs:
            raise GatewayError(404, "unknown_model", f"no model named {req.model!r}", field="model")
        if has_images(req.messages):
            req = self._for_images(req)
        request_id = request_id or new_event_id()
        r = _Request(
            request_id,
            req,
            principal,
            time.perf_counter(),
            {"correlation_id": request_id, "api_key_id": principal.key_id, "actor": "gateway"},
            BufferedStream(self.store, request_stream(request_id), alone=self._alone),
        )
        self._record(
            r,
            RequestReceived(
                request_id,
                req.endpoint,
                list(req.messages),
                _params(req),
                req.model,
                req.capability,
                None if req.model else req.strategy.value,
                principal.key_id,
                principal.tenant,
                req.stream,
                req.expected,
                req.answer_format.kind.value,
                req.answer_format.field,
            ),
        )
        self._announce(r, "requests", {"request_id": request_id, "state": "received"})
        self._in_flight += 1
        try:
            if req.deadline_ms is None:
                return await self._answer(r, on_token)
            async with asyncio.timeout(req.deadline_ms / 1000):
                return await self._answer(r, on_token)
        except TimeoutError:
            error = GatewayError(
                504,
                "timeout",
                f"no answer within deadline_ms {req.deadline_ms:g}",
                tried=[f"{a.model}#{a.attempt}: {a.outcome}" for a in r.attempts],
            )
            await self._fail(r, error)
            raise error from None
        except GatewayError as error:
            await self._fail(r, error)
            raise
        finally:
            self._in_flight -= 1
            # A request cancelled (its client gone) leaves what it did on the record too.
            with contextlib.suppress(StoreClosed):
                r.log.flush()

    async def _answer(self, r: _Request, on_token: TokenSink | None) -> ProcessResult:
        req = r.req
        key = self._cache_key(r)
        if key is not None and req.use_cache:
            hit = self._cached(key)
            if hit is not None:
                return await self._from_cache(r, key, hit, on_token)
        scopes = scopes_of(r.principal.key_id, r.principal.tenant)
        decision = route(self.snapshot(scopes), self._route_request(r))
        if decision.next_counter is not None:
            self._round_robin = decision.next_counter
        self._record(
            r,
            RouteDecided(
                r.request_id,
                decision.strategy.value,
                decision.chosen.model if decision.chosen else None,
                list(decision.order),
                decision.reason,
                [c.to_dict() for c in decision.candidates],
                [x.to_dict() for x in decision.excluded],
                decision.ensemble.to_dict() if decision.ensemble else None,
            ),
        )
        if not decision.candidates:
            raise self._no_candidate(r, decision, scopes)
        if decision.ensemble is not None:
            return await self._ensemble(r, decision, scopes, key, on_token)
        return await self._single(r, decision, scopes, key, on_token)

    def _for_images(self, req: ProcessRequest) -> ProcessRequest:
        """Images go only to multimodal models: refused at once for another named model."""
        blind = frozenset(
            name
            for name, spec in self.actors.specs.items()
            if "multimodal" not in spec.capabilities
        )
        if req.model is not None and req.model in blind:
            raise GatewayError(
                400,
                "bad_request",
                f"model {req.model!r} does not take images (it lacks the multimodal capability)",
                field="messages",
            )
        return replace(req, deny=req.deny | blind)

    def _route_request(self, r: _Request) -> RouteRequest:
        req = r.req
        prompt_tokens = estimate_message_tokens(req.messages)
        max_tokens = req.params.max_tokens or 1024
        strategy = req.strategy
        allow = req.allow
        if req.model is not None:
            # A named model still goes through the filters: health, budget, context window.
            allow, strategy = frozenset({req.model}), Strategy.COST_FIRST
        if req.ensemble is not None:
            strategy = Strategy.ENSEMBLE
        return RouteRequest(
            capability=req.capability,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            strategy=strategy,
            allow=allow,
            deny=req.deny,
            min_quality=req.min_quality,
            max_cost_usd=req.max_cost_usd,
            deadline_ms=req.deadline_ms,
            ensemble=req.ensemble or EnsembleSpec(),
        )

    def _no_candidate(
        self, r: _Request, decision: RouteDecision, scopes: Sequence[str]
    ) -> GatewayError:
        reasons = "; ".join(f"{x.model}: {x.reason}" for x in decision.excluded) or "none"
        if decision.over_budget:
            tight = self.budget.headroom(scopes)
            scope, room = tight if tight is not None else ("global", 0)
            self._record(r, BudgetRejected(r.request_id, scope, 0, room))
            return GatewayError(402, "budget_exceeded", f"no model fits the budget: {reasons}")
        return GatewayError(503, "no_model", f"no model can serve this request: {reasons}")

    # ------------------------------------------------------------------------ single model

    async def _single(
        self,
        r: _Request,
        decision: RouteDecision,
        scopes: list[str],
        cache_key: str | None,
        on_token: TokenSink | None,
    ) -> ProcessResult:
        last: CallFailed | None = None
        budget_error: BudgetExceeded | None = None
        for candidate in decision.candidates:
            for attempt in range(1, RETRIES + 2):
                try:
                    result = await self._call(
                        r, candidate.model, candidate.reservation_pico, scopes, attempt, on_token
                    )
                except BudgetExceeded as exc:
                    budget_error = exc
                    break
                except CallFailed as exc:
                    last = exc
                    if exc.kind == "cancelled":
                        raise
                    if r.delivered:
                        # A retry would stream its answer after the broken one's first tokens.
                        raise GatewayError(
                            502,
                            "upstream_failed",
                            f"{exc.model} broke off after its first tokens were streamed "
                            f"({exc.kind}: {exc.message}); a streamed answer is not retried",
                            tried=[f"{a.model}#{a.attempt}: {a.outcome}" for a in r.attempts],
                        ) from exc
                    if not exc.retryable or attempt > RETRIES:
                        break
                    await asyncio.sleep(min(exc.retry_after or BACKOFF_S * 2 ** (attempt - 1), 5))
                    continue
                fallbacks = sum(1 for a in r.attempts if a.outcome != "ok")
                return await self._complete(
                    r, decision, result, cache_key, fallbacks=fallbacks, scopes=scopes
                )
        tried = [f"{a.model}#{a.attempt}: {a.outcome} {a.message}".strip() for a in r.attempts]
        if last is None and budget_error is not None:
            self._record(
                r,
                BudgetRejected(
                    r.request_id,
                    budget_error.scope,
                    budget_error.amount_pico,
                    budget_error.headroom_pico,
                ),
            )
            raise GatewayError(402, "budget_exceeded", str(budget_error), tried=tried)
        status = 504 if last is not None and last.kind == "timeout" else 502
        message = f"every model failed: {'; '.join(tried)}"
        raise GatewayError(status, "upstream_failed", message, tried=tried)

    async def _call(
        self,
        r: _Request,
        model: str,
        reservation_pico: int,
        scopes: list[str],
        attempt: int,
        on_token: TokenSink | None,
        params: CallParams | None = None,
        member: str | None = None,
        messages: Sequence[dict[str, Any]] | None = None,
    ) -> CallResult:
        """One budgeted call: reserved (and on the record) before it starts, settled after."""
        reservation, reserved = self.budget.reserve(r.request_id, scopes, reservation_pico, model)
        r.log.add(reserved.new(**r.metadata))
        topic = f"tokens:{r.request_id}"
        label = member or model
        publish, listening = self.publish, self._listening

        def on_delta(delta: Delta, _ms: float) -> None:
            elapsed = (time.perf_counter() - r.started) * 1000
            if on_token is not None:
                on_token(label, delta.text, elapsed)
                r.delivered = member is None
            if publish is not None and (listening is None or listening(topic)):
                payload = {"member": label, "text": delta.text, "ms": round(elapsed, 3)}
                publish(topic, payload, r.audience)

        try:
            result = await self.actors.caller.call(
                model,
                r.req.messages if messages is None else messages,
                params or r.req.params,
                request_id=r.request_id,
                attempt=attempt,
                on_delta=on_delta,
                # The caller commits the request's log, this reservation with it, before it
                # calls upstream: the money is on the record before it can be spent.
                log=r.log,
            )
        except CallFailed as exc:
            r.attempts.append(Attempt(model, attempt, exc.kind, exc.message))
            self._settle(r, reservation, 0)
            raise
        except asyncio.CancelledError:
            self._settle(r, reservation, 0)
            raise
        r.attempts.append(Attempt(model, attempt, "ok"))
        self._settle(r, reservation, result.cost_pico)
        return result

    def _settle(self, r: _Request, reservation: Reservation, actual_pico: int) -> None:
        settled = self.budget.settle(reservation, actual_pico)
        r.log.add(
            settled.new(**r.metadata),
            on_committed=lambda position: self.budget.settled_at(reservation, position),
        )

    # ---------------------------------------------------------------------------- ensemble

    async def _ensemble(
        self,
        r: _Request,
        decision: RouteDecision,
        scopes: list[str],
        cache_key: str | None,
        on_token: TokenSink | None,
    ) -> ProcessResult:
        plan = decision.ensemble
        assert plan is not None
        by_model = {c.model: c for c in decision.candidates}
        base_seed = r.req.params.seed if r.req.params.seed is not None else 0
        labels = [f"{m}#{i + 1}" for i, m in enumerate(plan.members)]

        async def member(i: int, model: str) -> CallResult:
            params = r.req.params
            if plan.members.count(model) > 1:
                # Samples of one model differ by their seed: self-consistency.
                params = replace(params, seed=base_seed + i)
            return await self._call(
                r, model, by_model[model].reservation_pico, scopes, 1, on_token, params, labels[i]
            )

        tasks = [asyncio.ensure_future(member(i, m)) for i, m in enumerate(plan.members)]
        # Members still running near the deadline are left out, so the others' answer stands.
        wait_s = None
        if r.req.deadline_ms is not None:
            elapsed_s = time.perf_counter() - r.started
            wait_s = max(0.0, r.req.deadline_ms / 1000 - elapsed_s - DEADLINE_MARGIN_S)
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
            MissedDeadline(f"no answer within deadline_ms {r.req.deadline_ms:g}")
            if task in late
            else (task.exception() or task.result())
            for task in tasks
        ]
        answers = []
        results: dict[str, CallResult] = {}
        for label, model, outcome in zip(labels, plan.members, outcomes, strict=True):
            quality = self.quality_of(model, r.req.capability)
            if isinstance(outcome, CallResult):
                results[label] = outcome
                answers.append(
                    MemberAnswer(label, model, outcome.text, quality, outcome.mean_logprob)
                )
            elif isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome
            else:
                answers.append(MemberAnswer(label, model, "", quality, error=str(outcome)))
        combined = combine(plan.method, answers, r.req.answer_format)
        members = [
            {
                "member": a.member,
                "model": a.model,
                "text": a.text,
                "error": a.error,
                "weight": combined.weights.get(a.member),
                "cost_pico": results[a.member].cost_pico if a.member in results else 0,
            }
            for a in answers
        ]
        self._record(
            r, EnsembleCombined(r.request_id, plan.method.value, combined.to_dict(), members)
        )
        if combined.chosen is None or combined.answer is None:
            tried = [f"{a.member}: {a.error}" for a in answers]
            raise GatewayError(502, "upstream_failed", "no ensemble member answered", tried=tried)
        for result in results.values():
            self._score_agreement(r, result, combined.answer)
        chosen = results[combined.chosen]
        total = _Totals.of(results.values())
        return await self._complete(
            r,
            decision,
            chosen,
            cache_key,
            fallbacks=0,
            scopes=scopes,
            totals=total,
            ensemble=(plan.method, combined.to_dict(), tuple(members)),
        )

    def _score_agreement(self, r: _Request, result: CallResult, consensus: str) -> None:
        scorer = AgreementScorer()
        score = scorer.score(ScoreInput(result.text, fmt=r.req.answer_format, consensus=consensus))
        self._record(
            r,
            ScoreRecorded(
                r.request_id,
                result.call_id,
                "call",
                result.model,
                r.req.capability,
                scorer.id,
                scorer.version,
                round(score, 6),
            ),
        )

    # ------------------------------------------------------------------------------ finish

    async def _complete(
        self,
        r: _Request,
        decision: RouteDecision,
        result: CallResult,
        cache_key: str | None,
        *,
        fallbacks: int,
        scopes: list[str],
        totals: _Totals | None = None,
        ensemble: tuple[EnsembleMethod, dict[str, Any], tuple[dict[str, Any], ...]] | None = None,
    ) -> ProcessResult:
        req = r.req
        totals = totals or _Totals.of([result])
        if req.expected is not None:
            scorer = ReferenceScorer()
            try:
                score = scorer.score(
                    ScoreInput(result.text, fmt=req.answer_format, expected=req.expected)
                )
            except ScoreUnavailable:
                score = None
            if score is not None:
                self._record(
                    r,
                    ScoreRecorded(r.request_id, result.call_id, "call", result.model,
                                  req.capability, scorer.id, scorer.version, score),
                )  # fmt: skip
        latency_ms = round((time.perf_counter() - r.started) * 1000, 3)
        method = ensemble[0].value if ensemble else None
        agreement = ensemble[1]["agreement"] if ensemble else None
        completed = RequestCompleted(
            r.request_id,
            result.model,
            result.text,
            totals.prompt_tokens,
            totals.completion_tokens,
            totals.cost_pico,
            latency_ms,
            result.finish_reason,
            None if req.model else decision.strategy.value,
            method,
            len(r.attempts),
            fallbacks,
            agreement,
            self._baseline(decision, totals),
            False,
            cache_key,
            r.principal.tenant,
            req.capability,
        )
        position = await self._finish(r, completed)
        self._announce(r, "requests", {"request_id": r.request_id, "state": "completed"})
        if self.judge_model is not None and result.model != self.judge_model:
            # The judge grades after the answer has gone: it never delays it.
            task = asyncio.create_task(self._judge(r, result))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return ProcessResult(
            r.request_id,
            result.model,
            result.text,
            totals.prompt_tokens,
            totals.completion_tokens,
            totals.cost_pico,
            latency_ms,
            result.finish_reason,
            {
                "strategy": decision.strategy.value,
                "chosen": result.model,
                "order": list(decision.order),
                "reason": decision.reason,
                "excluded": [x.to_dict() for x in decision.excluded],
            },
            tuple(r.attempts),
            ensemble=ensemble[1] if ensemble else None,
            members=ensemble[2] if ensemble else (),
            position=position,
        )

    def _baseline(self, decision: RouteDecision, totals: _Totals) -> int:
        """What the same tokens would have cost at the dearest eligible model."""
        specs = self.actors.specs
        eligible = [specs[c.model] for c in decision.candidates if c.model in specs]
        return max(
            (cost_pico(s, totals.prompt_tokens, totals.completion_tokens) for s in eligible),
            default=totals.cost_pico,
        )

    async def _finish(self, r: _Request, event: DomainEvent) -> int:
        """Append the request's last event; return its position once it and all before it
        are committed."""
        r.log.add(event.new(**r.metadata))
        return await r.log.commit()

    async def _fail(self, r: _Request, error: GatewayError) -> None:
        error.request_id = r.request_id
        latency_ms = round((time.perf_counter() - r.started) * 1000, 3)
        failed = RequestFailed(
            r.request_id,
            error.kind,
            error.message,
            error.status,
            error.tried,
            latency_ms,
            None if r.req.model else r.req.strategy.value,
        )
        error.position = await asyncio.shield(self._finish(r, failed))
        self._announce(r, "requests", {"request_id": r.request_id, "state": "failed"})

    def _record(self, r: _Request, event: DomainEvent) -> None:
        """Add an event to the request's log; a model call or `_finish` commits it."""
        r.log.add(event.new(**r.metadata))

    def _announce(self, r: _Request, topic: str, payload: dict[str, Any]) -> None:
        if self.publish is not None:
            self.publish(topic, payload, r.audience)

    # ------------------------------------------------------------------------------ scores

    async def _judge(self, r: _Request, result: CallResult) -> None:
        """Have the judge model grade an answer against the rubric; record the grade."""
        assert self.judge_model is not None
        scorer = JudgeScorer()
        question = str(r.req.messages[-1].get("content", "")) if r.req.messages else ""
        subject = ScoreInput(result.text, question=question, expected=r.req.expected)
        judge = _Request(
            r.request_id, r.req, r.principal, time.perf_counter(),
            {**r.metadata, "actor": "judge", "causation_id": result.call_id},
            BufferedStream(self.store, request_stream(r.request_id)),
        )  # fmt: skip
        spec = self.actors.specs[self.judge_model]
        params = CallParams(max_tokens=64, temperature=0.0)
        prompt = scorer.prompt(subject)
        amount = reservation_pico(spec, estimate_message_tokens(prompt), 64)
        try:
            reply = await self._call(
                judge, self.judge_model, amount, ["global"], 1, None, params, "judge", prompt
            )
            score = scorer.parse(reply.text)
        except (CallFailed, BudgetExceeded, ScoreUnavailable) as exc:
            self._record(judge, ScoreFailed(r.request_id, result.call_id, scorer.id, str(exc)))
        else:
            self._record(
                judge,
                ScoreRecorded(
                    r.request_id, result.call_id, "call", result.model, r.req.capability,
                    scorer.id, scorer.version, score, reply.text[:500],
                ),
            )  # fmt: skip
        await judge.log.commit()

    async def feedback(
        self, request_id: str, score: float, principal: Principal, comment: str = ""
    ) -> int:
        """Record a client's score of an answer; returns the score's log position."""
        events = await self.store.read_stream_async(request_stream(request_id))
        completed = [e for e in events if e.type == "RequestCompleted"]
        if not events or not completed:
            raise GatewayError(
                404, "unknown_request", f"no answered request {request_id!r}", field="request_id"
            )
        scorer = FeedbackScorer()
        try:
            value = scorer.score(ScoreInput(completed[-1].data["text"], feedback=score))
        except ValueError as exc:
            raise GatewayError(400, "invalid_field", str(exc), field="score") from exc
        received = events[0].data
        event = ScoreRecorded(
            request_id, request_id, "request", completed[-1].data["model"],
            received.get("capability"), scorer.id, scorer.version, value, comment[:500],
        )  # fmt: skip
        metadata = {"correlation_id": request_id, "api_key_id": principal.key_id}
        positions = await self.store.append_async(
            request_stream(request_id), [event.new(**metadata)]
        )
        return positions[-1]

    async def drain(self) -> None:
        """Wait for background work (judges) to finish, at shutdown."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -------------------------------------------------------------------------------- cache

    def _cache_key(self, r: _Request) -> str | None:
        """Deterministic requests (temperature 0 or a seed) are cached, per tenant.

        A request that bypasses the cache still leaves its answer there for later ones.
        """
        req = r.req
        deterministic = req.params.temperature == 0 or req.params.seed is not None
        if not deterministic or req.ensemble is not None:
            return None
        target = req.model or f"{req.strategy.value}:{req.capability}"
        material = [r.principal.tenant, target, list(req.messages), _params(req)]
        return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def _cached(self, key: str) -> dict[str, Any] | None:
        entry: dict[str, Any] | None = self.projections.state("cache")["entries"].get(key)
        if entry is None:
            return None
        age = self._clock() - datetime.fromisoformat(entry["recorded_at"]).timestamp()
        return entry if age <= CACHE_TTL_S else None

    async def _from_cache(
        self, r: _Request, key: str, hit: dict[str, Any], on_token: TokenSink | None
    ) -> ProcessResult:
        self._record(r, CacheHit(r.request_id, hit["request_id"], key))
        # A cached answer streams like a live one, word by word.
        text = hit["text"]
        for piece in _pieces(text):
            elapsed = (time.perf_counter() - r.started) * 1000
            if on_token is not None:
                on_token(hit["model"], piece, elapsed)
            self._announce(r, f"tokens:{r.request_id}", {"member": hit["model"], "text": piece})
        latency_ms = round((time.perf_counter() - r.started) * 1000, 3)
        completed = RequestCompleted(
            r.request_id, hit["model"], text, hit["prompt_tokens"], hit["completion_tokens"], 0,
            latency_ms, hit["finish_reason"], None if r.req.model else r.req.strategy.value,
            None, 0, 0, None, 0, True, key, r.principal.tenant, r.req.capability,
        )  # fmt: skip
        position = await self._finish(r, completed)
        return ProcessResult(
            r.request_id, hit["model"], text, hit["prompt_tokens"], hit["completion_tokens"], 0,
            latency_ms, hit["finish_reason"],
            {"strategy": "cache", "chosen": hit["model"], "source": hit["request_id"]},
            (), cached=True, position=position,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Totals:
    prompt_tokens: int
    completion_tokens: int
    cost_pico: int

    @staticmethod
    def of(results: Any) -> _Totals:
        results = list(results)
        return _Totals(
            sum(x.prompt_tokens for x in results),
            sum(x.completion_tokens for x in results),
            sum(x.cost_pico for x in results),
        )


def _params(req: ProcessRequest) -> dict[str, Any]:
    p = req.params
    return {
        "max_tokens": p.max_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "stop": list(p.stop),
        "seed": p.seed,
        "logprobs": p.logprobs,
        "response_format": dict(p.response_format) if p.response_format else None,
    }


def has_images(messages: Sequence[dict[str, Any]]) -> bool:
    """Whether any message carries an image part."""
    return any(
        isinstance(part, dict) and part.get("type") == "image_url"
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words) if w or i == 0]
