"""Budgets over HTTP: concurrent requests on a key with a small budget never overspend it."""

from __future__ import annotations

import asyncio
from typing import Any

from api.auth import Role
from api.budgets import Budget, budget_stream
from api.services import Limits
from atom_actors.cost import to_usd
from atom_actors.events import BudgetSet
from eventstore import EventStore
from tests.api.conftest import StartGateway, bearer, issue_key
from tests.atom_actors.conftest import network_spec
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI

PROCESS = "/api/advanced-ai/process"
# 100 tokens, so that a call costs nearly what it reserves.
WORDS = " ".join(["word"] * 100)
# "hi" is estimated at 8 prompt tokens, and counted as 4 by the fake upstream; at 0.5 and 1 USD
# per million tokens, a call with max_tokens 100 reserves 8 x 0.5 + 100 x 1 = 104 micro-USD
# and costs 4 x 0.5 + 100 x 1 = 102.
RESERVATION_PICO = 104_000_000
COST_PICO = 102_000_000
LIMIT_PICO = 1_000_000_000  # 0.001 USD: nine calls fit, the tenth would not
BODY = {"model": "meter", "prompt": "hi", "max_tokens": 100}


def _spent_in(store: EventStore, scope: str) -> int:
    return sum(
        e.data["actual_pico"]
        for e in store.read_all()
        if e.type == "BudgetSettled" and scope in e.data["scopes"]
    )


async def test_fifty_concurrent_requests_never_overspend_a_keys_budget(
    start_gateway: StartGateway, store: EventStore
) -> None:
    key = issue_key(store, Role.USER, budget=Budget(to_usd(LIMIT_PICO)))
    other = issue_key(store, Role.USER)
    # The first token waits, so that all fifty are routed before any call is settled.
    replies = {"meter": Behaviour(reply=WORDS, first_token_delay=0.2)}
    async with FakeOpenAI(models=replies) as upstream:
        spec = network_spec("meter", upstream.base_url, input_usd_per_mtok=0.5,
                            output_usd_per_mtok=1.0, max_concurrency=64)  # fmt: skip
        api = await start_gateway([spec], Limits(rate=None))
        record = api.services.keys.find(key)
        assert record is not None
        scope = f"key:{record.key_id}"

        results = await asyncio.gather(
            *(api.call("POST", PROCESS, key=key, json=BODY) for _ in range(50))
        )
        statuses = [status for status, _, _ in results]
        assert set(statuses) <= {200, 402}, statuses
        answered = [body for status, body, _ in results if status == 200]
        refused = [body for status, body, _ in results if status == 402]
        # Exactly as many as fit: nine reservations of 104 fit in 1000, a tenth does not.
        assert len(answered) == 9
        assert all(a["cost_usd"] == to_usd(COST_PICO) for a in answered)
        for error in refused:
            assert error["error"]["type"] == "budget_exceeded"
            assert "budget" in error["error"]["message"]

        spent = _spent_in(store, scope)
        assert spent == len(answered) * COST_PICO <= LIMIT_PICO
        log = list(store.read_all())
        failed = [e for e in log if e.type == "RequestFailed"]
        assert len(failed) == len(refused)
        assert {e.data["status"] for e in failed} == {402}
        rejected = [e for e in log if e.type == "BudgetRejected"]
        assert len(rejected) == len(refused)
        assert {e.data["scope"] for e in rejected} == {scope}
        assert all(e.data["headroom_pico"] < RESERVATION_PICO for e in rejected)
        # Every reservation was settled: nothing is left counting against the key.
        reserved = {e.data["reservation_id"] for e in log if e.type == "BudgetReserved"}
        settled = {e.data["reservation_id"] for e in log if e.type == "BudgetSettled"}
        assert reserved == settled and len(reserved) == 9

        _, dashboard, _ = await api.call(
            "GET", "/api/advanced-ai/dashboard?consistent=true", key=key
        )
        [row] = [b for b in dashboard["budgets"] if b["scope"] == scope]
        assert row == {
            "scope": scope,
            "period": "total",
            "period_start": None,
            "limit_usd": to_usd(LIMIT_PICO),
            "spent_usd": to_usd(spent),
            "reserved_usd": 0.0,
            "remaining_usd": to_usd(LIMIT_PICO - spent),
        }

        # Another key spends from its own (unlimited) budget.
        status, _, _ = await api.call("POST", PROCESS, key=other, json=BODY)
        assert status == 200
        # A streamed request over budget is refused before its stream opens: 402, in JSON.
        async with api.http.post(
            api.url + PROCESS, headers=bearer(key), json={**BODY, "stream": True}
        ) as response:
            assert response.status == 402
            assert (await response.json())["error"]["type"] == "budget_exceeded"
        # Nothing more was spent on the key.
        assert _spent_in(store, scope) == spent


async def test_raising_a_keys_budget_lets_it_spend_again(
    start_gateway: StartGateway, store: EventStore
) -> None:
    key = issue_key(store, Role.USER, budget=Budget(to_usd(150_000_000)))
    async with FakeOpenAI(models={"meter": Behaviour(reply=WORDS)}) as upstream:
        spec = network_spec("meter", upstream.base_url, input_usd_per_mtok=0.5,
                            output_usd_per_mtok=1.0)  # fmt: skip
        api = await start_gateway([spec], Limits(rate=None))
        record = api.services.keys.find(key)
        assert record is not None

        async def post() -> tuple[int, Any]:
            status, body, _ = await api.call("POST", PROCESS, key=key, json=BODY)
            return status, body

        assert (await post())[0] == 200
        status, error = await post()
        assert (status, error["error"]["type"]) == (402, "budget_exceeded")
        raised = BudgetSet(scope=f"key:{record.key_id}", limit_pico=1_000_000_000, period="total")
        [position] = await store.append_async(budget_stream(f"key:{record.key_id}"), [raised.new()])
        assert await api.services.projections.wait_until(position, timeout=10)
        assert (await post())[0] == 200
        assert _spent_in(store, f"key:{record.key_id}") == 2 * COST_PICO
