"""`atom replay rebuild`: fold the projections again from position 0 and compare them with the
live ones the server stored in the log's own `projections` table."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson

from atom_actors.projections import all_projections
from eventstore import EventStore, LogReader, Projection, ProjectionRunner, canonical, open_reader

from ._progress import ProgressBar

Progress = Callable[[int, int], None]


class RebuildError(ValueError):
    """An unknown projection, or an --out that already exists."""


@dataclass(frozen=True, slots=True)
class Stored:
    """A projection as the server stored it."""

    version: int
    checkpoint: int
    state: Any


@dataclass(frozen=True, slots=True)
class Difference:
    """A JSON pointer into the state, and its value on each side (`absent`: the side without it)."""

    path: str
    live: Any
    rebuilt: Any
    absent: str | None = None


@dataclass(frozen=True, slots=True)
class Comparison:
    """identical, differs, "not stored", or "other version" (stored by another fold's version)."""

    name: str
    version: int
    status: str
    checkpoint: int
    """Where the live state was saved; where the rebuild stopped when there is none to compare."""
    differences: tuple[Difference, ...] = ()


def stored_states(reader: LogReader) -> dict[str, Stored]:
    """The projections stored beside the log, read without writing anything."""
    return {
        name: Stored(version, checkpoint, orjson.loads(state))
        for name, (version, checkpoint, state) in reader.stored_projections().items()
    }


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def differences(live: Any, rebuilt: Any, path: str = "") -> Iterator[Difference]:
    """Every place where two JSON states differ, as RFC 6901 pointers, in key order."""
    if isinstance(live, dict) and isinstance(rebuilt, dict):
        for key in sorted(live.keys() | rebuilt.keys()):
            at = f"{path}/{_escape(key)}"
            if key not in rebuilt:
                yield Difference(at, live[key], None, "rebuilt")
            elif key not in live:
                yield Difference(at, None, rebuilt[key], "live")
            else:
                yield from differences(live[key], rebuilt[key], at)
    elif isinstance(live, list) and isinstance(rebuilt, list):
        for i, (a, b) in enumerate(zip(live, rebuilt, strict=False)):
            yield from differences(a, b, f"{path}/{i}")
        for i in range(len(rebuilt), len(live)):
            yield Difference(f"{path}/{i}", live[i], None, "rebuilt")
        for i in range(len(live), len(rebuilt)):
            yield Difference(f"{path}/{i}", None, rebuilt[i], "live")
    elif type(live) is not type(rebuilt) or live != rebuilt:
        # The type too: JSON tells 1 from 1.0 and true from 1, and so does canonical().
        yield Difference(path or "/", live, rebuilt)


def _fold(
    reader: LogReader, runners: Sequence[tuple[ProjectionRunner, int]], progress: Progress
) -> None:
    """Fold each runner up to its own position, reading the log once."""
    target = max((until for _, until in runners), default=0)
    after = 0
    while after < target:
        page = reader.read_page(after)
        if not page:
            break
        for runner, until in runners:
            part = [event for event in page if event.position <= until]
            if part:
                runner.process(part)
        after = page[-1].position
        progress(after, target)


def rebuild(
    reader: LogReader,
    projections: Sequence[Projection[Any]],
    out: str,
    stored: dict[str, Stored],
    head: int,
    progress: Progress,
) -> list[Comparison]:
    """Rebuild each projection into `out`, up to its stored checkpoint (else `head`), and
    compare it with the stored state."""
    comparable = {
        p.name: stored[p.name].checkpoint
        for p in projections
        if p.name in stored and stored[p.name].version == p.version
    }
    # The runner only reads its store in catch_up(), unused here: pages are read once for all.
    store = cast(EventStore, reader)
    runners = [ProjectionRunner(store, p, db_path=out) for p in projections]
    try:
        _fold(reader, [(r, comparable.get(r.projection.name, head)) for r in runners], progress)
        return [
            _compare(r, stored.get(r.projection.name), r.projection.name in comparable)
            for r in runners
        ]
    finally:
        for runner in runners:
            runner.close()


def _compare(runner: ProjectionRunner, live: Stored | None, comparable: bool) -> Comparison:
    name, version = runner.projection.name, runner.projection.version
    if live is None:
        return Comparison(name, version, "not stored", runner.position)
    if not comparable:
        return Comparison(name, version, "other version", live.checkpoint)
    found: list[Difference] = []
    if runner.position != live.checkpoint:
        found.append(Difference("checkpoint", live.checkpoint, runner.position))
    # Both sides as stored bytes read back, so that only real differences remain.
    found += differences(live.state, orjson.loads(canonical(runner.state)))
    return Comparison(
        name, version, "differs" if found else "identical", live.checkpoint, tuple(found)
    )


def select(name: str | None) -> list[Projection[Any]]:
    """Every projection, or the one named."""
    projections: list[Projection[Any]] = all_projections()
    if name is None:
        return projections
    chosen = [p for p in projections if p.name == name]
    if not chosen:
        known = ", ".join(p.name for p in projections)
        raise RebuildError(f"no projection {name!r}; there are {known}")
    return chosen


# Output.


def _value(value: Any, absent: bool) -> str:
    return "(absent)" if absent else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def render(comparisons: Sequence[Comparison], db: str, head: int) -> str:
    lines = [f"rebuilt from position 0 of {db} (head {head})"]
    for c in comparisons:
        where = "rebuilt to" if c.status == "not stored" else "checkpoint"
        lines.append(f"{c.name} v{c.version}: {c.status} ({where} {c.checkpoint})")
        lines += [
            f"  {d.path}: live {_value(d.live, d.absent == 'live')}, "
            f"rebuilt {_value(d.rebuilt, d.absent == 'rebuilt')}"
            for d in c.differences
        ]
    return "\n".join(lines)


# The command line.


def add_parser(commands: Any) -> None:
    """Add `rebuild` to `atom replay`'s subcommands (the argparse subparsers action)."""
    parser = commands.add_parser(
        "rebuild",
        help="rebuild the projections from position 0 and compare them with the live ones",
        description=(
            "Fold every projection (or the one named) from position 0 into a fresh database "
            "and compare it with the state the server stored in the log, at the checkpoint "
            "that state was stored at, so that any difference is real. Prints each difference "
            "as a JSON pointer into the state with both values. Exit 0 when they are "
            "identical, 1 when any differs; a projection the log does not store is reported, "
            "not counted as a difference. The log is only read."
        ),
    )
    parser.add_argument("--db", default="./atom.db", help="the event log (default: ./atom.db)")
    parser.add_argument(
        "--projection",
        metavar="NAME",
        help="only this one: " + ", ".join(p.name for p in all_projections()),
    )
    parser.add_argument(
        "--out",
        metavar="NEW.db",
        help="keep the rebuilt projections in this new file (default: a temporary file, removed)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def command(options: argparse.Namespace) -> int:
    """Run `atom replay rebuild`: 0 when identical, 1 when any differs, 2 on bad input."""
    try:
        projections = select(options.projection)
        if options.out is not None and os.path.lexists(options.out):
            raise RebuildError(f"--out {options.out}: exists; the rebuild needs a new file")
        if options.out is not None and not Path(options.out).parent.is_dir():
            raise RebuildError(f"--out {options.out}: no such directory")
    except RebuildError as exc:
        print(f"atom replay rebuild: {exc}", file=sys.stderr)
        return 2
    with open_reader(options.db) as reader, tempfile.TemporaryDirectory() as scratch:
        out = options.out or str(Path(scratch) / "projections.db")
        stored, head = stored_states(reader), reader.head()
        with ProgressBar("rebuilding") as progress:
            comparisons = rebuild(reader, projections, out, stored, head, progress)
    if options.json:
        report = {
            "db": options.db,
            "head": head,
            "out": options.out,
            "identical": all(c.status != "differs" for c in comparisons),
            "projections": comparisons,
        }
        print(orjson.dumps(report).decode())
    else:
        print(render(comparisons, options.db, head))
    return 1 if any(c.status == "differs" for c in comparisons) else 0
