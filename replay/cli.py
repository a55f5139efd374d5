"""`atom replay`: verify, export and import an event log; no server needs to run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import BinaryIO

from eventstore import EventStoreError, LogFormatTooNew, NotAnEventLog, open_store

from . import evaluate, rebuild, rescore, stats, stream, trace
from ._export import export_log
from ._import import BadLine, import_lines
from .verify import as_json, summary, verify_log

_DEFAULT_DB = "./atom.db"


def _position(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a position (1 or more)")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atom replay", description="Work on an ATOM event log without a running server."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db_help = f"the event log: an SQLite file or a postgresql:// URL (default: {_DEFAULT_DB})"

    verify = commands.add_parser(
        "verify",
        help="check the hash chain, positions and stream versions",
        description="Exit 0 when the log is intact, 1 naming the first bad position otherwise.",
    )
    verify.add_argument("--db", default=_DEFAULT_DB, help=db_help)
    verify.add_argument("--json", action="store_true", help="print the report as one JSON object")

    export = commands.add_parser(
        "export",
        help="write the log to stdout as JSON Lines",
        description="One event a line, data and metadata exactly as stored (not upcast).",
    )
    export.add_argument("--db", default=_DEFAULT_DB, help=db_help)
    export.add_argument(
        "--from",
        dest="start",
        type=_position,
        default=1,
        metavar="N",
        help="first position to export (default: 1)",
    )

    import_ = commands.add_parser(
        "import",
        help="append events from JSON Lines, idempotently",
        description=(
            "Each line needs stream_id, type and data; event_id, metadata, schema_version and "
            "recorded_at are optional, other keys are ignored. A line without an event_id gets "
            "a uuid5 of its line number and content, so importing the same file twice adds "
            "nothing. An export imported into an empty log (SQLite or PostgreSQL) is the same "
            "log, hash for hash."
        ),
    )
    import_.add_argument("--db", default=_DEFAULT_DB, help=f"{db_help}; created when missing")
    import_.add_argument("file", metavar="FILE.jsonl", help="the lines to import; - for stdin")
    evaluate.add_parser(commands)
    for command in (trace, rebuild, rescore, stats, stream):
        command.add_parser(commands)
    return parser


def _verify(options: argparse.Namespace) -> int:
    report = verify_log(options.db)
    print(as_json(report) if options.json else summary(report))
    return 0 if report.ok else 1


def _export(options: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    try:
        export_log(options.db, out, options.start)
        out.flush()
    except BrokenPipeError:
        # The reader left early (`| head`); silence the flush Python retries at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def _input(name: str) -> BinaryIO:
    return open(sys.stdin.fileno() if name == "-" else name, "rb", closefd=name != "-")


def _import(options: argparse.Namespace) -> int:
    with _input(options.file) as source, open_store(options.db) as store:
        result = import_lines(store, source)
    print(
        f"imported: {result.lines} lines read, {result.appended} events appended, "
        f"{result.already_present} already present",
        file=sys.stderr,
    )
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "verify": _verify,
    "export": _export,
    "import": _import,
    "evaluate": evaluate.command,
    "trace": trace.command,
    "rebuild": rebuild.command,
    "rescore": rescore.command,
    "stats": stats.command,
    "stream": stream.command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run `atom replay` with `argv`; returns the exit code (2: bad usage or input)."""
    options = _parser().parse_args(argv)
    try:
        return _COMMANDS[options.command](options)
    except (NotAnEventLog, LogFormatTooNew, BadLine) as exc:
        message, code = str(exc), 2
    except OSError as exc:
        message, code = (f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)), 2
    except EventStoreError as exc:
        message, code = str(exc), 1
    print(f"atom replay {options.command}: {message}", file=sys.stderr)
    return code
