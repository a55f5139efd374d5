"""The model routes end to end: a real server, a gateway, fake upstreams with their own prices,
answers and failures, and the log that every answer must be on.

/models, /models/capabilities, /process, /orchestrate, /feedback, /insights/generate,
/performance, /orchestration/performance, /dashboard (with ?consistent=true) and
/orchestration/recommendations.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from api.auth import Role
from atom_actors.cost import to_usd
from atom_actors.events import BudgetSet
from eventstore import EventStore, NewEvent, StreamAppend
from tests.api.conftest import (
    ANSWER,
    DISSENT,
    INSIGHT,
    Fleet,
    StartGateway,
    insight_reply,
)
from tests.atom_actors.conftest import network_spec
from tests.fakes.faults import Behaviour, Fault
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.text import logprob, tokenize

PROCESS = "/api/advanced-ai/process"
ORCHESTRATE = "/api/advanced-ai/orchestrate"
FEEDBACK = "/api/advanced-ai/feedback"
INSIGHTS = "/api/advanced-ai/insights/generate"
MODELS = "/api/advanced-ai/models"

# The prices of the fleet, USD per million tokens (in, out).
PRICES = {"cheap": (0.5, 1.0), "mid": (3.0, 15.0), "dear": (30.0, 60.0), "analyst": (1.0, 2.0)}


def _cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    price_in, price_out = PRICES[model]
    pico = prompt_tokens * round(price_in * 1e6) + completion_tokens * round(price_out * 1e6)
    return to_usd(pico)


def _types(fleet: Fleet, request_id: str) -> list[str]:
    return [e.type for e in fleet.events(request_id)]


def _received(store: EventStore) -> list[Any]:
    return [e for e in store.read_all() if e.type == "RequestReceived"]


async def _fall_behind(store: EventStore, events: int = 30_000) -> None:
    """Commit a pile of unrelated events, so the live projections have a while to fold."""
    parts = [
        StreamAppend(f"filler-{i}", [NewEvent("FillerWritten", {"n": n}) for n in range(100)])
        for i in range(events // 100)
    ]
    await asyncio.to_thread(store.append_batch, parts)


# ------------------------------------------------------------------------------------ /models


async def test_models_lists_the_catalog_with_prices_availability_and_filters(
    fleet: Fleet,
) -> None:
    status, body = await fleet.get(MODELS)
    assert status == 200
    assert [m["name"] for m in body["models"]] == ["cheap", "mid", "dear", "analyst"]
    cheap = body["models"][0]
    assert cheap == {
        "name": "cheap",
        "provider": "openai",
        "model": "cheap",
        "capabilities": sorted(cheap["capabilities"]),
        "input_usd_per_mtok": 0.5,
        "output_usd_per_mtok": 1.0,
        "context_window": 8192,
        "max_concurrency": 64,
        "max_queue": 256,
        "in_flight": 0,
        "queued": 0,
        "peak_queued": 0,
        "available": True,
        "unavailable_reason": None,
        "circuit": "closed",
        "quality": 0.5,
        "quality_evidence": 0,
        "calls": 0,
        "latency_p50_ms": None,
        "ttft_p50_ms": None,
        "tokens_per_s": None,
    }
    assert len(cheap["capabilities"]) == 10
    assert {m["name"]: m["quality"] for m in body["models"]} == {
        "cheap": 0.5, "mid": 0.7, "dear": 0.9, "analyst": 0.6,
    }  # fmt: skip

    status, body = await fleet.get(MODELS + "?capability=business_analysis")
    assert [m["name"] for m in body["models"]] == ["cheap", "dear", "analyst"]
    status, body = await fleet.get(MODELS + "?capability=reasoning")
    assert [m["name"] for m in body["models"]] == ["cheap", "mid", "dear"]
    status, body = await fleet.get(MODELS + "?capability=telepathy")
    assert status == 400
    assert body["error"]["field"] == "capability"

    # Once called, a model shows what the log observed of it.
    status, _ = await fleet.post(PROCESS, {"model": "mid", "prompt": "hi"})
    assert status == 200
    status, body = await fleet.get(MODELS + "?consistent=true")
    mid = body["models"][1]
    assert mid["calls"] == 1
    assert mid["latency_p50_ms"] > 0 and mid["ttft_p50_ms"] > 0 and mid["tokens_per_s"] > 0


async def test_a_model_without_credentials_is_listed_unavailable_and_never_called(
    start_gateway: StartGateway, fleet_upstream: FakeOpenAI
) -> None:
    specs = [
        network_spec("keyed", fleet_upstream.base_url),
        network_spec("keyless", fleet_upstream.base_url, api_key_env="ATOM_TEST_NO_SUCH_KEY"),
    ]
    api = await start_gateway(specs)
    key = api.keys[Role.USER]
    _, body, _ = await api.call("GET", MODELS, key=key)
    available = {m["name"]: (m["available"], m["unavailable_reason"]) for m in body["models"]}
    assert available["keyed"] == (True, None)
    assert available["keyless"][0] is False
    assert "ATOM_TEST_NO_SUCH_KEY" in available["keyless"][1]
    _, caps, _ = await api.call("GET", MODELS + "/capabilities", key=key)
    rows = {r["model"]: r["available"] for r in caps["capabilities"]["text_generation"]}
    assert rows == {"keyed": True, "keyless": False}

    status, error, _ = await api.call("POST", PROCESS, key=key,
                                      json={"model": "keyless", "prompt": "hi"})  # fmt: skip
    assert status == 503
    assert error["error"]["type"] == "unavailable"
    assert "keyless: unavailable" in error["error"]["message"]
    status, answer, _ = await api.call("POST", ORCHESTRATE, key=key,
                                       json={"prompt": "hi", "strategy": "cost_first"})  # fmt: skip
    assert (status, answer["model"]) == (200, "keyed")
    assert {"model": "keyless", "reason": available["keyless"][1].join(["unavailable: ", ""])} in (
        answer["route"]["excluded"]
    )
    _, dashboard, _ = await api.call("GET", "/api/advanced-ai/dashboard", key=key)
    assert dashboard["health"] == {"keyed": "closed", "keyless": "unavailable"}
    assert all(r.body["model"] == "keyed" for r in fleet_upstream.requests)


async def test_repeated_failures_open_the_circuit_and_the_router_says_so(fleet: Fleet) -> None:
    # 401 is not retried: each request is one failed call, and five in a row open the circuit.
    fleet.upstream.fail(Fault.http_error(401), model="cheap", times=5)
    for _ in range(5):
        status, error = await fleet.post(PROCESS, {"model": "cheap", "prompt": "hi"})
        assert (status, error["error"]["type"]) == (502, "upstream_failed")
    for _ in range(100):
        _, body = await fleet.get(MODELS)
        if body["models"][0]["circuit"] == "open":
            break
        await asyncio.sleep(0.05)
    assert body["models"][0]["circuit"] == "open"
    status, error = await fleet.post(PROCESS, {"model": "cheap", "prompt": "hi"})
    assert status == 503
    assert "cheap: health: circuit open" in error["error"]["message"]
    status, answer = await fleet.post(ORCHESTRATE, {"prompt": "hi", "strategy": "cost_first"})
    assert (status, answer["model"]) == (200, "mid")
    assert {"model": "cheap", "reason": "health: circuit open"} in answer["route"]["excluded"]
    _, dashboard = await fleet.get("/api/advanced-ai/dashboard")
    assert dashboard["health"]["cheap"] == "open"
    _, performance = await fleet.get("/api/advanced-ai/performance?consistent=true")
    assert performance["models"]["cheap"]["errors_by_kind"] == {"auth": 5}
    assert performance["models"]["cheap"]["circuit"] == "open"


async def test_capabilities_rank_models_per_capability_with_typical_cost(fleet: Fleet) -> None:
    status, body = await fleet.get(MODELS + "/capabilities")
    assert status == 200
    assert body["typical_request"] == {"prompt_tokens": 500, "answer_tokens": 300}
    table = body["capabilities"]
    assert [r["model"] for r in table["business_analysis"]] == ["dear", "analyst", "cheap"]
    assert [r["model"] for r in table["reasoning"]] == ["dear", "mid", "cheap"]
    assert table["summarization"][1] == {
        "model": "mid",
        "available": True,
        "quality": 0.7,
        "quality_evidence": 0,
        # Unobserved: 500 ms to the first token, then 300 tokens at 50 tokens/s.
        "expected_latency_ms": 6500.0,
        # 500 x 3 + 300 x 15 USD per million tokens.
        "cost_usd_typical_request": 0.006,
    }


# ----------------------------------------------------------------------------------- /process


async def test_process_a_named_model_answers_with_its_record(fleet: Fleet) -> None:
    status, answer = await fleet.post(PROCESS, {"model": "cheap", "prompt": "hi", "max_tokens": 9})
    assert status == 200
    assert answer["model"] == "cheap"
    assert answer["text"] == ANSWER
    assert answer["finish_reason"] == "stop"
    assert answer["cached"] is False
    assert answer["attempts"] == [{"model": "cheap", "attempt": 1, "outcome": "ok", "message": ""}]
    assert answer["route"]["chosen"] == "cheap"
    assert (answer["ensemble"], answer["members"], answer["agreement"]) == (None, [], None)
    events = fleet.events(answer["request_id"])
    types = [e.type for e in events]
    assert types[:4] == ["RequestReceived", "RouteDecided", "BudgetReserved", "ModelCallStarted"]
    assert types[-3:] == ["ModelCallCompleted", "BudgetSettled", "RequestCompleted"]
    call = events[-3].data
    usage = answer["usage"]
    assert usage == {"prompt_tokens": call["prompt_tokens"],
                     "completion_tokens": call["completion_tokens"]}  # fmt: skip
    assert usage["completion_tokens"] == 4  # "The", " answer", " is", " 42."
    assert answer["cost_usd"] == _cost_usd("cheap", **usage) > 0
    # The answer's position is that of its RequestCompleted, the request's last event.
    assert events[-1].position == answer["position"]
    assert events[-1].data["text"] == ANSWER
    [sent] = fleet.upstream.requests
    assert sent.body["model"] == "cheap"
    assert sent.body["messages"] == [{"role": "user", "content": "hi"}]
    assert sent.body["max_tokens"] == 9

    status, error = await fleet.post(PROCESS, {"model": "nope", "prompt": "hi"})
    assert status == 404
    assert error["error"] == {
        "type": "not_found",
        "message": "no model named 'nope'",
        "field": "model",
    }


async def test_messages_go_upstream_as_given_and_a_prompt_as_one_user_message(
    fleet: Fleet,
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is six times seven?"},
    ]
    status, _ = await fleet.post(PROCESS, {"model": "mid", "messages": messages})
    assert status == 200
    status, _ = await fleet.post(PROCESS, {"model": "mid", "prompt": "Six times seven?"})
    assert status == 200
    first, second = fleet.upstream.requests
    assert first.body["messages"] == messages
    assert second.body["messages"] == [{"role": "user", "content": "Six times seven?"}]

    status, error = await fleet.post(PROCESS, {"model": "mid"})
    assert (status, error["error"]["field"]) == (400, "messages")
    assert len(_received(fleet.store)) == 2


@pytest.mark.parametrize(
    ("body", "chosen"),
    [
        ({"strategy": "cost_first"}, "cheap"),
        ({"strategy": "quality_first"}, "dear"),
        ({"strategy": "cost_first", "capability": "business_analysis", "deny": ["cheap"]},
         "analyst"),
        ({"strategy": "quality_first", "capability": "business_analysis", "deny": ["dear"]},
         "analyst"),
        ({"strategy": "cost_first", "allow": ["mid", "dear"]}, "mid"),
        ({"strategy": "quality_first", "allow": ["cheap", "mid"]}, "mid"),
        ({"strategy": "cost_first", "constraints": {"capability": "summarization",
                                                    "min_quality": 0.6}}, "mid"),
    ],
)  # fmt: skip
async def test_the_router_picks_by_capability_strategy_allow_and_deny(
    fleet: Fleet, body: dict[str, Any], chosen: str
) -> None:
    status, answer = await fleet.post(PROCESS, {"prompt": "hi", **body})
    assert status == 200, answer
    assert answer["model"] == answer["route"]["chosen"] == chosen
    assert answer["route"]["strategy"] == body["strategy"]
    assert [r.body["model"] for r in fleet.upstream.requests] == [chosen]
    excluded = {x["model"]: x["reason"] for x in answer["route"]["excluded"]}
    for name in body.get("deny", []):
        assert excluded[name] == "deny list"
    for name in set(PRICES) - set(body.get("allow", PRICES)):
        assert excluded[name] == "not in allow list"


async def test_constraints_max_cost_and_min_quality_exclude_models_with_reasons(
    fleet: Fleet,
) -> None:
    # "hi" is bounded at 18 prompt tokens (2 bytes, 8 for the message, 8 for the reply's
    # priming): with 16 answer tokens dear reserves 18 x 30 + 16 x 60 = 1500 micro-USD, mid
    # 294 and cheap 25.
    body = {"prompt": "hi", "max_tokens": 16, "strategy": "quality_first"}
    status, answer = await fleet.post(PROCESS, {**body, "constraints": {"max_cost_usd": 0.0005}})
    assert (status, answer["model"]) == (200, "mid")
    [dear] = [x for x in answer["route"]["excluded"] if x["model"] == "dear"]
    assert dear["reason"] == "cost: 0.0015 > max_cost_usd 0.0005"
    assert answer["cost_usd"] <= 0.0005

    body["strategy"] = "cost_first"
    status, answer = await fleet.post(PROCESS, {**body, "constraints": {"min_quality": 0.8}})
    assert (status, answer["model"]) == (200, "dear")
    reasons = {x["model"]: x["reason"] for x in answer["route"]["excluded"]}
    assert reasons["cheap"].startswith("quality: 0.5 < min_quality 0.8")
    assert reasons["mid"].startswith("quality: 0.7 < min_quality 0.8")

    status, error = await fleet.post(
        PROCESS, {**body, "constraints": {"min_quality": 0.8, "max_cost_usd": 0.0005}}
    )
    assert status == 503
    assert error["error"]["type"] == "unavailable"
    assert "dear: cost:" in error["error"]["message"]
    request_id = error["error"]["message"].rsplit("(request ", 1)[1].rstrip(")")
    assert _types(fleet, request_id) == ["RequestReceived", "RouteDecided", "RequestFailed"]


async def test_a_deadline_excludes_slow_models_and_ends_a_hung_call_with_504(
    fleet: Fleet,
) -> None:
    # Unobserved models are expected to take 500 ms + 16 tokens at 50/s = 820 ms.
    body = {"prompt": "hi", "max_tokens": 16, "strategy": "cost_first"}
    status, error = await fleet.post(PROCESS, {**body, "constraints": {"deadline_ms": 600}})
    assert status == 503
    assert "cheap: latency: expected 820 ms > deadline_ms 600" in error["error"]["message"]

    fleet.upstream.fail(Fault.hang(), model="cheap")
    started = asyncio.get_running_loop().time()
    status, error = await fleet.post(
        PROCESS, {**body, "model": "cheap", "constraints": {"deadline_ms": 1000}}
    )
    assert (status, error["error"]["type"]) == (504, "timeout")
    assert "deadline_ms 1000" in error["error"]["message"]
    assert asyncio.get_running_loop().time() - started < 10
    await fleet.upstream.wait_for_disconnects(1)
    failed = [e for e in fleet.store.read_all() if e.type == "RequestFailed"]
    assert [e.data["status"] for e in failed] == [503, 504]


async def test_a_failing_model_is_retried_then_the_next_answers_and_attempts_say_so(
    fleet: Fleet,
) -> None:
    fleet.upstream.fail(Fault.http_error(503), model="cheap")
    status, answer = await fleet.post(PROCESS, {"prompt": "hi", "strategy": "cost_first"})
    assert status == 200
    assert answer["model"] == "mid"
    assert [(a["model"], a["attempt"], a["outcome"]) for a in answer["attempts"]] == [
        ("cheap", 1, "overloaded"),
        ("cheap", 2, "overloaded"),
        ("cheap", 3, "overloaded"),
        ("mid", 1, "ok"),
    ]
    assert answer["route"]["order"][:2] == ["cheap", "mid"]
    types = _types(fleet, answer["request_id"])
    assert types.count("ModelCallFailed") == 3
    assert types.count("BudgetSettled") == 4
    _, strategies = await fleet.get("/api/advanced-ai/orchestration/performance?consistent=true")
    assert strategies["strategies"]["cost_first"]["fallbacks"] == 3

    status, error = await fleet.post(PROCESS, {"model": "cheap", "prompt": "hi"})
    assert (status, error["error"]["type"]) == (502, "upstream_failed")
    assert len(error["error"]["tried"]) == 3
    assert all(t.startswith("cheap#") for t in error["error"]["tried"])


# ------------------------------------------------------------------------------- /orchestrate


async def test_orchestrate_with_each_routing_strategy(fleet: Fleet) -> None:
    body = {"prompt": "hi", "capability": "reasoning", "max_tokens": 16}
    chosen = {}
    # speed_first first: unobserved models are equally fast, so it falls back on the price.
    for strategy in ("speed_first", "quality_first", "cost_first", "capability"):
        status, answer = await fleet.post(ORCHESTRATE, {**body, "strategy": strategy})
        assert status == 200, answer
        assert answer["route"]["strategy"] == strategy
        chosen[strategy] = answer["model"]
    assert chosen == {
        "quality_first": "dear", "cost_first": "cheap", "speed_first": "cheap",
        "capability": "dear",
    }  # fmt: skip
    picks = []
    for _ in range(6):
        status, answer = await fleet.post(ORCHESTRATE, {**body, "strategy": "round_robin"})
        assert status == 200
        picks.append(answer["model"])
    # Round robin rotates through the eligible models in catalog order.
    start = ["cheap", "mid", "dear"].index(picks[0])
    assert picks == [["cheap", "mid", "dear"][(start + i) % 3] for i in range(6)]


async def test_speed_first_learns_which_model_is_fast(
    start_gateway: StartGateway,
) -> None:
    replies = {
        "tortoise": Behaviour(reply=ANSWER, first_token_delay=0.4),
        "hare": Behaviour(reply=ANSWER),
    }
    async with FakeOpenAI(models=replies) as upstream:
        specs = [
            network_spec("tortoise", upstream.base_url, input_usd_per_mtok=0.1,
                         output_usd_per_mtok=0.1),
            network_spec("hare", upstream.base_url, input_usd_per_mtok=5, output_usd_per_mtok=5),
        ]  # fmt: skip
        api = await start_gateway(specs)
        key = api.keys[Role.USER]
        body = {"prompt": "hi", "strategy": "speed_first"}
        _, answer, _ = await api.call("POST", ORCHESTRATE, key=key, json=body)
        # Nothing observed yet: equally fast, so the cheaper one.
        assert answer["model"] == "tortoise"
        _, answer, _ = await api.call("POST", PROCESS, key=key, json={"model": "hare",
                                                                      "prompt": "hi"})  # fmt: skip
        _, models, _ = await api.call("GET", MODELS + "?consistent=true", key=key)
        ttft = {m["name"]: m["ttft_p50_ms"] for m in models["models"]}
        assert ttft["tortoise"] >= 400 > ttft["hare"]
        _, answer, _ = await api.call("POST", ORCHESTRATE, key=key, json=body)
        assert answer["model"] == "hare"
        assert answer["route"]["order"] == ["hare", "tortoise"]


def _sure(text: str) -> float:
    """exp(mean token logprob) of a reply of the fake upstream."""
    tokens = tokenize(text)
    return math.exp(math.fsum(logprob(t) for t in tokens) / len(tokens))


@pytest.mark.parametrize(
    ("method", "agreement", "confidence", "basis"),
    [
        ("majority_vote", 2 / 3, 2 / 3, "vote"),
        # Quality-weighted: (0.5 + 0.7) / (0.5 + 0.7 + 0.9).
        ("weighted_average", 2 / 3, 1.2 / 2.1, "quality"),
        # The members are asked for logprobs: each weighs exp(mean token logprob).
        (
            "confidence_weighted",
            2 / 3,
            2 * _sure(ANSWER) / (2 * _sure(ANSWER) + _sure(DISSENT)),
            "logprobs",
        ),
        ("best_of_n", 2 / 3, 0.5, "agreement"),
        ("consensus", 0.5, 0.5, "agreement"),
    ],
)
async def test_an_ensemble_of_three_models_combines_by_each_method(
    fleet: Fleet, method: str, agreement: float, confidence: float, basis: str
) -> None:
    body = {
        "prompt": "What is six times seven?",
        "answer_format": "number",
        "ensemble": {"method": method, "models": ["cheap", "mid", "dear"]},
    }
    status, answer = await fleet.post(ORCHESTRATE, body)
    assert status == 200, answer
    assert answer["text"] == ANSWER
    assert answer["route"]["strategy"] == "ensemble"
    assert answer["agreement"] == pytest.approx(agreement)
    assert answer["confidence"] == pytest.approx(confidence)
    ensemble = answer["ensemble"]
    assert (ensemble["method"], ensemble["normalized"], ensemble["voters"]) == (method, "42", 3)
    # Of the members that said 42, the highest quality one speaks for the answer.
    assert (ensemble["chosen"], answer["model"]) == ("mid#2", "mid")
    members = {m["member"]: m for m in answer["members"]}
    assert set(members) == {"cheap#1", "mid#2", "dear#3"}
    assert members["dear#3"]["text"] == DISSENT
    assert members["cheap#1"]["text"] == ANSWER
    assert {m["weight_basis"] for m in members.values()} == {basis}
    # Only confidence_weighted asks its members for logprobs; the client, which did not ask,
    # gets none.
    sent = [r.body.get("logprobs", False) for r in fleet.upstream.requests]
    assert sent == [method == "confidence_weighted"] * 3
    # The request costs what its three calls cost, and uses their tokens.
    events = fleet.events(answer["request_id"])
    calls = [e.data for e in events if e.type == "ModelCallCompleted"]
    assert sorted(c["model"] for c in calls) == ["cheap", "dear", "mid"]
    assert answer["cost_usd"] == to_usd(sum(c["cost_pico"] for c in calls))
    assert sum(m["cost_pico"] for m in answer["members"]) == sum(c["cost_pico"] for c in calls)
    assert answer["usage"]["completion_tokens"] == sum(c["completion_tokens"] for c in calls)
    [combined] = [e for e in events if e.type == "EnsembleCombined"]
    assert combined.data["result"]["agreement"] == answer["agreement"]
    # Each member is scored against the combined answer: the dissenter gets 0.
    scores = {e.data["model"]: e.data["score"] for e in events if e.type == "ScoreRecorded"}
    assert scores == {"cheap": 1.0, "mid": 1.0, "dear": 0.0}


async def test_an_ensemble_without_members_takes_the_three_strongest(fleet: Fleet) -> None:
    status, answer = await fleet.post(ORCHESTRATE, {"prompt": "hi", "strategy": "ensemble",
                                                    "capability": "business_analysis"})  # fmt: skip
    assert status == 200
    assert sorted(m["model"] for m in answer["members"]) == ["analyst", "cheap", "dear"]


async def test_an_ensemble_of_samples_of_one_model_varies_the_seed(fleet: Fleet) -> None:
    body = {"prompt": "hi", "seed": 7, "ensemble": {"samples": 3, "models": ["mid"]}}
    status, answer = await fleet.post(ORCHESTRATE, body)
    assert status == 200
    assert [m["member"] for m in answer["members"]] == ["mid#1", "mid#2", "mid#3"]
    assert answer["agreement"] == answer["confidence"] == 1.0
    assert answer["ensemble"]["method"] == "majority_vote"
    assert sorted(r.body["seed"] for r in fleet.upstream.requests) == [7, 8, 9]
    assert answer["cost_usd"] == to_usd(sum(m["cost_pico"] for m in answer["members"]))


async def test_an_ensemble_leaves_a_failed_member_out(fleet: Fleet) -> None:
    fleet.upstream.fail(Fault.http_error(401), model="dear")
    body = {"prompt": "hi", "ensemble": {"models": ["cheap", "mid", "dear"]}}
    status, answer = await fleet.post(ORCHESTRATE, body)
    assert status == 200
    assert (answer["text"], answer["agreement"], answer["ensemble"]["voters"]) == (ANSWER, 1.0, 2)
    [failed] = [m for m in answer["members"] if m["error"]]
    assert (failed["model"], failed["cost_pico"]) == ("dear", 0)


# -------------------------------------------------------------------------------- /feedback


async def test_feedback_is_recorded_and_read_back_consistently(fleet: Fleet) -> None:
    status, answer = await fleet.post(PROCESS, {"model": "mid", "prompt": "hi"})
    assert status == 200
    await _fall_behind(fleet.store)
    status, noted = await fleet.post(
        FEEDBACK, {"request_id": answer["request_id"], "score": 0.25, "comment": "meh"}
    )
    assert status == 201
    assert noted["request_id"] == answer["request_id"]
    score = fleet.events(answer["request_id"])[-1]
    assert score.position == noted["position"]
    assert score.type == "ScoreRecorded"
    assert {k: score.data[k] for k in ("scorer", "subject_kind", "model", "score", "detail")} == {
        "scorer": "feedback", "subject_kind": "request", "model": "mid", "score": 0.25,
        "detail": "meh",
    }  # fmt: skip
    # The caller's last write is the feedback: a consistent read includes it.
    _, performance = await fleet.get("/api/advanced-ai/performance?consistent=true")
    assert performance["models"]["mid"]["quality"]["text_generation"] == {
        "mean_score": 0.25,
        "scores": 1,
    }
    _, models = await fleet.get(MODELS + "?consistent=true")
    mid = models["models"][1]
    # Learned quality: (5 x 0.7 + 0.25) / 6.
    assert (mid["quality"], mid["quality_evidence"]) == (0.625, 1)

    status, error = await fleet.post(FEEDBACK, {"request_id": "no-such", "score": 1})
    assert (status, error["error"]["type"], error["error"]["field"]) == (
        404,
        "not_found",
        "request_id",
    )
    status, error = await fleet.post(FEEDBACK, {"request_id": answer["request_id"], "score": 2})
    assert (status, error["error"]["field"]) == (400, "score")


# ------------------------------------------------------------------------ /insights/generate


async def test_insights_from_several_models_are_combined_with_agreement(fleet: Fleet) -> None:
    paraphrase = {
        **INSIGHT,
        "insight": "Revenue grew fastest in the north region this year",
        "confidence": 0.6,
    }
    other = {
        "insight": "Returns doubled in the south",
        "evidence": "returns 4% to 8%",
        "confidence": 0.5,
        "recommendation": "audit the south warehouse",
    }
    fleet.upstream.models["cheap"] = Behaviour(reply=insight_reply(paraphrase, other))
    body = {
        "question": "Where should we act?",
        "data": {"north": [100, 130], "south": [100, 105]},
        "models": ["analyst", "cheap", "dear"],
        "max_tokens": 256,
    }
    status, result = await fleet.post(INSIGHTS, body)
    assert status == 200, result
    assert result["members"] == ["analyst", "cheap", "dear"]
    # dear answered prose, not the JSON asked for: it is no voter.
    assert result["voters"] == 2
    first, second = result["insights"]
    assert first["agreement"] == 1.0
    assert first["members"] == ["analyst#1", "cheap#2"]
    assert first["confidence"] == 0.7
    assert first["insight"] in (INSIGHT["insight"], paraphrase["insight"])
    assert second == {**other, "agreement": 0.5, "members": ["cheap#2"]}
    events = fleet.events(result["request_id"])
    calls = [e.data for e in events if e.type == "ModelCallCompleted"]
    assert result["cost_usd"] == to_usd(sum(c["cost_pico"] for c in calls))
    # Every member was asked for schema-constrained JSON, with the data in the prompt.
    for sent in fleet.upstream.requests:
        assert sent.body["response_format"]["type"] == "json_schema"
        assert sent.body["response_format"]["json_schema"]["name"] == "insights"
        assert '"north": [\n    100,\n    130\n  ]' in sent.body["messages"][-1]["content"]
    assert events[0].data["endpoint"] == "insights/generate"

    status, result = await fleet.post(
        INSIGHTS, {"question": "q", "text": "t", "samples": 2, "models": ["analyst"]}
    )
    assert status == 200
    assert (result["members"], result["voters"]) == (["analyst", "analyst"], 2)
    [only] = result["insights"]
    assert only == {**INSIGHT, "agreement": 1.0, "members": ["analyst#1", "analyst#2"]}

    status, error = await fleet.post(INSIGHTS, {"question": "q"})
    assert (status, error["error"]["field"]) == (400, "text")


# ------------------------------------------------------- what operators read, and consistency


async def test_performance_orchestration_and_dashboard_reflect_the_requests_made(
    fleet: Fleet,
) -> None:
    fleet.upstream.fail(Fault.http_error(401), model="dear", times=1)
    status, failed = await fleet.post(PROCESS, {"model": "dear", "prompt": "hi"})
    assert status == 502
    answers = []
    for body in (
        {"model": "cheap", "prompt": "one"},
        {"model": "cheap", "prompt": "two"},
        {"prompt": "three", "strategy": "cost_first"},
        {"prompt": "four", "strategy": "quality_first"},
        {"prompt": "five", "ensemble": {"models": ["cheap", "mid", "dear"]}},
    ):
        path = ORCHESTRATE if "ensemble" in body else PROCESS
        status, answer = await fleet.post(path, body)
        assert status == 200, answer
        answers.append(answer)
    calls = [e.data for e in fleet.store.read_all() if e.type == "ModelCallCompleted"]

    _, performance = await fleet.get("/api/advanced-ai/performance?consistent=true")
    models = performance["models"]
    assert {n: m["calls"] for n, m in models.items()} == {"dear": 3, "cheap": 4, "mid": 1}
    assert models["dear"]["failed"] == 1
    assert models["dear"]["errors_by_kind"] == {"auth": 1}
    for name, row in models.items():
        mine = [c for c in calls if c["model"] == name]
        assert row["completed"] == len(mine)
        assert row["prompt_tokens"] == sum(c["prompt_tokens"] for c in mine)
        assert row["completion_tokens"] == sum(c["completion_tokens"] for c in mine)
        assert row["cost_usd"] == to_usd(sum(c["cost_pico"] for c in mine))
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p95"] <= row["latency_ms"]["p99"]
        assert row["circuit"] == "closed"
    # Ensemble members are scored by their word overlap with the combined answer.
    assert models["cheap"]["quality"]["text_generation"] == {"mean_score": 1.0, "scores": 1}
    assert models["dear"]["quality"]["text_generation"] == {"mean_score": 0.6, "scores": 1}

    _, orchestration = await fleet.get("/api/advanced-ai/orchestration/performance?consistent=true")
    strategies = orchestration["strategies"]
    assert {k: (v["requests"], v["failed"]) for k, v in strategies.items()} == {
        "direct": (3, 1),
        "cost_first": (1, 0),
        "quality_first": (1, 0),
        "ensemble:majority_vote": (1, 0),
    }
    assert orchestration["requests"] == {"completed": 5, "failed": 1, "cached": 0}
    assert strategies["ensemble:majority_vote"]["agreement"] == round(2 / 3, 4)
    assert strategies["cost_first"]["cost_usd"] == answers[2]["cost_usd"]
    # cost_first chose cheap; the same tokens at dear's prices are the baseline.
    usage = answers[2]["usage"]
    saved = _cost_usd("dear", **usage) - _cost_usd("cheap", **usage)
    assert strategies["cost_first"]["savings_usd"] == pytest.approx(saved)
    assert strategies["quality_first"]["savings_usd"] == 0

    _, dashboard = await fleet.get("/api/advanced-ai/dashboard?consistent=true")
    assert dashboard["traffic"] == orchestration["requests"]
    assert dashboard["spend_usd"] == to_usd(sum(c["cost_pico"] for c in calls))
    assert [m["model"] for m in dashboard["top_models"]] == ["cheap", "dear", "mid"]
    assert dashboard["top_models"][0]["calls"] == 4
    failed_id = failed["error"]["message"].rsplit("(request ", 1)[1].rstrip(")")
    assert {(f["type"], f["request_id"]) for f in dashboard["recent_failures"]} == {
        ("ModelCallFailed", failed_id),
        ("RequestFailed", failed_id),
    }
    assert dashboard["log_position"] >= answers[-1]["position"]
    assert dashboard["budgets"] == []
    assert set(dashboard["health"].values()) == {"closed"}


async def test_consistent_reads_wait_for_your_last_write(fleet: Fleet) -> None:
    await _fall_behind(fleet.store)
    status, answer = await fleet.post(PROCESS, {"model": "cheap", "prompt": "hi"})
    assert status == 200
    # The projections are still folding the pile: without ?consistent the figures lag.
    _, stale = await fleet.get("/api/advanced-ai/dashboard")
    assert stale["log_position"] < answer["position"]
    assert stale["traffic"]["completed"] == 0
    # With it, the read waits until they include the caller's last answer.
    _, fresh = await fleet.get("/api/advanced-ai/dashboard?consistent=true")
    assert fresh["log_position"] >= answer["position"]
    assert fresh["traffic"]["completed"] == 1
    assert fresh["spend_usd"] == answer["cost_usd"]
    _, performance = await fleet.get("/api/advanced-ai/performance?consistent=true")
    assert performance["models"]["cheap"]["calls"] == 1
    _, orchestration = await fleet.get("/api/advanced-ai/orchestration/performance?consistent=1")
    assert orchestration["strategies"]["direct"]["requests"] == 1


async def test_the_dashboard_shows_budgets_against_spend(fleet: Fleet) -> None:
    limit = BudgetSet(scope="global", limit_pico=10_000_000_000, period="total")  # 0.01 USD
    fleet.store.append("budget-global", [limit.new()])
    status, answer = await fleet.post(PROCESS, {"model": "mid", "prompt": "hi", "max_tokens": 16})
    assert status == 200
    operator = fleet.api.keys[Role.OPERATOR]
    _, dashboard = await fleet.get("/api/advanced-ai/dashboard?consistent=true", key=operator)
    assert dashboard["budgets"] == [
        {
            "scope": "global",
            "period": "total",
            "period_start": None,
            "limit_usd": 0.01,
            "spent_usd": answer["cost_usd"],
            "reserved_usd": 0.0,
            "remaining_usd": to_usd(10_000_000_000 - round(answer["cost_usd"] * 1e12)),
        }
    ]
    # The global budget sums every tenant's spend: an operator's figure, not a user's.
    _, mine = await fleet.get("/api/advanced-ai/dashboard?consistent=true")
    assert mine["budgets"] == [] and mine["spend_usd"] == answer["cost_usd"]


async def test_recommendations_rank_models_and_strategies_for_a_task(fleet: Fleet) -> None:
    path = "/api/advanced-ai/orchestration/recommendations"
    viewer = fleet.api.keys[Role.VIEWER]
    task = {"capability": "reasoning", "prompt_tokens": 1000, "answer_tokens": 200}
    status, advice = await fleet.post(path, task, key=viewer)
    assert status == 200
    assert [m["model"] for m in advice["models"]] == ["dear", "mid", "cheap"]
    assert advice["excluded"] == [{"model": "analyst", "reason": "capability: lacks reasoning"}]
    dear = advice["models"][0]
    # 1000 x 30 + 200 x 60 USD per million tokens.
    assert dear["expected_cost_usd"] == pytest.approx(0.042)
    assert advice["recommended"] == advice["strategies"][0]["strategy"]
    assert {s["strategy"] for s in advice["strategies"]} >= {"quality_first", "cost_first"}
    assert advice["reason"]

    # A budget that dear's answer would break leaves it out.
    status, advice = await fleet.post(path, {**task, "budget_usd": 0.01}, key=viewer)
    assert [m["model"] for m in advice["models"]] == ["mid", "cheap"]
    reasons = {x["model"]: x["reason"] for x in advice["excluded"]}
    assert reasons["dear"].startswith("cost:")
    assert all(s["expected_cost_usd"] <= 0.01 for s in advice["strategies"])

    status, advice = await fleet.post(path, {**task, "min_quality": 0.95}, key=viewer)
    assert (status, advice["models"], advice["recommended"]) == (200, [], None)
