"""Which parameters each provider refuses, and routing that never sends one to it."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from atom_actors.parameters import REFUSED, asked, field, refused, without
from atom_actors.providers import CallParams
from atom_actors.snapshot import RouteRequest, RouteSnapshot
from atom_actors.strategies import route
from tests.atom_actors.conftest import route_requests, snapshots

EVERYTHING = CallParams(
    temperature=1.5, top_k=5, seed=1, logprobs=True, top_logprobs=2, presence_penalty=0.1,
    frequency_penalty=0.1, logit_bias={"1": 1.0}, response_format={"type": "json_object"},
    dimensions=8,
)  # fmt: skip


def test_a_plain_call_asks_nothing_a_provider_refuses() -> None:
    assert asked(CallParams(max_tokens=5, temperature=0.7, stop=("x",), user="u")) == frozenset()


def test_every_refusable_parameter_is_seen_and_can_be_left_out() -> None:
    names = asked(EVERYTHING)
    assert names == {name for refusals in REFUSED.values() for name in refusals}
    assert asked(without(EVERYTHING, names)) == frozenset()
    assert without(EVERYTHING, ["seed"]) == replace(EVERYTHING, seed=None)
    assert refused("anthropic", names)[:2] == ("frequency_penalty", "logit_bias")
    assert refused("recorded", names) == ()
    assert field("response_format.json_object") == "response_format"


@given(snapshots(), route_requests(), st.frozensets(st.sampled_from(sorted(asked(EVERYTHING)))))
def test_routing_never_picks_a_model_whose_provider_refuses_a_parameter(
    snapshot: RouteSnapshot, request: RouteRequest, parameters: frozenset[str]
) -> None:
    decision = route(snapshot, replace(request, parameters=parameters))
    providers = {spec.name: spec.provider for spec in snapshot.catalog}
    for candidate in decision.candidates:
        assert refused(providers[candidate.model], parameters) == ()
    for exclusion in decision.excluded:
        if exclusion.reason.startswith("parameter: "):
            assert refused(providers[exclusion.model], parameters)
