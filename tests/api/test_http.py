"""The HTTP contract on a real server: auth matrix, error shapes and statuses, limits, docs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from api.auth import Role
from api.ratelimit import Rate
from api.routes import ROUTES
from api.services import Limits
from tests.api.conftest import Api, StartApi, error_type

PROMPT = {"role": "user", "content": "hi"}
# (method, path, minimum role, JSON body that passes validation, statuses of a permitted call)
GUARDED = [
    ("GET", "/api/advanced-ai/streaming/status", Role.VIEWER, None, {200}),
    ("POST", "/api/advanced-ai/auth/session", Role.VIEWER, {}, {200}),
    # Made with a key, not a session's token: there is no session to end.
    ("DELETE", "/api/advanced-ai/auth/session", Role.VIEWER, None, {400}),
    ("GET", "/api/advanced-ai/openapi.json", Role.VIEWER, None, {200}),
    ("GET", "/metrics", Role.OPERATOR, None, {200}),
    ("POST", "/api/advanced-ai/streaming/events", Role.OPERATOR, {"topic": "t", "payload": {}},
     {202}),
    ("GET", "/api/advanced-ai/models", Role.VIEWER, None, {200}),
    ("GET", "/api/advanced-ai/models/capabilities", Role.VIEWER, None, {200}),
    ("POST", "/api/advanced-ai/process", Role.USER, {"model": "m", "prompt": "hi",
                                                     "max_tokens": 4}, {200}),
    ("POST", "/api/advanced-ai/orchestrate", Role.USER, {"prompt": "hi", "max_tokens": 4,
                                                         "strategy": "cost_first"}, {200}),
    ("POST", "/api/advanced-ai/feedback", Role.USER, {"request_id": "none", "score": 0.5},
     {404}),
    ("POST", "/api/advanced-ai/insights/generate", Role.USER,
     {"question": "q", "text": "t", "models": ["m"], "max_tokens": 16}, {200}),
    ("GET", "/api/advanced-ai/performance", Role.VIEWER, None, {200}),
    ("GET", "/api/advanced-ai/dashboard", Role.VIEWER, None, {200}),
    ("GET", "/api/advanced-ai/orchestration/performance", Role.VIEWER, None, {200}),
    ("GET", "/api/advanced-ai/timeseries", Role.VIEWER, None, {200}),
    ("GET", "/api/advanced-ai/requests", Role.VIEWER, None, {200}),
    ("GET", "/api/advanced-ai/requests/{request_id}", Role.VIEWER, None, {404}),
    ("GET", "/api/advanced-ai/log", Role.VIEWER, None, {200}),
    ("POST", "/api/advanced-ai/log/verify", Role.OPERATOR, None, {200}),
    ("POST", "/api/advanced-ai/orchestration/recommendations", Role.VIEWER,
     {"capability": "text_generation"}, {200}),
    ("POST", "/v1/chat/completions", Role.USER, {"model": "m", "messages": [PROMPT],
                                                 "max_tokens": 4}, {200}),
    ("GET", "/v1/models", Role.VIEWER, None, {200}),
    ("POST", "/v1/embeddings", Role.USER, {"model": "m", "input": "hi"}, {200}),
    ("POST", "/v1/messages", Role.USER, {"model": "m", "max_tokens": 4, "messages": [PROMPT]},
     {200}),
    ("POST", "/v1/messages/count_tokens", Role.USER, {"model": "m", "messages": [PROMPT]},
     {200}),
    ("GET", "/api/advanced-ai/admin/budgets", Role.ADMIN, None, {200}),
    ("GET", "/api/advanced-ai/admin/budgets/{scope}", Role.ADMIN, None, {404}),
    ("PUT", "/api/advanced-ai/admin/budgets/{scope}", Role.ADMIN, {"usd": 5}, {200}),
    ("DELETE", "/api/advanced-ai/admin/budgets/{scope}", Role.ADMIN, None, {404}),
    ("GET", "/api/advanced-ai/admin/keys", Role.ADMIN, None, {200}),
    ("POST", "/api/advanced-ai/admin/keys", Role.ADMIN, {"role": "viewer"}, {201}),
    ("DELETE", "/api/advanced-ai/admin/keys/{key_id}", Role.ADMIN, None, {404}),
]  # fmt: skip
# What the matrix puts in a path's parameters: a tenant without a budget, a key never issued,
# a request never made.
EXAMPLES = {"{scope}": "tenant:acme", "{key_id}": "0123456789abcdef", "{request_id}": "none"}


def test_the_matrix_covers_every_guarded_route_but_the_websocket() -> None:
    declared = {(r.method, r.path, r.role) for r in ROUTES if r.role and not r.websocket}
    assert declared == {(m, p, role) for m, p, role, _, _ in GUARDED}


@pytest.mark.parametrize(("method", "path", "needed", "body", "ok"), GUARDED)
async def test_auth_matrix(
    full_api: Api,
    method: str,
    path: str,
    needed: Role,
    body: dict[str, object] | None,
    ok: set[int],
) -> None:
    api = full_api
    for parameter, example in EXAMPLES.items():
        path = path.replace(parameter, example)
    status, error, response = await api.call(method, path, json=body)
    assert status == 401
    assert error_type(path, error) == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await api.call(method, path, key="atom_unknown", json=body))[0] == 401
    status, error, _ = await api.call(method, path, key=api.revoked, json=body)
    assert (status, error["error"]["message"]) == (401, "this API key has been revoked")
    for role, key in api.keys.items():
        status, answer, _ = await api.call(method, path, key=key, json=body)
        if role >= needed:
            assert status in ok, answer
        else:
            assert status == 403
            assert error_type(path, answer) == "forbidden"
            assert needed.label in answer["error"]["message"]


async def test_the_key_is_also_accepted_as_x_api_key(api: Api) -> None:
    headers = {"X-API-Key": api.keys[Role.VIEWER]}
    status, _, _ = await api.call("GET", "/api/advanced-ai/streaming/status", headers=headers)
    assert status == 200
    headers = {"Authorization": f"Basic {api.keys[Role.VIEWER]}"}
    status, _, _ = await api.call("GET", "/api/advanced-ai/streaming/status", headers=headers)
    assert status == 401


async def test_health_needs_no_key_and_checks_the_log(api: Api) -> None:
    status, health, _ = await api.call("GET", "/api/advanced-ai/health")
    assert status == 200
    assert health["ready"] is True
    assert health["checks"]["log"] == {"ok": True, "detail": "writable"}
    assert health["models"] == {}


async def test_a_body_over_the_limit_is_413_json(start_api: StartApi) -> None:
    api = await start_api(Limits(max_body_bytes=1000))
    body = {"topic": "t", "payload": {"x": "y" * 2000}}
    status, error, _ = await api.call(
        "POST", "/api/advanced-ai/streaming/events", key=api.keys[Role.ADMIN], json=body
    )
    assert status == 413
    assert error["error"]["type"] == "too_large"


async def test_a_chunked_body_over_the_limit_is_413_json(start_api: StartApi) -> None:
    api = await start_api(Limits(max_body_bytes=1000))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 100

    status, error, _ = await api.call(
        "POST", "/api/advanced-ai/streaming/events", key=api.keys[Role.ADMIN], data=chunks()
    )
    assert (status, error["error"]["type"]) == (413, "too_large")


@pytest.mark.parametrize(
    ("body", "message", "field"),
    [
        (b'{"topic": "t", "payload": {', "the body is not valid JSON: ", None),
        (b'{"topic": "t"}', "payload: required", "payload"),
        (b'{"topic": "", "payload": {}}', "topic: must be at least 1 characters", "topic"),
        (b'{"topic": "t", "payload": []}', "payload: expected object", "payload"),
        (b'{"topic": "t", "payload": {}, "x": 1}', "x: unknown field", "x"),
        (b"[1, 2]", "body: expected object", None),
    ],
)
async def test_malformed_bodies_are_400_naming_the_problem(
    api: Api, body: bytes, message: str, field: str | None
) -> None:
    status, error, _ = await api.call(
        "POST", "/api/advanced-ai/streaming/events", key=api.keys[Role.ADMIN], data=body
    )
    assert status == 400
    assert error["error"]["type"] == "bad_request"
    assert error["error"]["message"].startswith(message)
    assert error["error"].get("field") == field


async def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    status, error, _ = await api.call("GET", "/api/advanced-ai/nothing-here")
    assert (status, error["error"]["type"]) == (404, "not_found")
    status, error, response = await api.call("DELETE", "/api/advanced-ai/health")
    assert (status, error["error"]["type"]) == (405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"


async def test_rate_limit_is_per_key_with_retry_after(start_api: StartApi) -> None:
    api = await start_api(Limits(rate=Rate(per_minute=3)))
    path = "/api/advanced-ai/streaming/status"
    statuses = [(await api.call("GET", path, key=api.keys[Role.VIEWER]))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, error, response = await api.call("GET", path, key=api.keys[Role.VIEWER])
    assert status == 429
    # A token comes back every 20 s at 3 a minute.
    assert response.headers["Retry-After"] == "20"
    assert error["error"] == {
        "type": "rate_limited",
        "message": "rate limit of 3 requests per minute reached",
        "retry_after": 20,
    }
    assert (await api.call("GET", path, key=api.keys[Role.USER]))[0] == 200


async def test_openapi_describes_every_route(api: Api) -> None:
    status, doc, _ = await api.call(
        "GET", "/api/advanced-ai/openapi.json", key=api.keys[Role.VIEWER]
    )
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert listed == {(r.method, r.path) for r in ROUTES}
    events = doc["paths"]["/api/advanced-ai/streaming/events"]["post"]
    assert events["x-min-role"] == "operator"
    assert events["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "topic",
        "payload",
    ]
    assert set(events["responses"]) == {"202", "400", "401", "403", "413", "429", "503"}
    health = doc["paths"]["/api/advanced-ai/health"]["get"]
    assert health["security"] == []
    ws = doc["paths"]["/api/advanced-ai/streaming/ws"]["get"]
    assert {"sessionToken": []} in ws["security"]
    assert "4008" in ws["description"]


async def test_requests_in_parallel_all_pass(api: Api) -> None:
    path = "/api/advanced-ai/streaming/status"
    results = await asyncio.gather(
        *(api.call("GET", path, key=api.keys[Role.VIEWER]) for _ in range(50))
    )
    assert [status for status, _, _ in results] == [200] * 50
