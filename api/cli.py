"""The `atom` command: serve the gateway, manage keys, replay the event log."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from eventstore import EventStore, EventStoreError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atom", description="ATOM: one gateway in front of many language models."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the gateway's HTTP server")
    serve.add_argument("--db", default="./atom.db", help="event log file (default: ./atom.db)")
    commands.add_parser("keys", help="issue and revoke API keys")
    commands.add_parser("replay", help="verify, export and import the event log")
    return parser


def _serve(db: str) -> int:
    try:
        EventStore(db).close()
    except EventStoreError as exc:
        print(f"atom serve: {exc}", file=sys.stderr)
        return 2
    print(f"atom serve: the HTTP server is not built yet; the event log at {db} opened OK")
    return 0


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
        return _serve(options.db)
    print("atom keys: not available yet", file=sys.stderr)
    return 2
