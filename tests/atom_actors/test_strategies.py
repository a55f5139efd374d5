from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atom_actors.catalog import ModelSpec
from atom_actors.cost import PromptSize, output_bound, reservation_pico, to_usd
from atom_actors.quality import Evidence
from atom_actors.snapshot import (
    CascadeSpec,
    EnsembleMethod,
    EnsembleSpec,
    Health,
    ModelFigures,
    RouteRequest,
    RouteSnapshot,
    Strategy,
)
from atom_actors.strategies import (
    STRATEGIES,
    TOKENS_PER_S_PRIOR,
    TTFT_PRIOR_MS,
    expected_latency_ms,
    route,
)
from tests.atom_actors.conftest import DEFAULT_CATALOG, route_requests, snapshots, spec

REASON = re.compile(
    r"deny list|not in allow list|unavailable: .+|capability: lacks \w+|context: needs \d+ > \d+"
    r"|health: circuit open|quality: \S+ < min_quality \S+|cost: \S+ > max_cost_usd \S+"
    r"|latency: expected \d+ ms > deadline_ms \S+|budget: reservation \S+ > headroom \S+"
)


BASE = RouteRequest("reasoning", PromptSize.of_tokens(500), max_tokens=500)


def request(strategy: Strategy = Strategy.QUALITY_FIRST, **fields: Any) -> RouteRequest:
    return replace(BASE, strategy=strategy, **fields)


def scores(value: float, n: int) -> Evidence:
    return Evidence(value * n, n)


def reasons(snapshot: RouteSnapshot, req: RouteRequest) -> dict[str, str]:
    return {e.model: e.reason for e in route(snapshot, req).excluded}


# Properties over random catalogs, figures, budgets and requests.


@settings(max_examples=80)
@given(snapshots(), route_requests())
def test_every_model_is_a_candidate_or_excluded_with_a_reason(
    snapshot: RouteSnapshot, req: RouteRequest
) -> None:
    decision = route(snapshot, req)
    chosen = set(decision.order)
    excluded = {e.model for e in decision.excluded}
    assert not chosen & excluded
    assert chosen | excluded == {m.name for m in snapshot.catalog}
    assert len(decision.order) == len(chosen)
    for exclusion in decision.excluded:
        assert REASON.fullmatch(exclusion.reason), exclusion.reason
    if decision.ensemble:
        assert set(decision.ensemble.members) <= chosen
    assert decision.reason
    assert json.loads(json.dumps(decision.to_dict())) == decision.to_dict()


@settings(max_examples=80)
@given(snapshots(), route_requests())
def test_every_strategy_respects_the_constraints(
    snapshot: RouteSnapshot, req: RouteRequest
) -> None:
    for candidate in route(snapshot, req).candidates:
        model = next(m for m in snapshot.catalog if m.name == candidate.model)
        assert req.capability in model.capabilities
        assert req.prompt.estimate + output_bound(model, req.max_tokens) <= model.context_window
        assert snapshot.health_of(model.name) is not Health.OPEN
        assert model.name not in req.deny and model.name not in snapshot.unavailable
        assert req.allow is None or model.name in req.allow
        assert req.min_quality is None or candidate.quality >= req.min_quality
        assert req.max_cost_usd is None or candidate.expected_cost_usd <= req.max_cost_usd
        assert snapshot.headroom_usd is None or candidate.expected_cost_usd <= snapshot.headroom_usd
        assert req.deadline_ms is None or candidate.expected_latency_ms <= req.deadline_ms


@settings(max_examples=80)
@given(snapshots(), route_requests(Strategy.COST_FIRST))
def test_cost_first_never_picks_a_dearer_eligible_model(
    snapshot: RouteSnapshot, req: RouteRequest
) -> None:
    decision = route(snapshot, req)
    if decision.chosen:
        cheapest = min(c.reservation_pico for c in decision.candidates)
        assert decision.chosen.reservation_pico == cheapest


@settings(max_examples=50)
@given(snapshots(), route_requests(), st.data())
def test_only_round_robin_depends_on_catalog_order(
    snapshot: RouteSnapshot, req: RouteRequest, data: st.DataObject
) -> None:
    shuffled = replace(snapshot, catalog=tuple(data.draw(st.permutations(snapshot.catalog))))
    if req.strategy is not Strategy.ROUND_ROBIN:
        assert route(shuffled, req).order == route(snapshot, req).order


@settings(max_examples=50)
@given(snapshots(), st.integers(1, 60))
def test_round_robin_stays_within_one_call_of_even(snapshot: RouteSnapshot, calls: int) -> None:
    capability = sorted(snapshot.catalog[0].capabilities)[0]
    req = RouteRequest(
        capability, PromptSize.of_tokens(0), max_tokens=1, strategy=Strategy.ROUND_ROBIN
    )
    picks: Counter[str] = Counter()
    for _ in range(calls):
        decision = route(snapshot, req)
        if decision.chosen is None:
            return
        picks[decision.chosen.model] += 1
        assert decision.next_counter == snapshot.round_robin_counter + 1
        snapshot = replace(snapshot, round_robin_counter=decision.next_counter)
    counts = [picks[model] for model in decision.order]
    assert max(counts) - min(counts) <= 1


# The filters, one by one, on the default catalog.


def test_models_without_the_capability_are_excluded(catalog: tuple[ModelSpec, ...]) -> None:
    found = reasons(RouteSnapshot(catalog), request(capability="code_generation"))
    assert found == {"gemma-3-270m": "capability: lacks code_generation"}


def test_a_request_must_fit_the_context_window(catalog: tuple[ModelSpec, ...]) -> None:
    found = reasons(
        RouteSnapshot(catalog), request(prompt=PromptSize.of_tokens(8000), max_tokens=1000)
    )
    assert found["gpt-4"] == "context: needs 9000 > 8192"


def test_open_circuits_are_excluded_and_half_open_ones_kept(catalog: tuple[ModelSpec, ...]) -> None:
    health = {"claude-3-opus": Health.OPEN, "gpt-4": Health.HALF_OPEN}
    decision = route(RouteSnapshot(catalog, health=health), request())
    assert {e.model: e.reason for e in decision.excluded} == {
        "claude-3-opus": "health: circuit open",
        "gemma-3-270m": "capability: lacks reasoning",
    }
    assert "gpt-4" in decision.order


def test_allow_and_deny_lists(catalog: tuple[ModelSpec, ...]) -> None:
    req = request(allow=frozenset({"gpt-4", "claude-3-haiku"}), deny=frozenset({"gpt-4"}))
    decision = route(RouteSnapshot(catalog), req)
    assert decision.order == ("claude-3-haiku",)
    assert reasons(RouteSnapshot(catalog), req)["gpt-4"] == "deny list"
    assert reasons(RouteSnapshot(catalog), req)["claude-3-opus"] == "not in allow list"


def test_unavailable_models_are_excluded_with_why(catalog: tuple[ModelSpec, ...]) -> None:
    snapshot = RouteSnapshot(catalog, unavailable={"gpt-4": "OPENAI_API_KEY not set"})
    assert reasons(snapshot, request())["gpt-4"] == "unavailable: OPENAI_API_KEY not set"


def test_min_quality_and_max_cost_hold_for_every_strategy(catalog: tuple[ModelSpec, ...]) -> None:
    for strategy in Strategy:
        decision = route(
            RouteSnapshot(catalog), request(strategy, min_quality=0.8, max_cost_usd=0.03)
        )
        assert decision.order == ("gpt-4-turbo",)
        assert {e.model: e.reason for e in decision.excluded} == {
            "gpt-4": "cost: 0.045 > max_cost_usd 0.03",
            "claude-3-opus": "cost: 0.045 > max_cost_usd 0.03",
            "claude-3-sonnet": "quality: 0.78 < min_quality 0.8",
            "claude-3-haiku": "quality: 0.65 < min_quality 0.8",
            "gemma-3-270m": "capability: lacks reasoning",
        }


def test_the_deadline_excludes_models_expected_to_be_too_slow(
    catalog: tuple[ModelSpec, ...],
) -> None:
    figures = {"claude-3-opus": ModelFigures(ttft_ms=2000, tokens_per_s=10)}
    found = reasons(RouteSnapshot(catalog, figures=figures), request(deadline_ms=20_000))
    assert found == {
        "claude-3-opus": "latency: expected 52000 ms > deadline_ms 20000",
        "gemma-3-270m": "capability: lacks reasoning",
    }


# The strategies.


def test_quality_first_follows_learned_quality_over_the_prior(
    catalog: tuple[ModelSpec, ...],
) -> None:
    assert route(RouteSnapshot(catalog), request()).order[0] == "claude-3-opus"
    figures = {
        "claude-3-opus": ModelFigures(quality={"reasoning": scores(0.4, 40)}),
        "claude-3-sonnet": ModelFigures(quality={"reasoning": scores(0.95, 40)}),
    }
    decision = route(RouteSnapshot(catalog, figures=figures), request())
    assert decision.order[0] == "claude-3-sonnet"
    assert decision.chosen is not None and decision.chosen.quality_evidence == 40
    assert "claude-3-sonnet" in decision.reason and "40 scores" in decision.reason


def test_quality_first_borrows_scores_at_other_capabilities_and_capability_does_not(
    catalog: tuple[ModelSpec, ...],
) -> None:
    figures = {"claude-3-haiku": ModelFigures(quality={"translation": scores(1.0, 200)})}
    snapshot = RouteSnapshot(catalog, figures=figures)
    assert route(snapshot, request(Strategy.QUALITY_FIRST)).order[0] == "claude-3-haiku"
    assert route(snapshot, request(Strategy.CAPABILITY)).order[0] == "claude-3-opus"
    figures = {"claude-3-haiku": ModelFigures(quality={"reasoning": scores(1.0, 200)})}
    snapshot = RouteSnapshot(catalog, figures=figures)
    assert route(snapshot, request(Strategy.CAPABILITY)).order[0] == "claude-3-haiku"


def test_capability_breaks_ties_by_cost(catalog: tuple[ModelSpec, ...]) -> None:
    decision = route(RouteSnapshot(catalog), request(Strategy.CAPABILITY))
    assert decision.order[1:3] == ("gpt-4-turbo", "gpt-4")


def test_cost_first_picks_the_cheapest_for_this_request(catalog: tuple[ModelSpec, ...]) -> None:
    decision = route(
        RouteSnapshot(catalog), request(Strategy.COST_FIRST, capability="summarization")
    )
    assert decision.order[:2] == ("gemma-3-270m", "claude-3-haiku")
    costs = [c.expected_cost_usd for c in decision.candidates]
    assert costs == sorted(costs)


def test_speed_first_uses_observed_speed_and_priors_until_then(
    catalog: tuple[ModelSpec, ...],
) -> None:
    unobserved = expected_latency_ms(ModelFigures(), 500)
    assert unobserved == TTFT_PRIOR_MS + 1000 * 500 / TOKENS_PER_S_PRIOR
    figures = {
        "gpt-4": ModelFigures(ttft_ms=100, tokens_per_s=400),
        "claude-3-haiku": ModelFigures(ttft_ms=2000, tokens_per_s=20),
    }
    decision = route(RouteSnapshot(catalog, figures=figures), request(Strategy.SPEED_FIRST))
    assert decision.order[0] == "gpt-4"
    assert decision.order[-1] == "claude-3-haiku"
    assert decision.candidates[0].expected_latency_ms < unobserved


def test_round_robin_rotates_in_catalog_order(catalog: tuple[ModelSpec, ...]) -> None:
    eligible = [m.name for m in catalog if "reasoning" in m.capabilities]
    for counter in range(7):
        decision = route(
            RouteSnapshot(catalog, round_robin_counter=counter), request(Strategy.ROUND_ROBIN)
        )
        start = counter % len(eligible)
        assert list(decision.order) == eligible[start:] + eligible[:start]
        assert decision.next_counter == counter + 1


def test_only_round_robin_returns_a_counter(catalog: tuple[ModelSpec, ...]) -> None:
    assert route(RouteSnapshot(catalog), request(Strategy.COST_FIRST)).next_counter is None


def test_a_top_pick_over_budget_gives_way_to_one_that_fits(catalog: tuple[ModelSpec, ...]) -> None:
    opus = next(m for m in catalog if m.name == "claude-3-opus")
    headroom = to_usd(reservation_pico(opus, 500, 500)) / 2
    decision = route(RouteSnapshot(catalog, headroom_usd=headroom), request())
    assert decision.chosen is not None
    assert decision.chosen.model != "claude-3-opus"
    assert decision.chosen.expected_cost_usd <= headroom
    found = {e.model: e.reason for e in decision.excluded}
    assert found["claude-3-opus"].startswith("budget: reservation ")
    assert "over budget ahead of it: claude-3-opus (budget: reservation" in decision.reason
    assert not decision.over_budget


def test_nothing_fits_the_budget(catalog: tuple[ModelSpec, ...]) -> None:
    decision = route(RouteSnapshot(catalog, headroom_usd=0.0), request())
    assert decision.chosen is None
    assert decision.over_budget
    assert "headroom" in decision.reason
    nothing_capable = route(
        RouteSnapshot(catalog), request(capability="multimodal", allow=frozenset())
    )
    assert nothing_capable.chosen is None and not nothing_capable.over_budget


def test_a_free_model_fits_any_headroom(catalog: tuple[ModelSpec, ...]) -> None:
    decision = route(RouteSnapshot(catalog, headroom_usd=0.0), request(capability="summarization"))
    assert decision.order == ("gemma-3-270m",)


# Ensembles.


def ensemble_request(**fields: Any) -> RouteRequest:
    return request(Strategy.ENSEMBLE, ensemble=EnsembleSpec(**fields))


def test_an_ensemble_defaults_to_a_majority_vote_of_the_three_strongest(
    catalog: tuple[ModelSpec, ...],
) -> None:
    decision = route(RouteSnapshot(catalog), ensemble_request())
    assert decision.ensemble is not None
    assert decision.ensemble.method is EnsembleMethod.MAJORITY_VOTE
    assert set(decision.ensemble.members) == {"claude-3-opus", "gpt-4-turbo", "gpt-4"}
    assert decision.ensemble.reservation_pico == sum(
        c.reservation_pico for c in decision.candidates if c.model in decision.ensemble.members
    )
    assert decision.order[0] in decision.ensemble.members


def test_an_ensemble_of_named_members(catalog: tuple[ModelSpec, ...]) -> None:
    req = ensemble_request(
        method=EnsembleMethod.CONSENSUS, members=("claude-3-haiku", "gemma-3-270m", "gpt-5")
    )
    decision = route(RouteSnapshot(catalog), req)
    assert decision.ensemble is not None
    assert decision.ensemble.members == ("claude-3-haiku",)
    assert decision.ensemble.method is EnsembleMethod.CONSENSUS
    found = {e.model: e.reason for e in decision.excluded}
    assert found["gpt-5"] == "unknown model"
    assert "named but not eligible: gemma-3-270m, gpt-5" in decision.reason
    assert decision.chosen is not None and decision.chosen.model == "claude-3-haiku"


def test_an_ensemble_of_samples_of_one_model(catalog: tuple[ModelSpec, ...]) -> None:
    decision = route(
        RouteSnapshot(catalog), ensemble_request(members=("claude-3-haiku",), samples=5)
    )
    assert decision.ensemble is not None
    assert decision.ensemble.members == ("claude-3-haiku",) * 5
    strongest = route(RouteSnapshot(catalog), ensemble_request(samples=2))
    assert strongest.ensemble is not None
    assert strongest.ensemble.members == ("claude-3-opus",) * 2


def test_an_ensemble_keeps_to_the_budget(catalog: tuple[ModelSpec, ...]) -> None:
    haiku = next(m for m in catalog if m.name == "claude-3-haiku")
    one = reservation_pico(haiku, 500, 500)
    headroom = to_usd(one * 3 + one // 2)
    req = ensemble_request(members=("claude-3-haiku",), samples=5)
    decision = route(RouteSnapshot(catalog, headroom_usd=headroom), req)
    assert decision.ensemble is not None
    assert decision.ensemble.members == ("claude-3-haiku",) * 3
    assert decision.ensemble.reservation_pico <= headroom * 10**12
    assert "left out" in decision.reason


def test_a_member_too_dear_for_the_ensemble_gives_way_to_the_next(
    catalog: tuple[ModelSpec, ...],
) -> None:
    decision = route(RouteSnapshot(catalog, headroom_usd=0.07), ensemble_request())
    assert decision.ensemble is not None
    assert decision.ensemble.members == ("claude-3-opus", "gpt-4-turbo", "claude-3-haiku")
    assert decision.ensemble.reservation_pico <= 0.07 * 10**12
    assert decision.reason.endswith("would exceed 0.07 USD: gpt-4, claude-3-sonnet")


@settings(max_examples=50)
@given(snapshots(), route_requests(Strategy.ENSEMBLE))
def test_an_ensemble_reservation_fits_the_headroom_and_max_cost(
    snapshot: RouteSnapshot, req: RouteRequest
) -> None:
    plan = route(snapshot, req).ensemble
    if plan is not None:
        for limit in (snapshot.headroom_usd, req.max_cost_usd):
            assert limit is None or to_usd(plan.reservation_pico) <= limit


def test_every_strategy_is_registered() -> None:
    assert set(STRATEGIES) == set(Strategy)


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": PromptSize(-1, 0)},
        {"max_tokens": -1},
        {"min_quality": 1.5},
        {"max_cost_usd": -1.0},
        {"deadline_ms": 0.0},
    ],
)
def test_malformed_requests_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        request(**fields)


def test_figures_and_catalogs_are_checked() -> None:
    with pytest.raises(ValueError):
        ModelFigures(tokens_per_s=0)
    with pytest.raises(ValueError):
        RouteSnapshot((spec("a", 1, 1), spec("a", 2, 2)))
    with pytest.raises(ValueError):
        EnsembleSpec(samples=0)


def test_the_decision_is_plain_json(catalog: tuple[ModelSpec, ...]) -> None:
    decision = route(RouteSnapshot(catalog, headroom_usd=0.05), ensemble_request())
    data = json.loads(json.dumps(decision.to_dict()))
    assert decision.ensemble is not None
    assert data["strategy"] == "ensemble"
    assert data["chosen"] == decision.order[0]
    assert data["ensemble"]["members"] == list(decision.ensemble.members)
    assert {e["model"] for e in data["excluded"]} == {e.model for e in decision.excluded}


def test_the_default_catalog_routes_without_data() -> None:
    assert route(RouteSnapshot(DEFAULT_CATALOG), request()).chosen is not None


# The cascade's ladder.


def _ladder(snapshot: RouteSnapshot, req: RouteRequest) -> list[tuple[str, ...]]:
    plan = route(snapshot, req).cascade
    assert plan is not None
    return [rung.models for rung in plan.rungs]


def test_a_cascade_climbs_from_the_cheapest_through_ever_stronger_models(
    catalog: tuple[ModelSpec, ...],
) -> None:
    decision = route(RouteSnapshot(catalog), request(Strategy.CASCADE))
    assert decision.cascade is not None
    # gpt-4 costs what claude-3-opus does and promises less (0.85 against 0.88): left off.
    assert [r.models for r in decision.cascade.rungs] == [
        ("claude-3-haiku",), ("claude-3-sonnet",), ("gpt-4-turbo",), ("claude-3-opus",)
    ]  # fmt: skip
    by_name = {s.name: s for s in catalog}
    assert [r.reservation_pico for r in decision.cascade.rungs] == [
        reservation_pico(by_name[r.models[0]], 500, 500) for r in decision.cascade.rungs
    ]
    assert decision.order[:4] == (
        "claude-3-haiku",
        "claude-3-sonnet",
        "gpt-4-turbo",
        "claude-3-opus",
    )
    assert decision.chosen is not None and decision.chosen.model == "claude-3-haiku"
    assert decision.reason == (
        "cascade: claude-3-haiku then claude-3-sonnet then gpt-4-turbo then claude-3-opus"
    )
    assert decision.to_dict()["cascade"]["rungs"][0] == {
        "models": ["claude-3-haiku"],
        "reservation_pico": reservation_pico(by_name["claude-3-haiku"], 500, 500),
    }


def test_a_cascade_can_start_with_several_cheap_models_or_samples(
    catalog: tuple[ModelSpec, ...],
) -> None:
    snapshot = RouteSnapshot(catalog)
    two = request(Strategy.CASCADE, cascade=CascadeSpec(first=2))
    assert _ladder(snapshot, two) == [
        ("claude-3-haiku", "claude-3-sonnet"), ("gpt-4-turbo",), ("claude-3-opus",)
    ]  # fmt: skip
    three = request(Strategy.CASCADE, cascade=CascadeSpec(samples=3, steps=2))
    assert _ladder(snapshot, three) == [("claude-3-haiku",) * 3, ("claude-3-sonnet",)]


def test_a_cascade_ladder_fits_max_cost_as_a_whole(catalog: tuple[ModelSpec, ...]) -> None:
    decision = route(RouteSnapshot(catalog), request(Strategy.CASCADE, max_cost_usd=0.025))
    assert decision.cascade is not None
    # haiku 0.00075 + sonnet 0.009 leave 0.01525, short of gpt-4-turbo's 0.02.
    assert [r.models for r in decision.cascade.rungs] == [("claude-3-haiku",), ("claude-3-sonnet",)]
    assert decision.cascade.reservation_pico <= 25 * 10**9
    assert decision.reason.endswith(
        "; left off, the ladder's reservations would exceed 0.025 USD: gpt-4-turbo"
    )


# No deadline: a test never asserts timings, and a loaded machine is slow.
@settings(max_examples=80, deadline=None)
@given(snapshots(), route_requests(Strategy.CASCADE))
def test_a_cascade_ladder_climbs_in_cost_and_quality_within_the_limits(
    snapshot: RouteSnapshot, req: RouteRequest
) -> None:
    decision = route(snapshot, req)
    plan = decision.cascade
    if not decision.candidates:
        return
    assert plan is not None and plan.rungs
    assert decision.chosen is not None and decision.chosen.model == plan.rungs[0].models[0]
    by_model = {c.model: c for c in decision.candidates}
    strengths = [max(by_model[m].quality for m in rung.models) for rung in plan.rungs]
    assert all(a < b for a, b in pairwise(strengths))
    costs = [by_model[rung.models[-1]].reservation_pico for rung in plan.rungs]
    assert costs == sorted(costs)
    limits = [to_usd(plan.reservation_pico) <= limit for limit in
              (snapshot.headroom_usd, req.max_cost_usd) if limit is not None]  # fmt: skip
    assert all(limits)
