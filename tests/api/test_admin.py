"""Budgets and keys administered over HTTP and with `atom budgets`, on the log like the rest."""

from __future__ import annotations

import asyncio

import orjson

from api.auth import Role
from tests.api.conftest import Api, Fleet, atom, issue_key

PROCESS = "/api/advanced-ai/process"
BUDGETS = "/api/advanced-ai/admin/budgets"
KEYS = "/api/advanced-ai/admin/keys"


async def test_a_tenants_budget_is_set_in_force_at_once_then_lifted(fleet: Fleet) -> None:
    api, admin = fleet.api, fleet.api.keys[Role.ADMIN]
    acme = issue_key(fleet.store, Role.USER, tenant="acme")
    ask = {"model": "cheap", "prompt": "hi", "max_tokens": 8}
    # Room for nothing: the limit is in force when the PUT answers.
    status, row, _ = await api.call("PUT", f"{BUDGETS}/tenant:acme", key=admin, json={"usd": 0})
    assert status == 200
    assert row == {
        "scope": "tenant:acme",
        "period": "total",
        "period_start": None,
        "limit_usd": 0.0,
        "spent_usd": 0.0,
        "reserved_usd": 0.0,
        "remaining_usd": 0.0,
    }
    assert (await fleet.post(PROCESS, ask, key=acme))[0] == 402
    assert (await fleet.post(PROCESS, ask))[0] == 200, "another tenancy spends as before"

    status, row, _ = await api.call(
        "PUT", f"{BUDGETS}/tenant:acme", key=admin, json={"usd": 1, "period": "day"}
    )
    assert (status, row["limit_usd"], row["period"]) == (200, 1.0, "day")
    assert row["period_start"] is not None
    status, answer = await fleet.post(PROCESS, ask, key=acme)
    assert status == 200
    status, row, _ = await api.call("GET", f"{BUDGETS}/tenant:acme", key=admin)
    assert (status, row["spent_usd"]) == (200, answer["cost_usd"])
    _, listed, _ = await api.call("GET", BUDGETS, key=admin)
    assert [r["scope"] for r in listed["budgets"]] == ["tenant:acme"]

    status, lifted, _ = await api.call("DELETE", f"{BUDGETS}/tenant:acme", key=admin)
    assert (status, lifted["cleared"]) == (200, True)
    assert (await api.call("GET", f"{BUDGETS}/tenant:acme", key=admin))[0] == 404
    assert (await api.call("DELETE", f"{BUDGETS}/tenant:acme", key=admin))[0] == 404
    kinds = [e.type for e in fleet.store.read_stream("budget-tenant:acme")]
    assert kinds == ["BudgetSet", "BudgetSet", "BudgetCleared"]


async def test_a_scope_must_be_one_and_a_keys_scope_must_name_a_key(api: Api) -> None:
    admin = api.keys[Role.ADMIN]
    for scope in ("everyone", "tenant:", "tenant:a b", "key:NOT-HEX"):
        status, error, _ = await api.call("PUT", f"{BUDGETS}/{scope}", key=admin, json={"usd": 1})
        assert (status, error["error"]["field"]) == (400, "scope"), scope
    status, error, _ = await api.call(
        "PUT", f"{BUDGETS}/key:0123456789abcdef", key=admin, json={"usd": 1}
    )
    assert (status, error["error"]["message"]) == (404, "no key '0123456789abcdef'")
    status, error, _ = await api.call("PUT", f"{BUDGETS}/global", key=admin, json={"usd": 2e6})
    assert (status, error["error"]["field"]) == (400, "usd")
    assert api.services.store.read_stream("budget-global") == []


async def test_a_key_made_over_http_works_at_once_and_stops_when_revoked(fleet: Fleet) -> None:
    api, admin = fleet.api, fleet.api.keys[Role.ADMIN]
    body = {"role": "user", "name": "app", "tenant": "globex", "budget_usd": 1}
    status, made, _ = await api.call("POST", KEYS, key=admin, json=body)
    assert status == 201
    assert made["key"].startswith("atom_") and made["tenant"] == "globex"
    ask = {"model": "cheap", "prompt": "hi"}
    assert (await fleet.post(PROCESS, ask, key=made["key"]))[0] == 200
    _, listed, _ = await api.call("GET", KEYS, key=admin)
    [row] = [k for k in listed["keys"] if k["key_id"] == made["key_id"]]
    assert row == {k: made[k] for k in ("key_id", "role", "name", "tenant", "revoked")}
    assert made["key"] not in orjson.dumps(listed).decode(), "a key is shown once"
    _, budget, _ = await api.call("GET", f"{BUDGETS}/key:{made['key_id']}", key=admin)
    assert budget["limit_usd"] == 1.0

    status, revoked, _ = await api.call("DELETE", f"{KEYS}/{made['key_id']}", key=admin)
    assert (status, revoked["revoked"], revoked["was_revoked"]) == (200, True, False)
    status, error = await fleet.post(PROCESS, ask, key=made["key"])
    assert (status, error["error"]["message"]) == (401, "this API key has been revoked")
    again = await api.call("DELETE", f"{KEYS}/{made['key_id']}", key=admin)
    assert (again[0], again[1]["was_revoked"]) == (200, True)


async def test_a_key_made_by_another_process_works_on_its_first_request(fleet: Fleet) -> None:
    made = await asyncio.to_thread(
        atom, "keys", "create", "--db", fleet.store.location, "--role", "viewer"
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    # No wait: the server reads the log up to its head before it refuses a key it does not know.
    status, _ = await fleet.get("/api/advanced-ai/models", key=key)
    assert status == 200
    assert (await fleet.get("/api/advanced-ai/models", key="atom_never-issued"))[0] == 401


def test_atom_budgets_sets_lists_and_clears_limits(db_path: str) -> None:
    made = atom("keys", "create", "--db", db_path, "--role", "user")
    key_id = made.stdout.splitlines()[0].removeprefix("key_id: ")
    ran = atom("budgets", "set", "--db", db_path, "--scope", f"key:{key_id}", "--usd", "2.5",
               "--period", "month")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"key:{key_id}: 2.5 USD (month), at log position ")
    assert (
        atom("budgets", "set", "--db", db_path, "--scope", "global", "--usd", "10").returncode == 0
    )
    listed = atom("budgets", "list", "--db", db_path, "--json")
    rows = orjson.loads(listed.stdout)
    assert [(r["scope"], r["limit_usd"], r["period"]) for r in rows] == [
        ("global", 10.0, "total"),
        (f"key:{key_id}", 2.5, "month"),
    ]
    table = atom("budgets", "list", "--db", db_path).stdout.splitlines()
    assert table[0].split() == [
        "SCOPE",
        "PERIOD",
        "SINCE",
        "LIMIT",
        "SPENT",
        "RESERVED",
        "REMAINING",
    ]
    assert table[1].split()[:4] == ["global", "total", "-", "10.000000"]

    cleared = atom("budgets", "clear", "--db", db_path, "--scope", "global")
    assert cleared.returncode == 0 and cleared.stdout.startswith("global: no limit from log")
    again = atom("budgets", "clear", "--db", db_path, "--scope", "global")
    assert (again.returncode, again.stderr) == (1, "atom budgets clear: global has no limit\n")
    rows = orjson.loads(atom("budgets", "list", "--db", db_path, "--json").stdout)
    assert [r["scope"] for r in rows] == [f"key:{key_id}"]


def test_atom_budgets_refuses_bad_input_in_one_line(db_path: str) -> None:
    for args, message in [
        (["--scope", "planet", "--usd", "1"], "--scope: scope 'planet' is not"),
        (["--scope", "key:abcdef0123", "--usd", "1"], "--scope: no key 'abcdef0123' in this log"),
        (["--scope", "global", "--usd", "-1"], "--usd: a budget is an amount of USD from 0"),
        (["--scope", "global", "--usd", "nan"], "--usd: a budget is an amount of USD from 0"),
    ]:
        ran = atom("budgets", "set", "--db", db_path, *args)
        assert ran.returncode == 2, args
        assert ran.stderr.startswith(f"atom budgets set: {message}"), ran.stderr
        assert ran.stderr.count("\n") == 1
    rows = orjson.loads(atom("budgets", "list", "--db", db_path, "--json").stdout)
    assert rows == []
