"""`atom replay verify`: check a log's hash chain, positions and stream versions."""

from __future__ import annotations

import dataclasses

import orjson

from eventstore import VerifyReport, open_reader, verify_rows


def verify_log(path: str) -> VerifyReport:
    """Verify the event log at `path`, which must exist."""
    with open_reader(path) as store:
        return verify_rows(store.iter_raw())


def summary(report: VerifyReport) -> str:
    """One line: `ok: ...` when the log is intact, `bad: position N: ...` otherwise."""
    if not report.ok:
        return f"bad: position {report.first_bad_position}: {report.problem}"
    return (
        f"ok: {report.events} events in {report.streams} streams, head {report.head}, "
        f"chain {report.head_hash[:8]}…"
    )


def as_json(report: VerifyReport) -> str:
    """The report as one JSON object, with `ok` alongside its fields."""
    return orjson.dumps({"ok": report.ok, **dataclasses.asdict(report)}).decode()
