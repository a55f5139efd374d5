"""`atom replay stats`: the figures ATOM showed at any point of its log, folded again from 0."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from atom_actors import views
from atom_actors.cost import to_usd
from atom_actors.projections import all_projections
from eventstore import LogReader, fold, open_reader

from . import _timepoint
from ._progress import ProgressBar

State = dict[str, Any]
Progress = Callable[[int, int], None]


def moment(recorded_at: str | None) -> datetime:
    """The time of a recorded event (budget periods are judged at it); now for an empty log."""
    return datetime.now(UTC) if recorded_at is None else datetime.fromisoformat(recorded_at)


def states_at(reader: LogReader, position: int, progress: Progress) -> dict[str, State]:
    """Every projection's state folded from position 0 up to `position`, reading the log once."""
    projections = all_projections()
    states = {p.name: p.initial() for p in projections}
    after = 0
    while after < position:
        page = [e for e in reader.read_page(after) if e.position <= position]
        if not page:
            break
        for p in projections:
            states[p.name] = fold(p, page, states[p.name])
        after = page[-1].position
        progress(after, position)
    return states


def figures(states: Mapping[str, State], at: datetime) -> State:
    """The figures of the projections' states, as the server presents them (atom_actors.views):
    spend, per-model performance, strategies, requests, budgets (at time `at`), failures."""
    outcomes = views.outcomes(states["orchestration"])
    reserved = states["budgets"]["reserved"].values()
    return {
        "spend": views.spend(states["performance"]),
        "models": views.models(states["performance"]),
        "strategies": outcomes["strategies"],
        "requests": outcomes["requests"],
        "budgets": views.budget_rows(states["budgets"], at),
        "open_reservations": len(reserved),
        "open_reserved_usd": to_usd(sum(amount for _, amount, _ in reserved)),
        "cached_answers": len(states["cache"]["entries"]),
        "recent_failures": views.recent_failures(states["failures"]),
    }


# Human output.


def _usd(amount: float) -> str:
    return "$" + (f"{amount:.10f}".rstrip("0").rstrip(".") or "0")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _table(align: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns as wide as their widest cell, aligned "l"eft or "r"ight as `align` says."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(w) if a == "l" else cell.rjust(w)
            for a, cell, w in zip(align, row, widths, strict=True)
        ).rstrip()
        for row in [header, *rows]
    ]


def _model_row(name: str, m: State) -> list[str]:
    errors = ", ".join(f"{kind} {n}" for kind, n in m["errors_by_kind"].items()) or "-"
    quality = ", ".join(
        f"{cap} {q['mean_score']:.2f} ({q['scores']})"
        for cap, q in m["quality"].items()
        if cap != "*"
    )
    tps = m["tokens_per_s"]
    return [
        name,
        str(m["calls"]),
        str(m["completed"]),
        str(m["failed"]),
        errors,
        _ms(m["latency_ms"]["p50"]),
        _ms(m["latency_ms"]["p95"]),
        _ms(m["ttft_ms"]["p50"]),
        "-" if tps is None else f"{tps:.0f}",
        f"{m['prompt_tokens']}+{m['completion_tokens']}",
        _usd(m["cost_usd"]),
        quality or "-",
        m["circuit"],
    ]


def _strategy_row(key: str, s: State) -> list[str]:
    agreement = "-" if s["agreement"] is None else f"{s['agreement']:.2f}"
    return [
        key,
        str(s["requests"]),
        str(s["failed"]),
        str(s["fallbacks"]),
        str(s["escalations"]),
        agreement,
        _usd(s["cost_usd"]),
        _usd(s["savings_usd"]),
        _ms(s["latency_ms"]["p50"]),
        _ms(s["latency_ms"]["p95"]),
    ]


def render(report: State) -> str:
    at = f" ({report['at']})" if report["at"] else ""
    f = report["figures"]
    spend = f["spend"]
    per_model = ", ".join(f"{m} {_usd(usd)}" for m, usd in spend["per_model_usd"].items())
    lines = [
        f"at position {report['position']}{at}",
        f"spend {_usd(spend['total_usd'])}" + (f": {per_model}" if per_model else ""),
        "",
    ]
    lines += _table(
        "lrrrlrrrrrrll",
        [
            "model",
            "calls",
            "ok",
            "failed",
            "errors",
            "p50 ms",
            "p95 ms",
            "ttft p50",
            "tok/s",
            "tokens",
            "cost",
            "quality (scores)",
            "circuit",
        ],
        [_model_row(name, m) for name, m in f["models"].items()],
    )
    lines.append("")
    lines += _table(
        "lrrrrrrrrr",
        [
            "strategy",
            "requests",
            "failed",
            "fallbacks",
            "escalations",
            "agreement",
            "cost",
            "saved",
            "p50 ms",
            "p95 ms",
        ],
        [_strategy_row(key, s) for key, s in f["strategies"].items()],
    )
    r = f["requests"]
    lines += [
        "",
        f"requests: {r['completed']} completed ({r['cached']} from the cache), "
        f"{r['failed']} failed",
    ]
    for b in f["budgets"]:
        lines.append(
            f"budget {b['scope']}: {_usd(b['limit_usd'])} a {b['period']}, "
            f"{_usd(b['spent_usd'])} spent, {_usd(b['reserved_usd'])} reserved, "
            f"{_usd(b['remaining_usd'])} left"
        )
    lines.append(f"open reservations: {f['open_reservations']} ({_usd(f['open_reserved_usd'])})")
    return "\n".join(lines)


# The command line.


def add_parser(commands: Any) -> None:
    """Add `stats` to `atom replay`'s subcommands (the argparse subparsers action)."""
    parser = commands.add_parser(
        "stats",
        help="the projections' figures as they stood at any point of the log",
        description=(
            "Fold the projections from position 0 up to --at (default: the end of the log) "
            "and print their figures: spend in all and per model, per-model calls, errors by "
            "kind, p50/p95 latency and time to first token, tokens per second and quality by "
            "capability, requests per strategy, budgets. Latencies are the upper edges of "
            "10%-wide histogram buckets, as the server keeps them. The log is only read."
        ),
    )
    parser.add_argument("--db", default="./atom.db", help="the event log (default: ./atom.db)")
    parser.add_argument(
        "--at",
        metavar="POS|TIME",
        help=f"{_timepoint.HELP}; a time means its last event at or before it",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def command(options: argparse.Namespace) -> int:
    """Run `atom replay stats`: 0, or 2 on a bad --at."""
    with open_reader(options.db) as reader:
        try:
            point = _timepoint.parse(options.at) if options.at else reader.head()
            position = _timepoint.reached_at(reader, point)
        except _timepoint.BadTimepoint as exc:
            print(f"atom replay stats: --at {exc}", file=sys.stderr)
            return 2
        with ProgressBar("folding") as progress:
            states = states_at(reader, position, progress)
        last = reader.read_page(position - 1, 1) if position else []
    at = last[0].recorded_at if last else None
    report = {"position": position, "at": at, "figures": figures(states, moment(at))}
    print(orjson.dumps(report).decode() if options.json else render(report))
    return 0
