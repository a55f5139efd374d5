"""The `atom` command: serve the gateway, manage keys and budgets, replay the event log."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Final

import orjson

from eventstore import EventStoreError, LogReader, open_reader, open_store

from .auth import ROLE_LABELS, Role
from .budgets import PERIODS, BadBudget, Budget, budget_stream, cleared, parse_scope, read_budgets
from .budgets import rows as budget_rows
from .eventloop import LOOPS
from .keys import UnknownKey, issue, read_records, revoke


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atom", description="ATOM: one gateway in front of many language models."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway's HTTP server")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration (default: embedded)")
    serve.add_argument("--db", help="event log file (default: the config's, ./atom.db)")
    serve.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on, 0 for any (default: 8080)")
    serve.add_argument("--durability", choices=("full", "normal"), help="log durability")
    serve.add_argument("--rate-limit", type=int, default=600, metavar="N",
                       help="requests per minute per key, 0 for none (default: 600)")  # fmt: skip
    serve.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                       help="time requests in flight get at shutdown (default: 10)")  # fmt: skip
    serve.add_argument("--loop", choices=LOOPS, default="auto",
                       help="event loop: uvloop, asyncio's own, or auto: uvloop when installed "
                            "(default: auto)")  # fmt: skip

    keys = commands.add_parser("keys", help="issue, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="issue a key; it is printed once, on the last line")
    create.add_argument("--db", default="./atom.db", help="event log file (default: ./atom.db)")
    create.add_argument("--role", required=True, choices=ROLE_LABELS)
    create.add_argument("--name", default="", help="a label for people")
    create.add_argument("--tenant", help="the tenant the key belongs to")
    create.add_argument("--budget-usd", type=float, metavar="X", help="spending limit in USD")
    create.add_argument("--period", choices=PERIODS, help="budget period (default: total)")
    listing = actions.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--db", default="./atom.db", help="event log file (default: ./atom.db)")
    revoking = actions.add_parser("revoke", help="revoke a key by its id")
    revoking.add_argument("--db", default="./atom.db", help="event log file (default: ./atom.db)")
    revoking.add_argument("key_id", metavar="KEY_ID")

    budgets = commands.add_parser("budgets", help="set, list and clear spending limits")
    doing = budgets.add_subparsers(dest="action", required=True, metavar="ACTION")
    setting = doing.add_parser("set", help="set a scope's limit (it replaces any earlier one)")
    setting.add_argument("--db", default="./atom.db", help="event log file (default: ./atom.db)")
    setting.add_argument("--scope", required=True, help="global, tenant:NAME or key:KEY_ID")
    setting.add_argument("--usd", required=True, type=float, metavar="N", help="the limit in USD")
    setting.add_argument(
        "--period",
        choices=PERIODS,
        default="total",
        help="all time, or each UTC day or month (default: total)",
    )
    showing = doing.add_parser("list", help="limit, spent, reserved and period start per scope")
    showing.add_argument("--db", default="./atom.db", help="event log file (default: ./atom.db)")
    showing.add_argument("--json", action="store_true", help="print the rows as JSON")
    clearing = doing.add_parser("clear", help="lift a scope's limit")
    clearing.add_argument("--db", default="./atom.db", help="event log file (default: ./atom.db)")
    clearing.add_argument("--scope", required=True, help="global, tenant:NAME or key:KEY_ID")

    commands.add_parser("replay", help="verify, export and import the event log")
    return parser


def _serve(options: argparse.Namespace) -> int:
    # Imported here: the other commands need neither aiohttp nor the actors.
    from atom_actors.config import ConfigError, load_config
    from atom_actors.providers.llamacpp import default_model_path

    from .eventloop import LoopUnavailable, resolve, run
    from .ratelimit import Rate
    from .server import serve
    from .services import Limits

    try:
        loop = resolve(options.loop)
    except LoopUnavailable as exc:
        print(f"atom serve: {exc}", file=sys.stderr)
        return 2
    try:
        if options.config is None:
            config = load_config(None, local_model_path=str(default_model_path()))
        else:
            config = load_config(options.config)
    except ConfigError as exc:
        print(f"atom serve: {exc}", file=sys.stderr)
        return 2
    overrides = {
        name: value
        for name, value in (
            ("db_path", options.db),
            ("host", options.host),
            ("port", options.port),
            ("durability", options.durability),
        )
        if value is not None
    }
    config = dataclasses.replace(config, **overrides)
    rate = Rate(options.rate_limit) if options.rate_limit > 0 else None
    logging.basicConfig(level=logging.WARNING, format="atom: %(levelname)s %(name)s: %(message)s")
    # llama.cpp silences a model's loading by pointing fds 1 and 2 at /dev/null for a while,
    # from whichever thread loads it: announce through a descriptor of our own.
    with os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1) as out:
        try:
            return run(
                serve(config, limits=Limits(rate=rate), grace_s=options.grace, out=out), loop
            )
        except (EventStoreError, OSError) as exc:
            print(f"atom serve: {exc}", file=sys.stderr)
            return 2


def _create_key(options: argparse.Namespace) -> int:
    if options.period is not None and options.budget_usd is None:
        print("atom keys create: --period needs --budget-usd", file=sys.stderr)
        return 2
    try:
        budget = (
            None
            if options.budget_usd is None
            else Budget(options.budget_usd, options.period or "total")
        )
    except ValueError as exc:
        print(f"atom keys create: {exc}", file=sys.stderr)
        return 2
    try:
        issued = issue(Role.parse(options.role), options.name, tenant=options.tenant, budget=budget)
    except ValueError as exc:
        print(f"atom keys create: --tenant: {exc}", file=sys.stderr)
        return 2
    with open_store(options.db) as store:
        store.append_batch(issued.parts)
    print(f"key_id: {issued.key_id}")
    print(f"role: {options.role}")
    if options.name:
        print(f"name: {options.name}")
    if options.tenant is not None:
        print(f"tenant: {options.tenant}")
    if budget is not None:
        print(f"budget: {budget.usd:g} USD ({budget.period})")
    print("the key follows; it is shown only this once:")
    print(issued.key)
    return 0


def _list_keys(options: argparse.Namespace) -> int:
    with open_reader(options.db) as reader:
        records = read_records(reader)
    print(f"{'KEY_ID':<16}  {'ROLE':<8}  {'TENANT':<16}  {'REVOKED':<7}  NAME")
    for r in records:
        revoked = "yes" if r.revoked else "no"
        print(f"{r.key_id:<16}  {r.role:<8}  {r.tenant or '-':<16}  {revoked:<7}  {r.name}")
    return 0


def _revoke_key(options: argparse.Namespace) -> int:
    with open_store(options.db, create=False) as store:
        try:
            done = revoke(store, options.key_id)
        except UnknownKey:
            print(f"atom keys revoke: no key {options.key_id!r} in {options.db}", file=sys.stderr)
            return 1
    print(f"revoked {options.key_id}" if done else f"{options.key_id} was already revoked")
    return 0


def _known_scope(store: LogReader, scope: str) -> None:
    """A key's scope must name a key the log holds: a typo would limit nobody."""
    if scope.startswith("key:") and scope.removeprefix("key:") not in {
        r.key_id for r in read_records(store)
    }:
        raise BadBudget("scope", f"no key {scope.removeprefix('key:')!r} in this log")


def _set_budget(options: argparse.Namespace) -> int:
    budget = Budget(options.usd, options.period)
    scope = parse_scope(options.scope)
    with open_store(options.db) as store:
        _known_scope(store, scope)
        [position] = store.append(budget_stream(scope), [budget.event(scope, None)])
    print(f"{scope}: {budget.usd:g} USD ({budget.period}), at log position {position}")
    return 0


def _list_budgets(options: argparse.Namespace) -> int:
    with open_reader(options.db) as reader:
        rows = budget_rows(read_budgets(reader))
    if options.json:
        print(orjson.dumps(rows).decode())
        return 0
    header = ("SCOPE", "PERIOD", "SINCE", "LIMIT", "SPENT", "RESERVED", "REMAINING")
    table = [header] + [
        (
            r["scope"],
            r["period"],
            r["period_start"] or "-",
            *(f"{r[k]:.6f}" for k in ("limit_usd", "spent_usd", "reserved_usd", "remaining_usd")),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _clear_budget(options: argparse.Namespace) -> int:
    scope = parse_scope(options.scope)
    with open_store(options.db) as store:
        if scope not in read_budgets(store)["limits"]:
            print(f"atom budgets clear: {scope} has no limit", file=sys.stderr)
            return 1
        [position] = store.append(budget_stream(scope), [cleared(scope, None)])
    print(f"{scope}: no limit from log position {position}")
    return 0


_ACTIONS: Final[dict[str, dict[str, Callable[[argparse.Namespace], int]]]] = {
    "keys": {"create": _create_key, "list": _list_keys, "revoke": _revoke_key},
    "budgets": {"set": _set_budget, "list": _list_budgets, "clear": _clear_budget},
}


def _manage(options: argparse.Namespace) -> int:
    """Run an `atom keys` or `atom budgets` action: bad input or a bad log is one line, 2."""
    said = f"atom {options.command} {options.action}"
    try:
        return _ACTIONS[options.command][options.action](options)
    except BadBudget as exc:
        print(f"{said}: --{exc.field}: {exc}", file=sys.stderr)
        return 2
    except EventStoreError as exc:
        print(f"{said}: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run `atom` with `argv` (default: the process's arguments); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["replay"]:
        # replay owns its parser and help; importing it only here keeps the other commands'
        # dependencies (aiohttp, for serve) out of a replay run, and replay's out of theirs.
        from replay.cli import main as replay_main

        return replay_main(args[1:])
    options = _parser().parse_args(args)
    if options.command == "serve":
        return _serve(options)
    return _manage(options)
