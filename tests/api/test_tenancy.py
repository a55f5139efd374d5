"""Tenants sealed: what one tenant's keys can read holds nothing of another's traffic.

Two tenancies (a tenant, and a key without one) send traffic carrying marker strings; then
every GET route, the WebSocket and the errors seen by a third tenant's keys are scanned for
their markers, request ids, key ids and tenant name. None may appear, while an operator's
reads show them all (so the scan can find what it looks for).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson

from api.auth import Role
from api.keys import issue
from api.routes import ROUTES
from tests.api.conftest import Fleet, bearer
from tests.fakes.faults import Behaviour, Fault

PROCESS = "/api/advanced-ai/process"
BETA, GAMMA, ALPHA = "BETA-7f3c-SECRET", "GAMMA-91ab-SECRET", "ALPHA-2d4e-OWN"
TENANT_B = "tenant-b-x9q"


def _key(fleet: Fleet, role: Role, **options: Any) -> tuple[str, str]:
    issued = issue(role, f"test {role.label}", **options)
    fleet.store.append_batch(issued.parts)
    return issued.key, issued.key_id


async def _traffic(fleet: Fleet, key: str, marker: str) -> list[str]:
    """Every kind of request a tenant makes, each carrying its marker; their request ids."""
    ids = []
    plain = {"model": "cheap", "prompt": f"{marker} plain", "max_tokens": 32}
    cached = {**plain, "prompt": f"{marker} same", "temperature": 0}
    for body in (plain, cached, cached, {**plain, "stream": True}):
        async with fleet.api.http.post(
            fleet.api.url + PROCESS, json=body, headers=bearer(key)
        ) as response:
            text = await response.text()
        ids += re.findall(r'"request_id": ?"([0-9a-f-]{36})"', text)
    status, answer = await fleet.post(
        "/api/advanced-ai/orchestrate",
        {"prompt": f"{marker} vote", "ensemble": {"models": ["cheap", "mid"]}, "max_tokens": 32},
        key=key,
    )
    assert status == 200
    ids.append(answer["request_id"])
    fleet.upstream.fail(Fault.http_error(400), model="dear", times=1)
    status, failed = await fleet.post(
        PROCESS, {"model": "dear", "prompt": f"{marker} fails", "max_tokens": 8}, key=key
    )
    assert status == 502
    ids += re.findall(r"\(request ([0-9a-f-]{36})\)", failed["error"]["message"])
    status, _ = await fleet.post(
        "/api/advanced-ai/feedback", {"request_id": ids[0], "score": 0.3}, key=key
    )
    assert status == 201
    status, chat = await fleet.post(
        "/v1/chat/completions",
        {"model": "cheap", "messages": [{"role": "user", "content": f"{marker} chat"}]},
        key=key,
    )
    assert status == 200
    ids.append(chat["id"].removeprefix("chatcmpl-"))
    assert len(ids) == 7
    return ids


async def _seen(fleet: Fleet, keys: list[str], others: list[str], key_ids: list[str]) -> str:
    """Everything these keys read: every GET route, advice, and errors about others' data."""
    seen = []
    examples = {
        "{scope}": [f"tenant:{TENANT_B}", *(f"key:{k}" for k in key_ids)],
        "{key_id}": key_ids,
        "{id}": others,
        "{request_id}": others,
    }
    for route in ROUTES:
        if route.method != "GET" or route.websocket:
            continue
        paths = [route.path]
        for name, values in examples.items():
            if name in route.path:
                paths = [p.replace(name, v) for p in paths for v in values]
        for path in paths:
            for key in keys:
                status, body, _ = await fleet.api.call("GET", path + "?consistent=true", key=key)
                assert status != 500, (path, body)
                seen.append(orjson.dumps(body).decode() if not isinstance(body, str) else body)
    for key in keys:
        for other in others:
            status, body = await fleet.post(
                "/api/advanced-ai/feedback", {"request_id": other, "score": 1.0}, key=key
            )
            seen.append(orjson.dumps(body).decode())
            assert status in (403, 404)
        status, body = await fleet.post(
            "/api/advanced-ai/orchestration/recommendations",
            {"capability": "text_generation", "budget_usd": 0.0001},
            key=key,
        )
        seen.append(orjson.dumps(body).decode())
    return "\n".join(seen)


async def test_a_tenants_keys_see_nothing_of_another_tenancys_traffic(fleet: Fleet) -> None:
    fleet.upstream.models.update(cheap=Behaviour(), mid=Behaviour())  # echo the prompt
    api, admin = fleet.api, fleet.api.keys[Role.ADMIN]
    user_a, _ = _key(fleet, Role.USER, tenant="alpha")
    viewer_a, _ = _key(fleet, Role.VIEWER, tenant="alpha")
    user_b, key_b = _key(fleet, Role.USER, tenant=TENANT_B)
    solo, key_c = _key(fleet, Role.USER)
    for scope in (f"tenant:{TENANT_B}", f"key:{key_b}", f"key:{key_c}", "tenant:alpha"):
        status, _, _ = await api.call(
            "PUT", f"/api/advanced-ai/admin/budgets/{scope}", key=admin, json={"usd": 5}
        )
        assert status == 200

    watched: list[str] = []
    async with api.http.ws_connect(api.ws_url(), headers=bearer(viewer_a)) as ws:
        await ws.send_json({"op": "subscribe", "topics": ["requests"]})
        assert (await ws.receive_json(timeout=5))["type"] == "subscribed"

        async def watch() -> None:
            async for message in ws:
                event = orjson.loads(message.data)
                if event["type"] != "event":
                    continue  # the replies to A's own commands echo only what A sent
                watched.append(message.data)
                if event.get("topic") == "requests" and event["payload"]["state"] == "received":
                    topic = f"tokens:{event['payload']['request_id']}"
                    await ws.send_json({"op": "subscribe", "topics": [topic]})

        watching = asyncio.create_task(watch())
        theirs = await _traffic(fleet, user_b, BETA) + await _traffic(fleet, solo, GAMMA)
        ours = await _traffic(fleet, user_a, ALPHA)
        # Guessing another tenancy's topic gives nothing either.
        await ws.send_json({"op": "subscribe", "topics": [f"tokens:{theirs[3]}"]})
        await fleet.get("/api/advanced-ai/dashboard?consistent=true", key=user_a)
        await asyncio.sleep(0.3)
        watching.cancel()

    secrets = [BETA, GAMMA, TENANT_B, key_b, key_c, *theirs]
    seen = await _seen(fleet, [viewer_a, user_a], theirs, [key_b, key_c])
    seen += "\n" + "\n".join(watched)
    leaked = [s for s in secrets if s in seen]
    assert leaked == []
    # Tenant A's own traffic is there to see, in the same reads.
    assert ALPHA in "\n".join(watched) and any(i in seen for i in ours)
    # An operator's reads hold the others' traffic: the scan finds what it looks for.
    everything = await _seen(fleet, [api.keys[Role.OPERATOR]], [], [key_b])
    assert theirs[-2] in everything and f"key:{key_b}" in everything
