"""Routing: filters exclude models with a reason, then the request's strategy ranks the rest.

Each strategy is a pure function (snapshot, request) -> ranking that ranks every model in the
snapshot's catalog; route() narrows the catalog to the eligible models before it asks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Final

from atom_actors.catalog import ModelSpec
from atom_actors.cost import call_reservation, format_usd, from_usd, output_bound, to_usd
from atom_actors.parameters import refused
from atom_actors.quality import Evidence, estimate, learned_quality
from atom_actors.snapshot import (
    Candidate,
    CascadePlan,
    CascadeRung,
    EnsemblePlan,
    Exclusion,
    Health,
    ModelFigures,
    RouteDecision,
    RouteRequest,
    RouteSnapshot,
    Strategy,
)

# Until a model has been observed its speed is taken to be a typical hosted API's.
TTFT_PRIOR_MS: Final = 500.0
TOKENS_PER_S_PRIOR: Final = 50.0

Ranking = tuple[Candidate, ...]
Ranker = Callable[[RouteSnapshot, RouteRequest], Ranking]


def expected_latency_ms(figures: ModelFigures, max_tokens: int) -> float:
    """ttft_ms + 1000 * max_tokens / tokens_per_s, each observed or else its prior."""
    ttft = TTFT_PRIOR_MS if figures.ttft_ms is None else figures.ttft_ms
    rate = TOKENS_PER_S_PRIOR if figures.tokens_per_s is None else figures.tokens_per_s
    return ttft + 1000.0 * max_tokens / rate


def assess(spec: ModelSpec, snapshot: RouteSnapshot, request: RouteRequest) -> Candidate:
    """The model's expected quality, cost and latency for this request, with a score of 0."""
    figures = snapshot.figures_of(spec.name)
    quality = estimate(spec.quality_prior, figures.quality, request.capability)
    reservation = call_reservation(spec, request.prompt, request.max_tokens)
    return Candidate(
        model=spec.name,
        score=0.0,
        quality=quality.value,
        quality_evidence=quality.evidence,
        expected_cost_usd=to_usd(reservation),
        reservation_pico=reservation,
        expected_latency_ms=expected_latency_ms(figures, output_bound(spec, request.max_tokens)),
    )


def _scored(c: Candidate, score: float) -> Candidate:
    # Routing runs on every request: spelled out, this is a quarter of dataclasses.replace's cost.
    return Candidate(
        c.model,
        score,
        c.quality,
        c.quality_evidence,
        c.expected_cost_usd,
        c.reservation_pico,
        c.expected_latency_ms,
    )


def _ranked(
    candidates: Sequence[Candidate], key: Callable[[Candidate], tuple[float, ...]]
) -> Ranking:
    # The name settles any tie left, so a ranking never depends on catalog order.
    return tuple(sorted(candidates, key=lambda c: (*key(c), c.model)))


def quality_first(snapshot: RouteSnapshot, request: RouteRequest) -> Ranking:
    """Highest learned quality at the capability first; faster, then cheaper, breaks ties."""
    scored = [_scored(c, c.quality) for c in _assess_all(snapshot, request)]
    return _ranked(scored, lambda c: (-c.score, c.expected_latency_ms, c.reservation_pico))


def cost_first(snapshot: RouteSnapshot, request: RouteRequest) -> Ranking:
    """Cheapest reservation for this request first; higher quality breaks ties."""
    scored = [_scored(c, -c.expected_cost_usd) for c in _assess_all(snapshot, request)]
    return _ranked(scored, lambda c: (c.reservation_pico, -c.quality))


def speed_first(snapshot: RouteSnapshot, request: RouteRequest) -> Ranking:
    """Lowest expected latency first; cheaper breaks ties."""
    scored = [_scored(c, -c.expected_latency_ms) for c in _assess_all(snapshot, request)]
    return _ranked(scored, lambda c: (c.expected_latency_ms, c.reservation_pico))


def capability(snapshot: RouteSnapshot, request: RouteRequest) -> Ranking:
    """Strongest at the capability asked for, judged by scores at it alone; cheaper breaks ties.

    Unlike quality_first it never borrows a model's scores at other capabilities.
    """
    scored = []
    for spec in snapshot.catalog:
        evidence = snapshot.figures_of(spec.name).quality.get(request.capability, Evidence())
        strength = learned_quality(spec.quality_prior, evidence)
        scored.append(_scored(assess(spec, snapshot, request), strength))
    return _ranked(scored, lambda c: (-c.score, c.reservation_pico))


def round_robin(snapshot: RouteSnapshot, request: RouteRequest) -> Ranking:
    """Take turns in catalog order: the counter's model first, then the ones after it."""
    if not snapshot.catalog:
        return ()
    start = snapshot.round_robin_counter % len(snapshot.catalog)
    turn = snapshot.catalog[start:] + snapshot.catalog[:start]
    return tuple(
        _scored(assess(spec, snapshot, request), -float(place)) for place, spec in enumerate(turn)
    )


def ensemble(snapshot: RouteSnapshot, request: RouteRequest) -> Ranking:
    """Members are drawn strongest first, so the ranking is quality_first's."""
    return quality_first(snapshot, request)


def cascade(snapshot: RouteSnapshot, request: RouteRequest) -> Ranking:
    """The ladder climbs from the cheapest, so the ranking is cost_first's."""
    return cost_first(snapshot, request)


STRATEGIES: Final[Mapping[Strategy, Ranker]] = MappingProxyType(
    {
        Strategy.ROUND_ROBIN: round_robin,
        Strategy.QUALITY_FIRST: quality_first,
        Strategy.COST_FIRST: cost_first,
        Strategy.SPEED_FIRST: speed_first,
        Strategy.CAPABILITY: capability,
        Strategy.ENSEMBLE: ensemble,
        Strategy.CASCADE: cascade,
    }
)


def _assess_all(snapshot: RouteSnapshot, request: RouteRequest) -> list[Candidate]:
    return [assess(spec, snapshot, request) for spec in snapshot.catalog]


def exclusion_reason(spec: ModelSpec, snapshot: RouteSnapshot, request: RouteRequest) -> str | None:
    """Why this model may not serve the request, or None; route() checks the budget after."""
    name = spec.name
    if name in request.deny:
        return "deny list"
    if request.allow is not None and name not in request.allow:
        return "not in allow list"
    if name in snapshot.unavailable:
        return f"unavailable: {snapshot.unavailable[name]}"
    if request.capability not in spec.capabilities:
        return f"capability: lacks {request.capability}"
    if request.needs and not request.needs <= spec.capabilities:
        return f"capability: lacks {', '.join(sorted(request.needs - spec.capabilities))}"
    if request.parameters and (names := refused(spec.provider, request.parameters)):
        return f"parameter: {', '.join(names)} not supported by {spec.provider}"
    needed = request.prompt.estimate + output_bound(spec, request.max_tokens)
    if needed > spec.context_window:
        return f"context: needs {needed} > {spec.context_window}"
    if snapshot.health_of(name) is Health.OPEN:
        return "health: circuit open"
    if request.min_quality is None and request.max_cost_usd is None and request.deadline_ms is None:
        return None
    expected = assess(spec, snapshot, request)
    if request.min_quality is not None and expected.quality < request.min_quality:
        return f"quality: {expected.quality:.4g} < min_quality {request.min_quality:g}"
    # The reservation is the most the call can cost, so a max_cost_usd it fits is a guarantee.
    if request.max_cost_usd is not None and expected.reservation_pico > from_usd(
        request.max_cost_usd
    ):
        return (
            f"cost: {format_usd(expected.expected_cost_usd)}"
            f" > max_cost_usd {format_usd(request.max_cost_usd)}"
        )
    if request.deadline_ms is not None and expected.expected_latency_ms > request.deadline_ms:
        return (
            f"latency: expected {expected.expected_latency_ms:.0f} ms"
            f" > deadline_ms {request.deadline_ms:g}"
        )
    return None


def route(snapshot: RouteSnapshot, request: RouteRequest) -> RouteDecision:
    """Filter the catalog, rank what is left with the request's strategy, and say why."""
    rank = STRATEGIES[request.strategy]
    reasons: dict[str, str] = {}
    passing: list[ModelSpec] = []
    for spec in snapshot.catalog:
        reason = exclusion_reason(spec, snapshot, request)
        if reason is None:
            passing.append(spec)
        else:
            reasons[spec.name] = reason
    headroom = None if snapshot.headroom_usd is None else from_usd(snapshot.headroom_usd)
    affordable: list[ModelSpec] = []
    for spec in passing:
        reservation = call_reservation(spec, request.prompt, request.max_tokens)
        if headroom is not None and reservation > headroom:
            reasons[spec.name] = (
                f"budget: reservation {format_usd(to_usd(reservation))}"
                f" > headroom {format_usd(to_usd(headroom))}"
            )
        else:
            affordable.append(spec)
    eligible = snapshot if not reasons else replace(snapshot, catalog=tuple(affordable))
    candidates = rank(eligible, request)
    excluded = [Exclusion(s.name, reasons[s.name]) for s in snapshot.catalog if s.name in reasons]
    if request.strategy is Strategy.ENSEMBLE:
        known = {spec.name for spec in snapshot.catalog}
        excluded += [
            Exclusion(m, "unknown model") for m in request.ensemble.members if m not in known
        ]

    if not candidates:
        reason = "no eligible model"
        if headroom is not None and any(r.startswith("budget:") for r in reasons.values()):
            reason += f"; none of the rest fits the headroom {format_usd(to_usd(headroom))} USD"
        return RouteDecision(request.strategy, (), tuple(excluded), reason)

    if request.strategy is Strategy.ENSEMBLE:
        plan, note = _plan_ensemble(candidates, request, headroom)
        # Members first, so that the decision's choice is one of them.
        members = set(plan.members)
        candidates = tuple(sorted(candidates, key=lambda c: c.model not in members))
        reason = f"ensemble: {plan.method.value} over {', '.join(plan.members) or 'no model'}"
        return RouteDecision(
            request.strategy, candidates, tuple(excluded), reason + note, ensemble=plan
        )

    if request.strategy is Strategy.CASCADE:
        ladder, note = plan_cascade(candidates, request, headroom)
        climbed = [m for rung in ladder.rungs for m in dict.fromkeys(rung.models)]
        place = {m: i for i, m in enumerate(climbed)}
        # The ladder first, in the order it climbs, so that the decision's choice is rung 1's.
        candidates = tuple(sorted(candidates, key=lambda c: place.get(c.model, len(place))))
        steps = " then ".join("+".join(rung.models) for rung in ladder.rungs) or "no model"
        return RouteDecision(
            request.strategy,
            candidates,
            tuple(excluded),
            f"cascade: {steps}{note}",
            cascade=ladder,
        )

    chosen = candidates[0]
    reason = _why(request, snapshot, chosen, len(candidates))
    if len(affordable) < len(passing):
        before_budget = rank(replace(snapshot, catalog=tuple(passing)), request)
        ahead = []
        for candidate in before_budget:
            if candidate.model == chosen.model:
                break
            if candidate.model in reasons:
                ahead.append(f"{candidate.model} ({reasons[candidate.model]})")
        if ahead:
            reason += f"; over budget ahead of it: {', '.join(ahead)}"
    next_counter = (
        snapshot.round_robin_counter + 1 if request.strategy is Strategy.ROUND_ROBIN else None
    )
    return RouteDecision(request.strategy, candidates, tuple(excluded), reason, next_counter)


def _why(request: RouteRequest, snapshot: RouteSnapshot, chosen: Candidate, eligible: int) -> str:
    model = chosen.model
    match request.strategy:
        case Strategy.QUALITY_FIRST:
            return (
                f"quality_first: {model} has the highest quality at {request.capability},"
                f" {chosen.quality:.3g} from {chosen.quality_evidence} scores"
            )
        case Strategy.COST_FIRST:
            return (
                f"cost_first: {model} is the cheapest,"
                f" reservation {format_usd(chosen.expected_cost_usd)} USD"
            )
        case Strategy.SPEED_FIRST:
            return (
                f"speed_first: {model} is the fastest, expected {chosen.expected_latency_ms:.0f} ms"
            )
        case Strategy.CAPABILITY:
            return (
                f"capability: {model} is the strongest at {request.capability}, {chosen.score:.3g}"
            )
        case _:
            return (
                f"round_robin: counter {snapshot.round_robin_counter} picks {model}"
                f" of {eligible} eligible"
            )


def _plan_ensemble(
    candidates: Ranking, request: RouteRequest, headroom_pico: int | None
) -> tuple[EnsemblePlan, str]:
    """Members strongest first while their reservations fit together; and a note on who didn't.

    The headroom and max_cost_usd bound the ensemble's total, as they bound a single call.
    """
    spec = request.ensemble
    by_name = {c.model: c for c in candidates}
    named = [by_name[m] for m in dict.fromkeys(spec.members) if m in by_name]
    if spec.samples > 1:
        model = spec.members[0] if spec.members else candidates[0].model
        pool = [by_name[model]] * spec.samples if model in by_name else []
        wanted = spec.samples
    elif spec.members:
        pool, wanted = named, len(named)
    else:
        pool, wanted = list(candidates), spec.size
    limits = [headroom_pico] if headroom_pico is not None else []
    if request.max_cost_usd is not None:
        limits.append(from_usd(request.max_cost_usd))
    limit = min(limits, default=None)
    members: list[str] = []
    left_out: list[str] = []
    total = 0
    for candidate in pool:
        if len(members) == wanted:
            break
        if limit is not None and total + candidate.reservation_pico > limit:
            left_out.append(candidate.model)
            continue
        members.append(candidate.model)
        total += candidate.reservation_pico
    note = ""
    if left_out and limit is not None:
        note = (
            f"; left out, the ensemble's reservations would exceed"
            f" {format_usd(to_usd(limit))} USD: {', '.join(left_out)}"
        )
    named_out = [m for m in dict.fromkeys(spec.members) if m not in by_name]
    if named_out:
        note += f"; named but not eligible: {', '.join(named_out)}"
    return EnsemblePlan(spec.method, tuple(members), total), note


def plan_cascade(
    candidates: Ranking, request: RouteRequest, headroom_pico: int | None
) -> tuple[CascadePlan, str]:
    """The ladder over candidates ranked cheapest first, and a note on who was left off.

    Rung 1 is the `first` cheapest models (or `samples` calls of the cheapest). Each later rung
    is the next dearer model whose learned quality is above every rung's before it: a dearer
    model no stronger than one already asked would add cost and promise nothing. The whole
    ladder's reservations together fit the headroom and max_cost_usd, so climbing to the top
    never overspends; a rung that would not fit is left off and named.
    """
    spec = request.cascade
    limits = [headroom_pico] if headroom_pico is not None else []
    if request.max_cost_usd is not None:
        limits.append(from_usd(request.max_cost_usd))
    limit = min(limits, default=None)
    total = 0
    left_out: list[str] = []

    def fits(reservation: int) -> bool:
        return limit is None or total + reservation <= limit

    first = [candidates[0]] * spec.samples if spec.samples > 1 else list(candidates[: spec.first])
    rung_one: list[Candidate] = []
    for candidate in first:
        if fits(candidate.reservation_pico):
            rung_one.append(candidate)
            total += candidate.reservation_pico
        else:
            left_out.append(candidate.model)
    rungs: list[CascadeRung] = []
    best = -1.0
    if rung_one:
        rungs.append(_rung(rung_one))
        best = max(c.quality for c in rung_one)
    asked = {c.model for c in first}
    for candidate in candidates:
        if spec.steps is not None and len(rungs) >= spec.steps:
            break
        if candidate.model in asked or candidate.quality <= best:
            continue
        if not fits(candidate.reservation_pico):
            left_out.append(candidate.model)
            continue
        rungs.append(_rung([candidate]))
        total += candidate.reservation_pico
        best = candidate.quality
    note = ""
    if left_out and limit is not None:
        note = (
            f"; left off, the ladder's reservations would exceed"
            f" {format_usd(to_usd(limit))} USD: {', '.join(dict.fromkeys(left_out))}"
        )
    return CascadePlan(tuple(rungs)), note


def _rung(members: Sequence[Candidate]) -> CascadeRung:
    return CascadeRung(tuple(c.model for c in members), sum(c.reservation_pico for c in members))
