"""Several `atom serve` nodes on one PostgreSQL log serve as one gateway: keys, budgets (exact
across nodes), figures and history are one, whichever node a request reaches."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from eventstore import open_reader
from tests.chaos import (
    API,
    REPLY,
    Received,
    Server,
    ask,
    auth,
    budget_reserved,
    kill,
    start_server,
    stop,
    write_config,
)
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI

NODES = 3


async def _nodes(config: Path, url: str, count: int = NODES) -> list[Server]:
    """`count` nodes on the log at `url`; the first makes the admin key, the others find it."""
    first = await start_server(config, "full", "--db", url)
    rest = await asyncio.gather(
        *(start_server(config, "full", "--db", url) for _ in range(count - 1))
    )
    return [first, *rest]


async def _post(http: aiohttp.ClientSession, url: str, path: str, key: str, body: Any) -> Any:
    async with http.post(url + API + path, json=body, headers=auth(key)) as r:
        return r.status, await r.json()


async def _put(http: aiohttp.ClientSession, url: str, path: str, key: str, body: Any) -> int:
    async with http.put(url + API + path, json=body, headers=auth(key)) as r:
        return r.status


def _spent(url: str) -> tuple[dict[str, int], set[str], set[str]]:
    """Settled pico-dollars per scope, and the requests received and ended, from the log."""
    spent: dict[str, int] = defaultdict(int)
    received, ended = set(), set()
    with open_reader(url) as reader:
        for e in reader.read_all():
            if e.type == "BudgetSettled":
                for scope in e.data["scopes"]:
                    spent[scope] += e.data["actual_pico"]
            elif e.type == "RequestReceived":
                received.add(e.data["request_id"])
            elif e.type in ("RequestCompleted", "RequestFailed"):
                ended.add(e.data["request_id"])
    return spent, received, ended


async def _one(http: aiohttp.ClientSession, node: str, key: str, n: int, cancel: bool) -> int:
    """One request of four kinds; a cancelled one is a stream whose client leaves early."""
    if not cancel:
        answer = await ask(http, node, key, n)
        return 200 if answer is not None else 0
    body = {"model": "o", "prompt": f"request {n}", "stream": True}
    async with http.post(node + API + "/process", json=body, headers=auth(key)) as r:
        if r.status != 200:
            return r.status
        await r.content.readline()  # the first token's line: then the client is gone
    return 499


async def test_three_nodes_never_overspend_a_keys_or_a_tenants_budget(
    postgres_url: str, tmp_path: Path
) -> None:
    async with FakeOpenAI() as openai, FakeAnthropic() as anthropic:
        for fake in (openai, anthropic):
            fake.default = Behaviour(reply=REPLY, tokens_per_second=200)
        config = write_config(tmp_path, openai, anthropic)
        nodes = await _nodes(config, postgres_url)
        admin = nodes[0].admin_key
        assert admin is not None
        try:
            async with aiohttp.ClientSession() as http:
                # Keys made on one node, budgets set on another: in force on all at once.
                made = []
                for body in ({"role": "user", "tenant": "acme", "budget_usd": 0.004},
                             {"role": "user", "tenant": "acme"}):  # fmt: skip
                    status, key = await _post(http, nodes[0].url, "/admin/keys", admin, body)
                    assert status == 201
                    made.append(key)
                keys = [key["key"] for key in made]
                status = await _put(
                    http, nodes[1].url, "/admin/budgets/tenant:acme", admin, {"usd": 0.006}
                )
                assert status == 200
                limits = {"tenant:acme": 6_000_000_000, f"key:{made[0]['key_id']}": 4_000_000_000}
                rng = random.Random(7)
                statuses = await asyncio.gather(
                    *(
                        _one(http, nodes[n % NODES].url, keys[n % 2], n, rng.random() < 0.2)
                        for n in range(150)
                    )
                )
        finally:
            for node in nodes:
                await stop(node)
    assert statuses.count(402) > 0 and statuses.count(200) > 0, statuses
    spent, received, ended = _spent(postgres_url)
    for scope, limit in limits.items():
        assert 0 < spent[scope] <= limit, (scope, spent[scope], limit)
    assert ended == received, "every request's story ends on the record"


async def test_a_request_that_fits_is_never_refused_for_a_stale_view(
    postgres_url: str, tmp_path: Path
) -> None:
    async with FakeOpenAI() as openai, FakeAnthropic() as anthropic:
        openai.default = Behaviour(reply="four words long reply")
        config = write_config(tmp_path, openai, anthropic)
        nodes = await _nodes(config, postgres_url)
        admin = nodes[0].admin_key
        assert admin is not None
        body = {"model": "o", "prompt": "fits", "max_tokens": 8}
        try:
            async with aiohttp.ClientSession() as http:
                for i in range(9):
                    first, second = nodes[i % NODES], nodes[(i + 1) % NODES]
                    status, made = await _post(
                        http, first.url, "/admin/keys", admin, {"role": "user"}
                    )
                    assert status == 201
                    scope = f"key:{made['key_id']}"
                    # Learn what one such request reserves and costs, on a free scope.
                    status, probe = await _post(http, first.url, "/process", admin, body)
                    assert status == 200
                    reserved, cost = _reservation_of(postgres_url, probe["request_id"])
                    # Room for one reservation, and for a second once the first has settled.
                    limit = cost + reserved + reserved // 4
                    assert limit < 2 * reserved
                    usd = limit / 1e12
                    assert await _put(http, second.url, f"/admin/budgets/{scope}", admin,
                                      {"usd": usd}) == 200  # fmt: skip
                    status, _ = await _post(http, first.url, "/process", made["key"], body)
                    assert status == 200
                    # At once, on another node: it fits only with the first's settlement seen.
                    status, answer = await _post(http, second.url, "/process", made["key"], body)
                    assert status == 200, answer
                    status, refused = await _post(http, first.url, "/process", made["key"], body)
                    assert status == 402, refused
        finally:
            for node in nodes:
                await stop(node)


def _reservation_of(url: str, request_id: str) -> tuple[int, int]:
    with open_reader(url) as reader:
        stream = reader.read_stream(f"request-{request_id}")
    [settled] = [e.data for e in stream if e.type == "BudgetSettled"]
    return settled["reserved_pico"], settled["actual_pico"]


async def test_a_node_killed_under_load_loses_nothing_and_the_others_go_on(
    postgres_url: str, tmp_path: Path
) -> None:
    ttl_s = 4.0
    async with FakeOpenAI() as openai, FakeAnthropic() as anthropic:
        for fake in (openai, anthropic):
            fake.default = Behaviour(reply=REPLY, tokens_per_second=150)
        config = write_config(tmp_path, openai, anthropic, ttl_s=ttl_s)
        nodes = await _nodes(config, postgres_url)
        admin = nodes[0].admin_key
        assert admin is not None
        received: list[Received] = []
        after_kill: list[Received] = []
        try:
            async with aiohttp.ClientSession() as http:
                assert await _put(http, nodes[0].url, "/admin/budgets/global", admin,
                                  {"usd": 100}) == 200  # fmt: skip
                killed = asyncio.Event()
                stop_at = time.monotonic() + 4.0

                async def client(i: int) -> None:
                    node = nodes[i % NODES]
                    n = i * 10_000
                    while time.monotonic() < stop_at:
                        n += 1
                        answer = await ask(http, node.url, admin, n)
                        if answer is not None:
                            (after_kill if killed.is_set() else received).append(answer)
                        elif node is nodes[1]:
                            await asyncio.sleep(0.05)

                clients = [asyncio.create_task(client(i)) for i in range(24)]
                await asyncio.sleep(1.2)
                await kill(nodes[1])
                killed.set()
                await asyncio.gather(*clients)
                # The dead node's reservations count on the others until they expire.
                counted = await budget_reserved(nodes[0].url, admin, "global")
                await asyncio.sleep(ttl_s + 0.5)
                released = await budget_reserved(nodes[2].url, admin, "global")
        finally:
            for node in (nodes[0], nodes[2]):
                await stop(node)
    assert after_kill, "the other nodes went on serving"
    with open_reader(postgres_url) as reader:
        events = list(reader.read_all())
    completed = {
        e.data["request_id"]: e.data["text"] for e in events if e.type == "RequestCompleted"
    }
    lost = [a for a in received + after_kill if completed.get(a.request_id) != a.text]
    assert lost == []
    settled = {e.data["reservation_id"] for e in events if e.type == "BudgetSettled"}
    orphans = [
        e.data
        for e in events
        if e.type == "BudgetReserved" and e.data["reservation_id"] not in settled
    ]
    assert orphans, "the kill left calls unsettled"
    assert counted == sum(o["amount_pico"] for o in orphans) / 1e12 > 0
    assert released == 0.0
