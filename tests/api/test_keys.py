"""API keys: the fold, `atom keys`, and a server seeing another process's keys at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from api.auth import Role
from api.budgets import Budget
from api.keys import (
    KeysProjection,
    UnknownKey,
    hash_key,
    issue,
    lookup,
    read_records,
    revoke,
)
from eventstore import EventStore, NewEvent, SQLiteReader, SQLiteStore, fold
from tests.api.conftest import ATOM, Api, atom, issue_key

STATUS = "/api/advanced-ai/streaming/status"


def test_the_fold_keeps_hashes_and_revocations(store: EventStore) -> None:
    viewer = issue(Role.VIEWER, "v", tenant="acme")
    admin = issue(Role.ADMIN, "a")
    store.append_batch(viewer.parts)
    store.append_batch(admin.parts)
    assert revoke(store, admin.key_id) is True
    assert revoke(store, admin.key_id) is False
    with pytest.raises(UnknownKey):
        revoke(store, "nope")
    state = fold(KeysProjection(), store.read_all())
    found = lookup(state, viewer.key)
    assert found is not None
    assert (found.key_id, found.role, found.tenant, found.revoked) == (
        viewer.key_id,
        "viewer",
        "acme",
        False,
    )
    principal = found.principal()
    assert principal is not None and principal.role is Role.VIEWER
    revoked = lookup(state, admin.key)
    assert revoked is not None and revoked.revoked and revoked.principal() is None
    assert lookup(state, viewer.key + "x") is None


def test_only_the_hash_is_recorded(store: EventStore) -> None:
    issued = issue(Role.USER, "u", budget=Budget(2.5, "month"))
    store.append_batch(issued.parts)
    raw = "".join(str(row) for row in store.iter_raw())
    assert issued.key not in raw
    assert hash_key(issued.key) in raw
    budget = store.read_stream(f"budget-key:{issued.key_id}")
    assert [(e.type, e.data) for e in budget] == [
        (
            "BudgetSet",
            {"scope": f"key:{issued.key_id}", "limit_pico": 2_500_000_000_000, "period": "month"},
        )
    ]


def test_malformed_key_events_are_skipped(store: EventStore) -> None:
    store.append("apikey-x", [NewEvent("ApiKeyIssued", {"key_id": 1, "role": "admin"})])
    store.append("apikey-y", [NewEvent("ApiKeyRevoked", {})])
    assert fold(KeysProjection(), store.read_all()) == KeysProjection().initial()


def test_atom_keys_create_list_revoke(db_path: str) -> None:
    created = atom(
        "keys", "create", "--db", db_path, "--role", "operator", "--name", "ci bot",
        "--tenant", "acme", "--budget-usd", "5", "--period", "day",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    key = lines[-1]
    assert key.startswith("atom_") and len(key) > 40
    assert "budget: 5 USD (day)" in lines
    key_id = lines[0].removeprefix("key_id: ")
    listed = atom("keys", "list", "--db", db_path)
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout and hash_key(key) not in listed.stdout
    header, row = listed.stdout.splitlines()
    assert header.split() == ["KEY_ID", "ROLE", "TENANT", "REVOKED", "NAME"]
    assert row.split() == [key_id, "operator", "acme", "no", "ci", "bot"]
    assert atom("keys", "revoke", "--db", db_path, key_id).stdout == f"revoked {key_id}\n"
    assert atom("keys", "revoke", "--db", db_path, key_id).stdout == (
        f"{key_id} was already revoked\n"
    )
    with SQLiteReader(db_path) as reader:
        [record] = read_records(reader)
    assert record.revoked


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["create", "--role", "user", "--period", "day"], "--period needs --budget-usd"),
        (
            ["create", "--role", "user", "--budget-usd", "-1"],
            "a budget is an amount of USD from 0 to 1,000,000",
        ),
        (
            ["create", "--role", "user", "--budget-usd", "nan"],
            "a budget is an amount of USD from 0 to 1,000,000",
        ),
        (["create", "--role", "root"], "invalid choice: 'root'"),
        (["revoke", "abc"], "no key 'abc'"),
    ],
)
def test_atom_keys_refuses_bad_input(db_path: str, args: list[str], error: str) -> None:
    SQLiteStore(db_path).close()
    result = atom("keys", *args, "--db", db_path)
    assert result.returncode in (1, 2)
    assert error in result.stderr
    assert result.stdout == ""


def test_atom_keys_list_on_a_missing_log_says_so(db_path: str) -> None:
    result = atom("keys", "list", "--db", db_path)
    assert (result.returncode, result.stderr) == (2, f"atom keys list: {db_path}: no such file\n")


async def _within(seconds: float, api: Api, key: str, status: int) -> float:
    """How long until `key` gets `status` on an authenticated route (fails past `seconds`)."""
    started = time.monotonic()
    while (await api.call("GET", STATUS, key=key))[0] != status:
        assert time.monotonic() - started < seconds, f"no {status} within {seconds}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def _atom(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        ATOM, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_keys_issued_and_revoked_by_another_process_count_within_a_second(
    api: Api, db_path: str
) -> None:
    output = await _atom("keys", "create", "--db", db_path, "--role", "viewer")
    key, key_id = output.splitlines()[-1], output.splitlines()[0].removeprefix("key_id: ")
    await _within(1.0, api, key, 200)
    await _atom("keys", "revoke", "--db", db_path, key_id)
    await _within(1.0, api, key, 401)


async def test_a_key_issued_in_process_is_seen_after_wait_for(api: Api) -> None:
    key = await asyncio.to_thread(issue_key, api.services.store, Role.VIEWER)
    assert await api.services.keys.wait_for(api.services.store.head())
    assert (await api.call("GET", STATUS, key=key))[0] == 200


def test_the_cli_never_imports_the_server() -> None:
    code = (
        "import sys; from api.cli import main; "
        "main(['keys', 'list', '--db', '/nonexistent/x.db']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'pykka')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "[]\n"
