"""Event store throughput and latency; prints one JSON line last.

.venv/bin/python bench/eventstore_bench.py [--events 500000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import orjson

from eventstore import (
    Durability,
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    SQLiteStore,
)
from eventstore._chain import GENESIS, event_hash
from eventstore._schema import connect


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


def _batches(n: int, batch: int) -> list[tuple[str, list[NewEvent]]]:
    """The workload both measurements write: batches of `batch` events over 50 streams."""
    events = [_event(i) for i in range(n)]
    return [(f"s{i // batch % 50}", events[i : i + batch]) for i in range(0, n, batch)]


def raw_sqlite_eps(path: str, n: int, batch: int = 100) -> float:
    """The local ceiling: plain executemany of the same rows into the same schema, one commit."""
    conn = connect(path)
    rows = []
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
    with SQLiteStore(path) as store:
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
    with SQLiteStore(path, durability=durability) as store:
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
    with SQLiteStore(path, durability=Durability.NORMAL) as store:
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


def _timed(label: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    print(f"# {label}: {result} ({time.perf_counter() - start:.1f}s)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500_000, help="events for the rebuild")
    parser.add_argument("--dir", default=None, help="where the databases go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:

        def p(name: str) -> str:
            return os.path.join(d, name)

        raw = _timed("raw_sqlite_eps", lambda: raw_sqlite_eps(p("raw.db"), 100_000))
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
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
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
