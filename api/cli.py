"""The `atom` command: serve the gateway, manage keys, replay the event log."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

from eventstore import EventStoreError, open_reader, open_store

from .auth import ROLE_LABELS, Role
from .eventloop import LOOPS
from .keys import PERIODS, Budget, UnknownKey, issue, read_records, revoke


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
    issued = issue(Role.parse(options.role), options.name, tenant=options.tenant, budget=budget)
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


def _keys(options: argparse.Namespace) -> int:
    action = {"create": _create_key, "list": _list_keys, "revoke": _revoke_key}[options.action]
    try:
        return action(options)
    except EventStoreError as exc:
        print(f"atom keys {options.action}: {exc}", file=sys.stderr)
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
    return _keys(options)
