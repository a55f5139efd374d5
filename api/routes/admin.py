"""Admin routes: budgets and keys managed over HTTP, on the log like everything else.

They write the same events as `atom budgets` and `atom keys`, and answer once the server's
projections include the write, so a limit or a key is in force when its answer arrives.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web

from eventstore import WrongExpectedVersion

from ..auth import ROLE_LABELS, Role
from ..budgets import MAX_USD, PERIODS, BadBudget, Budget, budget_stream, cleared, parse_scope
from ..errors import BadRequest, NotFound
from ..keys import UnknownKey, issue, key_stream, revoke
from ..routing import BODY, PRINCIPAL, Route, json_response
from ..services import Services, services_of
from .observability import budget_rows_of

BUDGET: Final = {
    "type": "object",
    "required": ["usd"],
    "additionalProperties": False,
    "properties": {
        "usd": {"type": "number", "minimum": 0, "maximum": MAX_USD},
        "period": {"enum": list(PERIODS)},
    },
}
BUDGET_ROW: Final = {
    "type": "object",
    "required": ["scope", "period", "limit_usd", "spent_usd", "reserved_usd", "remaining_usd"],
    "properties": {
        "scope": {"type": "string"},
        "period": {"enum": list(PERIODS)},
        "period_start": {"type": ["string", "null"]},
        "limit_usd": {"type": "number"},
        "spent_usd": {"type": "number"},
        "reserved_usd": {"type": "number"},
        "remaining_usd": {"type": "number"},
    },
}
NEW_KEY: Final = {
    "type": "object",
    "required": ["role"],
    "additionalProperties": False,
    "properties": {
        "role": {"enum": list(ROLE_LABELS)},
        "name": {"type": "string", "maxLength": 200},
        "tenant": {"type": "string", "minLength": 1, "maxLength": 100},
        "budget_usd": {"type": "number", "minimum": 0, "maximum": MAX_USD},
        "period": {"enum": list(PERIODS)},
    },
}
KEY: Final = {
    "type": "object",
    "required": ["key_id", "role", "name", "tenant", "revoked"],
    "properties": {
        "key_id": {"type": "string"},
        "role": {"type": "string"},
        "name": {"type": "string"},
        "tenant": {"type": ["string", "null"]},
        "revoked": {"type": "boolean"},
    },
}


async def _settled(services: Services, position: int) -> None:
    """Wait until the projections include a write: its answer then holds for every request."""
    await services.projections.wait_until(position, timeout=10)


def _scope(request: web.Request) -> str:
    services = services_of(request)
    try:
        scope = parse_scope(request.match_info["scope"])
    except BadBudget as exc:
        raise BadRequest(str(exc), field="scope") from None
    if scope.startswith("key:") and services.keys.get(scope.removeprefix("key:")) is None:
        raise NotFound(f"no key {scope.removeprefix('key:')!r}")
    return scope


async def list_budgets(request: web.Request) -> web.Response:
    # Every node's spending up to now, not only what this node has folded so far.
    await services_of(request).projections.catch_up(timeout=10)
    return json_response({"budgets": budget_rows_of(request, None)})


async def get_budget(request: web.Request) -> web.Response:
    scope = _scope(request)
    await services_of(request).projections.catch_up(timeout=10)
    rows = budget_rows_of(request, [scope])
    if not rows:
        raise NotFound(f"{scope} has no budget")
    return json_response(rows[0])


async def put_budget(request: web.Request) -> web.Response:
    services, body = services_of(request), request[BODY]
    scope = _scope(request)
    try:
        budget = Budget(body["usd"], body.get("period", "total"))
    except BadBudget as exc:
        raise BadRequest(str(exc), field=exc.field) from None
    by = request[PRINCIPAL].key_id
    [position] = await services.store.append_async(budget_stream(scope), [budget.event(scope, by)])
    await _settled(services, position)
    return json_response(budget_rows_of(request, [scope])[0])


async def delete_budget(request: web.Request) -> web.Response:
    services = services_of(request)
    scope = _scope(request)
    stream = budget_stream(scope)
    for _ in range(3):
        history = await services.store.read_stream_async(stream)
        if not history or history[-1].type != "BudgetSet":
            raise NotFound(f"{scope} has no budget")
        try:
            # Expecting the version read: a limit set meanwhile is not lifted unseen.
            [position] = await services.store.append_async(
                stream, [cleared(scope, request[PRINCIPAL].key_id)], history[-1].stream_version
            )
        except WrongExpectedVersion:
            continue
        await _settled(services, position)
        return json_response({"scope": scope, "cleared": True, "position": position})
    raise BadRequest(f"{scope}'s budget kept changing; try again", field="scope")


def _key(record: Any) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "role": record.role,
        "name": record.name,
        "tenant": record.tenant,
        "revoked": record.revoked,
    }


async def list_keys(request: web.Request) -> web.Response:
    return json_response({"keys": [_key(r) for r in services_of(request).keys.records()]})


async def create_key(request: web.Request) -> web.Response:
    services, body = services_of(request), request[BODY]
    if "period" in body and "budget_usd" not in body:
        raise BadRequest("period goes with budget_usd", field="period")
    budget = None
    if "budget_usd" in body:
        budget = Budget(body["budget_usd"], body.get("period", "total"))
    try:
        issued = issue(
            Role.parse(body["role"]),
            body.get("name", ""),
            tenant=body.get("tenant"),
            budget=budget,
            by=request[PRINCIPAL].key_id,
        )
    except ValueError as exc:
        raise BadRequest(str(exc), field="tenant") from None
    positions = await asyncio.wrap_future(services.store.append_batch_future(issued.parts))
    await _settled(services, positions[-1][-1])
    record = services.keys.get(issued.key_id)
    assert record is not None
    return json_response({**_key(record), "key": issued.key}, status=201)


async def delete_key(request: web.Request) -> web.Response:
    services = services_of(request)
    key_id = request.match_info["key_id"]
    try:
        revoked = await asyncio.to_thread(
            revoke, services.store, key_id, by=request[PRINCIPAL].key_id
        )
    except UnknownKey:
        raise NotFound(f"no key {key_id!r}") from None
    history = await services.store.read_stream_async(key_stream(key_id))
    await _settled(services, history[-1].position)
    return json_response({"key_id": key_id, "revoked": True, "was_revoked": not revoked})


_BUDGETS = "/api/advanced-ai/admin/budgets"
_KEYS = "/api/advanced-ai/admin/keys"

ROUTES: Final = (
    Route("GET", _BUDGETS, list_budgets, role=Role.ADMIN,
          summary="Every scope's budget: limit, spent, reserved and remaining this period",
          response={"type": "object", "properties": {"budgets": {"type": "array",
                                                                 "items": BUDGET_ROW}}},
          tag="admin"),
    Route("GET", _BUDGETS + "/{scope}", get_budget, role=Role.ADMIN,
          summary="One scope's budget (scope: global, tenant:NAME or key:KEY_ID)",
          response=BUDGET_ROW, errors=(400, 404), tag="admin"),
    Route("PUT", _BUDGETS + "/{scope}", put_budget, role=Role.ADMIN,
          summary="Set a scope's limit in USD for a period (total, day or month, UTC)",
          description="Records BudgetSet in stream `budget-<scope>`; answers once the limit "
          "is in force.",
          body=BUDGET, response=BUDGET_ROW, errors=(404,), tag="admin"),
    Route("DELETE", _BUDGETS + "/{scope}", delete_budget, role=Role.ADMIN,
          summary="Lift a scope's limit", errors=(400, 404),
          response={"type": "object"}, tag="admin"),
    Route("GET", _KEYS, list_keys, role=Role.ADMIN,
          summary="Every key ever issued (never the keys themselves)",
          response={"type": "object", "properties": {"keys": {"type": "array", "items": KEY}}},
          tag="admin"),
    Route("POST", _KEYS, create_key, role=Role.ADMIN,
          summary="Issue a key; the answer holds it, once (only its sha256 is kept)",
          body=NEW_KEY, response=KEY, status=201, tag="admin"),
    Route("DELETE", _KEYS + "/{key_id}", delete_key, role=Role.ADMIN,
          summary="Revoke a key: it stops working at once, on every node",
          response={"type": "object"}, errors=(404,), tag="admin"),
)  # fmt: skip
