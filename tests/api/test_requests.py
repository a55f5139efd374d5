"""GET /requests and /requests/{id}: read from the log, scoped by tenancy like every read."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from api.auth import Role
from atom_actors.trace import load
from tests.api.conftest import Fleet, issue_key

PROCESS = "/api/advanced-ai/process"
REQUESTS = "/api/advanced-ai/requests"


async def _keys(fleet: Fleet, *tenants: str, role: Role = Role.USER) -> list[str]:
    keys = [issue_key(fleet.store, role, tenant=t) for t in tenants]
    ring = fleet.api.services.keys
    async with asyncio.timeout(5):
        while any(ring.find(k) is None for k in keys):
            await asyncio.sleep(0.02)
    return keys


async def _ask(fleet: Fleet, key: str, **body: Any) -> str:
    status, answer = await fleet.post(PROCESS, {"model": "cheap", "prompt": "hi", **body}, key)
    assert status == 200, answer
    request_id: str = answer["request_id"]
    return request_id


async def test_a_tenant_lists_its_own_requests_newest_first_and_an_operator_all(
    fleet: Fleet,
) -> None:
    a, b = await _keys(fleet, "a", "b")
    first, second = await _ask(fleet, a), await _ask(fleet, a, model="mid")
    theirs = await _ask(fleet, b)
    status, page = await fleet.get(REQUESTS, a)
    assert status == 200
    assert [r["request_id"] for r in page["requests"]] == [second, first]
    row = page["requests"][0]
    assert (row["state"], row["model"], row["tenancy"], row["prompt"]) == (
        "completed", "mid", "tenant:a", "hi"
    )  # fmt: skip
    assert row["cost_usd"] > 0 and row["latency_ms"] > 0
    assert page["position"] == fleet.store.head() and page["more_before"] is None
    status, everyone = await fleet.get(REQUESTS, fleet.api.keys[Role.OPERATOR])
    assert [r["request_id"] for r in everyone["requests"]] == [theirs, second, first]
    status, filtered = await fleet.get(f"{REQUESTS}?model=mid&status=completed", a)
    assert [r["request_id"] for r in filtered["requests"]] == [second]
    status, one = await fleet.get(f"{REQUESTS}?limit=1", a)
    assert [r["request_id"] for r in one["requests"]] == [second]


async def test_since_and_before_bound_the_scan(fleet: Fleet) -> None:
    [a] = await _keys(fleet, "a")
    first = await _ask(fleet, a)
    position = fleet.store.head()
    second = await _ask(fleet, a)
    status, page = await fleet.get(f"{REQUESTS}?since={position}", a)
    assert [r["request_id"] for r in page["requests"]] == [second]
    status, older = await fleet.get(f"{REQUESTS}?before={position + 1}", a)
    assert [r["request_id"] for r in older["requests"]] == [first]
    at = fleet.events(second)[0].recorded_at
    status, timed = await fleet.get(f"{REQUESTS}?since={at}", a)
    assert status == 200
    assert [r["request_id"] for r in timed["requests"]] == [second]


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=x", "limit"), ("status=done", "status"),
     ("since=yesterday", "since"), ("before=-1", "before")],
)  # fmt: skip
async def test_bad_parameters_are_400_naming_them(fleet: Fleet, query: str, field: str) -> None:
    status, error = await fleet.get(f"{REQUESTS}?{query}")
    assert status == 400
    assert error["error"]["field"] == field


async def test_a_request_s_story_is_the_replay_trace_and_another_tenant_gets_404(
    fleet: Fleet,
) -> None:
    a, b = await _keys(fleet, "a", "b")
    viewer_a = (await _keys(fleet, "a", role=Role.VIEWER))[0]
    request_id = await _ask(fleet, a, stream=False)
    status, story = await fleet.get(f"{REQUESTS}/{request_id}", viewer_a)
    assert status == 200
    trace = load(fleet.store, request_id, now=0, each_token=True)
    expected = orjson.loads(orjson.dumps(trace))
    assert {k: story[k] for k in expected} == expected
    assert [s["type"] for s in story["steps"]][:3] == [
        "RequestReceived", "RouteDecided", "BudgetReserved"
    ]  # fmt: skip
    assert story["outcome"] == "completed" and story["tenancy"] == "tenant:a"
    assert story["position"] == fleet.events(request_id)[-1].position
    [tokens] = story["tokens"].values()
    assert "".join(text for text, _ in tokens["each"]).strip()
    status, error = await fleet.get(f"{REQUESTS}/{request_id}", b)
    assert (status, error["error"]["type"]) == (404, "not_found")
    status, _ = await fleet.get(f"{REQUESTS}/{request_id}", fleet.api.keys[Role.OPERATOR])
    assert status == 200
