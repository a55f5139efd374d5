"""Event store throughput and latency; prints one JSON line last.

.venv/bin/python bench/eventstore_bench.py [--events 500000] [--dir /tmp] [--db postgresql://...]

Without --db every measurement writes a new SQLite file; with a PostgreSQL URL, a new schema
of that database each (dropped at the end), and `raw_sqlite_eps` is then the same ceiling on
PostgreSQL: a plain COPY of the same rows in one transaction.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import orjson
import psycopg

from eventstore import (
    Durability,
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    Row,
    is_postgres,
    open_store,
)
from eventstore._chain import GENESIS, event_hash
from eventstore._pg_schema import create_log
from eventstore._schema import connect
from eventstore.reader import COLUMNS


def _event(i: int) -> NewEvent:
    return NewEvent(
        "ModelCallCompleted",
        {
            "model": f"m{i % 7}",
            "prompt_tokens": 40 + i % 13,
            "completion_tokens": 90,
            "cost_usd": 0.0012,
        },
        {"correlation_id": f"req-{i // 10}"},
    )


def _rows(n: int, batch: int) -> list[Row]:
    """The rows `_batches` would store, hashed and chained, for the raw ceiling."""
    rows: list[Row] = []
    previous = GENESIS
    versions: dict[str, int] = {}
    position = 0
    for stream, events in _batches(n, batch):
        for e in events:
            position += 1
            version = versions[stream] = versions.get(stream, -1) + 1
            data = orjson.dumps(e.data, option=orjson.OPT_SORT_KEYS).decode()
            meta = orjson.dumps(dict(e.metadata), option=orjson.OPT_SORT_KEYS).decode()
            at = "2026-11-29T00:00:00.000000Z"
            previous = event_hash(
                previous, position, stream, version, e.event_id, e.type, 1, data, meta, at
            )
            rows.append(
                (position, stream, version, e.event_id, e.type, 1, data, meta, at, previous)
            )
    return rows


def _batches(n: int, batch: int) -> list[tuple[str, list[NewEvent]]]:
    """The workload both measurements write: batches of `batch` events over 50 streams."""
    events = [_event(i) for i in range(n)]
    return [(f"s{i // batch % 50}", events[i : i + batch]) for i in range(0, n, batch)]


def raw_eps(location: str, n: int, batch: int = 100) -> float:
    """The local ceiling: the same rows into the same schema by the plainest bulk insert
    (SQLite's executemany, PostgreSQL's COPY), in one transaction."""
    rows = _rows(n, batch)
    if is_postgres(location):
        create_log(location, create=True)
        with psycopg.connect(location) as pg:
            start = time.perf_counter()
            with pg.cursor() as cursor, cursor.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            pg.commit()
            return n / (time.perf_counter() - start)
    conn = connect(location)
    start = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def batch_append_eps(path: str, n: int, batch: int = 100, window: int = 32) -> float:
    """Batches of `batch` events, up to `window` batches in flight, durability full."""
    batches = _batches(n, batch)
    with open_store(path) as store:
        start = time.perf_counter()
        pending: list[Future[list[int]]] = []
        for stream, events in batches:
            pending.append(store.append_future(stream, events))
            if len(pending) >= window:
                pending.pop(0).result()
        for f in pending:
            f.result()
        return n / (time.perf_counter() - start)


def concurrent_appends(
    path: str, appenders: int, per_appender: int, window: int, durability: Durability
) -> dict[str, float]:
    """`appenders` threads, one event per append, each with up to `window` appends in flight."""
    latencies: list[list[float]] = [[] for _ in range(appenders)]
    with open_store(path, durability=durability) as store:
        barrier = threading.Barrier(appenders + 1)

        def run(k: int) -> None:
            events = [_event(i) for i in range(per_appender)]
            mine = latencies[k]
            in_flight: list[tuple[float, Future[list[int]]]] = []
            barrier.wait()
            for i, e in enumerate(events):
                in_flight.append((time.perf_counter(), store.append_future(f"a{k}-{i % 20}", [e])))
                if len(in_flight) >= window:
                    t0, f = in_flight.pop(0)
                    f.result()
                    mine.append(time.perf_counter() - t0)
            for t0, f in in_flight:
                f.result()
                mine.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(appenders)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        stats = store.stats
    flat = sorted(x for xs in latencies for x in xs)
    return {
        "eps": appenders * per_appender / elapsed,
        "p50_ms": statistics.median(flat) * 1000,
        "p99_ms": flat[int(len(flat) * 0.99)] * 1000,
        "events_per_commit": stats.events / max(stats.commits, 1),
    }


class _Spend:
    """A projection like the dashboard's: calls, tokens and cost per model."""

    name = "bench_spend"
    version = 1

    def initial(self) -> dict[str, Any]:
        return {}

    def apply(self, state: dict[str, Any], event: RecordedEvent) -> dict[str, Any]:
        if event.type == "ModelCallCompleted":
            data = event.data
            row = state.get(data["model"])
            if row is None:
                row = state[data["model"]] = {"calls": 0, "tokens": 0, "cost_usd": 0.0}
            row["calls"] += 1
            row["tokens"] += data["prompt_tokens"] + data["completion_tokens"]
            row["cost_usd"] += data["cost_usd"]
        return state


def rebuild_eps(path: str, n: int) -> float:
    with open_store(path, durability=Durability.NORMAL) as store:
        events = [_event(i) for i in range(n)]
        pending = [
            store.append_future(f"s{i // 1000}", events[i : i + 1000]) for i in range(0, n, 1000)
        ]
        for f in pending:
            f.result()
        runner = ProjectionRunner(store, _Spend(), page_size=20_000)
        start = time.perf_counter()
        runner.catch_up()
        elapsed = time.perf_counter() - start
        assert runner.position == n and sum(r["calls"] for r in runner.state.values()) == n
        runner.close()
        return n / elapsed


_PROCESS = """
import sys, threading, time
from eventstore import NewEvent, open_store
location, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open_store(location) as store:
    events = [NewEvent("ModelCallCompleted", {"i": i}) for i in range(count)]
    sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
    def run(k):
        pending = []
        for i in range(k, count, 4):
            pending.append(store.append_future(f"{name}-{k}-{i % 20}", [events[i]]))
            if len(pending) >= 32:
                pending.pop(0).result()
        for f in pending:
            f.result()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
"""


def processes_eps(location: str, processes: int, per_process: int = 20_000) -> float:
    """Several OS processes, each a store with 4 appenders, appending to one log at once: what
    the table lock that keeps positions in commit order costs when writers contend."""
    open_store(location).close()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, location, f"p{k}", str(per_process)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(processes)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    start = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        assert child.wait() == 0
    return processes * per_process / (time.perf_counter() - start)


@contextlib.contextmanager
def _logs(url: str | None, directory: str) -> Iterator[Callable[[str], str]]:
    """Where each measurement's new log goes: a file, or a schema of the PostgreSQL database."""
    if url is None:
        yield lambda name: os.path.join(directory, name)
        return
    schemas: list[str] = []

    def schema(name: str) -> str:
        schema = "bench_" + name.removesuffix(".db")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        schemas.append(schema)
        joiner = "&" if "?" in url else "?"
        return f"{url}{joiner}options=-csearch_path%3D{schema}"

    try:
        yield schema
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for name in schemas:
                conn.execute(f"DROP SCHEMA {name} CASCADE")


def _server(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def _timed(label: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    print(f"# {label}: {result} ({time.perf_counter() - start:.1f}s)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500_000, help="events for the rebuild")
    parser.add_argument("--dir", default=None, help="where the SQLite databases go")
    parser.add_argument("--db", default=None, help="a postgresql:// URL: measure PostgreSQL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d, _logs(args.db, d) as p:
        raw = _timed("raw_sqlite_eps", lambda: raw_eps(p("raw.db"), 100_000))
        batch = _timed("batch_append_eps", lambda: batch_append_eps(p("batch.db"), 100_000))
        full = _timed(
            "concurrent (8 appenders, window 32, full)",
            lambda: concurrent_appends(p("c1.db"), 8, 5000, 32, Durability.FULL),
        )
        closed = _timed(
            "concurrent (8 appenders, window 1, full)",
            lambda: concurrent_appends(p("c2.db"), 8, 1000, 1, Durability.FULL),
        )
        rebuild = _timed("rebuild_eps", lambda: rebuild_eps(p("rebuild.db"), args.events))
        for processes in (1, 2, 4):
            _timed(
                f"processes_eps ({processes} x 4 appenders, window 32, full)",
                functools.partial(processes_eps, p(f"multi{processes}.db"), processes),
            )
        database = f"SQLite {sqlite3.sqlite_version}" if args.db is None else _server(args.db)
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {database}",
        "raw_sqlite_eps": round(raw),
        "batch_append_eps": round(batch),
        "batch_vs_raw": round(batch / raw, 3),
        "concurrent_append_eps": round(full["eps"]),
        "append_p50_ms": round(full["p50_ms"], 3),
        "append_p99_ms": round(full["p99_ms"], 3),
        "events_per_commit": round(full["events_per_commit"], 1),
        "closed_loop_append_eps": round(closed["eps"]),
        "closed_loop_p50_ms": round(closed["p50_ms"], 3),
        "closed_loop_p99_ms": round(closed["p99_ms"], 3),
        "rebuild_events": args.events,
        "rebuild_eps": round(rebuild),
    }
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
