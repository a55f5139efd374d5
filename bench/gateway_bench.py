"""The gateway end to end: a fake upstream, `atom serve` in front of it, a load generator.

    .venv/bin/python bench/gateway_bench.py [--quick] [--modes full,normal] [--concurrency 1,16,64]
    .venv/bin/python bench/gateway_bench.py --nodes 1,2 --db postgresql://... [--concurrency 64]
    .venv/bin/python bench/gateway_bench.py --stream [--tokens 50] [--gap-ms 20] [--concurrency ...]

Three processes on 127.0.0.1, all started and stopped here: the fake OpenAI upstream
(`python -m tests.fakes.openai_server`, answering at once), `atom serve` with the durable log
(one openai-provider model pointing at the fake) and the load generator (this script with
`--loadgen`: one aiohttp ClientSession and connection pool, bounded by count and by time).
For each durability mode and concurrency it measures requests/s, p50 and p99 and errors for
the upstream directly and through /v1/chat/completions and /api/advanced-ai/process; the
server's CPU per request; the log's events, appends and commits per request (from
/metrics and from the log itself); and the server's peak RSS (VmHWM) after 2,000 and after
20,000 requests. Progress lines start with '#'; the last line is one JSON object.

With --stream (and --tokens, --gap-ms, --concurrency 100,500,1000) it measures streamed
answers instead, against an upstream that streams like a model: see bench/_stream_bench.py.

With --nodes and a PostgreSQL --db, it measures instead /v1/chat/completions at each
concurrency through N `atom serve` nodes on that one log (the load generator's client-side
round robin over them), for each N, beside one node on an SQLite log, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

ROOT: Final = Path(__file__).resolve().parent.parent
MODEL: Final = "fake-gpt"
KEY_ENV: Final = "ATOM_BENCH_UPSTREAM_KEY"
MESSAGES: Final = [{"role": "user", "content": "Say hello to the benchmark, briefly please."}]
REPLY: Final = "Hello, benchmark! This answer came back at once."
TICKS: Final = os.sysconf("SC_CLK_TCK")

# Per request, counted from the code path of a non-streamed request to one named model that
# answers (see atom_actors/gateway.py, calls.py and eventstore/store.py); the log's appends,
# commits and events are also measured below, from the server's /metrics and from the log.
COUNTS: Final = {
    "actor_hops": 0,
    "actor_hops_how": "counted: the model's Gate admits the call (a free slot on a closed "
    "circuit) and frees its slot on success on the loop, under its lock; the ModelActor is "
    "messaged only to queue, refuse, or record a failure (an ask: 2 thread crossings, a tell: 1)",
    "log_appends": 2,
    "log_appends_how": "counted and measured (log_appends_per_request): RequestReceived, "
    "RouteDecided, BudgetReserved and ModelCallStarted, committed before the upstream call; "
    "TokensStreamed, ModelCallCompleted, BudgetSettled and RequestCompleted, committed before "
    "the answer. Commits per request are measured (group commit shares them)",
    "writer_hops": 2,
    "writer_hops_how": "counted: each append is one hand-over to the log's writer thread; the "
    "writer wakes the loop once per group commit for all the appends it holds. A request alone "
    "in flight with durability normal (c=1) commits on the loop itself: 0 hand-overs",
    "json_encodes": 26,
    "json_encodes_how": "counted: on the loop 18 (8 events x data and metadata, the upstream "
    "request body, the response body), on the writer thread 8 (the hash chain's row per event)",
    "json_decodes": 22,
    "json_decodes_how": "counted: the request body, the 11 SSE chunks of the fake's answer "
    "(read at once, they reach the call as one Deltas item), and "
    "5 of the 8 events (data and metadata) folded by the live projections; the 3 no projection "
    "reads (RequestReceived, RouteDecided, TokensStreamed) are not decoded",
}


# ------------------------------------------------------------------------------ load generator


def _percentile(sorted_ms: Sequence[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    rank = max(0, min(len(sorted_ms) - 1, round(q * len(sorted_ms) + 0.5) - 1))
    return sorted_ms[rank]


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    concurrency: int = spec["concurrency"]
    count: int = spec["count"]
    payload = orjson.dumps(spec["body"])
    headers = {"Content-Type": "application/json", **spec["headers"]}
    expect = spec["expect"].encode()
    latencies: list[float] = []
    errors = 0
    error_samples: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    # Requests go to the URLs in turn: a client-side round robin over several nodes.
    urls = itertools.cycle(spec.get("urls") or [spec["url"]])
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> tuple[bool, float, str]:
            started = time.perf_counter()
            try:
                async with session.post(next(urls), data=payload, headers=headers) as response:
                    body = await response.read()
                    ok = response.status == 200 and expect in body
                    why = "" if ok else f"{response.status} {body[:200]!r}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                ok, why = False, repr(exc)
            return ok, (time.perf_counter() - started) * 1000, why

        # Open the pool's connections first: they are not what is measured.
        await asyncio.gather(*(one() for _ in range(min(concurrency * 2, count))))
        issued = 0
        deadline = time.perf_counter() + spec["seconds"]

        async def worker() -> None:
            nonlocal issued, errors
            while issued < count and time.perf_counter() < deadline:
                issued += 1
                ok, ms, why = await one()
                latencies.append(ms)
                if not ok:
                    errors += 1
                    if len(error_samples) < 3:
                        error_samples.append(why)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(_percentile(latencies, 0.50), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
        "errors": errors,
        "error_samples": error_samples,
    }


def loadgen_main(spec_json: str) -> None:
    print(orjson.dumps(asyncio.run(_load(orjson.loads(spec_json)))).decode(), flush=True)


# ---------------------------------------------------------------------------------- processes


def _say(message: str) -> None:
    print(f"# {message}", flush=True)


def _read_line(process: subprocess.Popen[str], pattern: str, timeout: float) -> re.Match[str]:
    """Wait for a line of the process's stdout matching `pattern`."""
    assert process.stdout is not None
    found: list[re.Match[str]] = []
    seen: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                found.append(match)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        raise RuntimeError(f"no line matching {pattern!r} within {timeout}s: {''.join(seen)!r}")
    return found[0]


def _drain(process: subprocess.Popen[str]) -> None:
    """Keep reading a process's output so that it never blocks on a full pipe."""

    def read() -> None:
        assert process.stdout is not None
        for _line in process.stdout:
            pass

    threading.Thread(target=read, daemon=True).start()


def _stop(process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def fake_upstream() -> Iterator[str]:
    with upstream_process("--reply", REPLY) as (base_url, _):
        yield base_url


@contextmanager
def upstream_process(*options: str) -> Iterator[tuple[str, int]]:
    """The fake OpenAI upstream (`tests.fakes.openai_server` with `options`): its URL and pid."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = _read_line(process, r"^(http://\S+)", 30).group(1)
        _drain(process)
        yield base_url, process.pid
    finally:
        _stop(process)


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    key: str
    db: str

    @property
    def pid(self) -> int:
        return self.process.pid


def _config(directory: str, base_url: str, durability: str, max_concurrency: int = 128) -> str:
    path = os.path.join(directory, "atom.toml")
    with open(path, "w") as f:
        f.write(
            f"""[log]
path = "{os.path.join(directory, "atom.db")}"
durability = "{durability}"

[server]
host = "127.0.0.1"
port = 0

[[models]]
name = "{MODEL}"
provider = "openai"
model = "{MODEL}"
base_url = "{base_url}"
api_key_env = "{KEY_ENV}"
input_usd_per_mtok = 0.5
output_usd_per_mtok = 1.5
# The bulkhead admits as many calls as the benchmark runs at once.
max_concurrency = {max_concurrency}
"""
        )
    return path


@contextmanager
def atom_serve(
    directory: str,
    base_url: str,
    durability: str,
    loop: str = "auto",
    db: str | None = None,
    key: str | None = None,
    max_concurrency: int = 128,
) -> Iterator[Server]:
    """`atom serve` on an SQLite log in `directory`, or on the log at `db`; the admin key it
    prints, or `key` when the log has one already (another node made it)."""
    config = _config(directory, base_url, durability, max_concurrency)
    # `atom serve` of this checkout (PYTHONPATH), whatever checkout the venv was installed from.
    env = {**os.environ, KEY_ENV: "sk-bench", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    atom = "import sys; from api.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", atom, "serve", "--config", config, "--rate-limit", "0"]
    process = subprocess.Popen(
        [*command, "--loop", loop, *(["--db", db] if db else [])],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        if key is None:
            key = _read_line(process, r"^(atom_\S+)\s*$", 60).group(1)
        url = _read_line(process, r"serving on (http://\S+)", 60).group(1)
        _drain(process)
        yield Server(process, url, key, db or os.path.join(directory, "atom.db"))
    finally:
        _stop(process)


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def event_loop(server: Server) -> str:
    """Which event loop the server runs on, as its /health says."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{server.url}/api/advanced-ai/health", timeout=10) as answer:
            body = answer.read()
    except urllib.error.HTTPError as not_ready:  # 503 has the same document
        body = not_ready.read()
    loop: str = orjson.loads(body)["event_loop"]
    return loop


def _get(url: str, key: str) -> bytes:
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body: bytes = response.read()
        return body


def caught_up(servers: Sequence[Server], key: str, timeout: float = 900) -> int:
    """Wait until every server's projections include the log's head as it is now; the head."""
    head: int = orjson.loads(_get(f"{servers[0].url}/api/advanced-ai/log", key))["head"]
    deadline = time.monotonic() + timeout
    for server in servers:
        url = f"{server.url}/api/advanced-ai/timeseries"
        while orjson.loads(_get(url, key))["position"] < head:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server.url} did not reach position {head}")
            time.sleep(0.5)
    return head


def log_counters(server: Server) -> dict[str, float]:
    """atom_log_* counters from the server's /metrics."""
    text = _get(f"{server.url}/metrics", server.key).decode()
    counters = {}
    for line in text.splitlines():
        if line.startswith("atom_log_") and " " in line:
            name, value = line.rsplit(" ", 1)
            counters[name.removeprefix("atom_log_").removesuffix("_total")] = float(value)
    return counters


def load(
    url: str,
    body: dict[str, Any],
    concurrency: int,
    count: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    expect: str = REPLY,
    urls: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the load generator in its own process (over `urls` in turn, if given); its figures."""
    spec = {
        "url": url,
        "urls": list(urls),
        "body": body,
        "headers": headers or {},
        "concurrency": concurrency,
        "count": count,
        "seconds": seconds,
        "expect": expect,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--loadgen", orjson.dumps(spec).decode()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class Plan:
    concurrency: tuple[int, ...]
    count_c1: int
    count: int
    seconds: float
    warmup: int
    rss_total: int


def _events_in_log(db: str) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        requests = conn.execute(
            "SELECT count(*) FROM events WHERE type = 'RequestReceived'"
        ).fetchone()[0]
        by_type = dict(
            conn.execute(
                "SELECT type, count(*) FROM events WHERE stream_id LIKE 'request-%' GROUP BY type"
            ).fetchall()
        )
    finally:
        conn.close()
    total = sum(by_type.values())
    return {
        "requests_logged": requests,
        "events_per_request": round(total / requests, 3) if requests else None,
        "events_by_type_per_request": {
            t: round(n / requests, 3) for t, n in sorted(by_type.items())
        }
        if requests
        else {},
    }


def run_mode(base_url: str, durability: str, plan: Plan, loop: str) -> dict[str, Any]:
    upstream = f"{base_url}/chat/completions"
    direct_body = {"model": MODEL, "messages": MESSAGES}
    chat_body = {"model": MODEL, "messages": MESSAGES}
    process_body = {"model": MODEL, "messages": MESSAGES}
    with tempfile.TemporaryDirectory(prefix="atom-bench-") as directory:
        with atom_serve(directory, base_url, durability, loop) as server:
            auth = {"Authorization": f"Bearer {server.key}"}
            chat_url = f"{server.url}/v1/chat/completions"
            process_url = f"{server.url}/api/advanced-ai/process"
            top = max(plan.concurrency)
            served = 0
            _say(f"{durability}: atom serve pid {server.pid} at {server.url}")
            # The first 2,000 requests, at the highest concurrency: what RSS grows to at first.
            warm = load(chat_url, chat_body, top, plan.warmup, 120, auth)
            served += warm["requests"]
            rss_first = peak_rss_mb(server.pid)
            _say(
                f"{durability}: warm-up {warm['requests']} requests at c={top}: "
                f"{warm['rps']} req/s, {warm['errors']} errors; peak RSS {rss_first} MB"
            )
            results: dict[str, Any] = {"event_loop": event_loop(server)}
            for c in plan.concurrency:
                count = plan.count_c1 if c == 1 else plan.count
                row: dict[str, Any] = {}
                for name, url, body, headers in (
                    ("upstream", upstream, direct_body, {}),
                    ("chat_completions", chat_url, chat_body, auth),
                    ("process", process_url, process_body, auth),
                ):
                    through = name != "upstream"
                    before_cpu = cpu_seconds(server.pid)
                    before_log = log_counters(server) if through else {}
                    figures = load(url, body, c, count, plan.seconds, headers)
                    if through:
                        n = figures["requests"] + min(c * 2, count)  # with the pool's warm-up
                        served += n
                        after_log = log_counters(server)
                        figures["server_cpu_ms_per_request"] = round(
                            (cpu_seconds(server.pid) - before_cpu) * 1000 / n, 3
                        )
                        for counter in ("appends", "commits", "events"):
                            if counter in after_log:
                                figures[f"log_{counter}_per_request"] = round(
                                    (after_log[counter] - before_log.get(counter, 0)) / n, 3
                                )
                    if not figures["error_samples"]:
                        del figures["error_samples"]
                    row[name] = figures
                    _say(
                        f"{durability} c={c} {name}: {figures['rps']} req/s, "
                        f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
                        f"{figures['errors']} errors"
                        + (
                            f", {figures['server_cpu_ms_per_request']} ms CPU/request"
                            if through
                            else ""
                        )
                    )
                results[f"c{c}"] = row
            if 1 in plan.concurrency:
                c1 = results["c1"]
                results["added_p50_ms_c1"] = {
                    name: round(c1[name]["p50_ms"] - c1["upstream"]["p50_ms"], 3)
                    for name in ("chat_completions", "process")
                }
            while served < plan.rss_total:
                more = load(chat_url, chat_body, top, plan.rss_total - served, 300, auth)
                served += more["requests"] + min(top * 2, plan.rss_total - served)
            rss_last = peak_rss_mb(server.pid)
            _say(f"{durability}: {served} requests served; peak RSS {rss_last} MB")
            results["rss_mb"] = {
                "after_requests": [plan.warmup, served],
                "first": rss_first,
                "last": rss_last,
                "ratio": round(rss_last / rss_first, 4),
            }
        results["log"] = _events_in_log(server.db)
        _say(f"{durability}: log {results['log']}")
    return results


def run_nodes(
    base_url: str, db: str, nodes: Sequence[int], plan: Plan, loop: str
) -> dict[str, Any]:
    """/v1/chat/completions through N nodes on one PostgreSQL log, for each N, and through
    one node on an SQLite log, at each concurrency of the plan."""
    body = {"model": MODEL, "messages": MESSAGES}
    results: dict[str, Any] = {}

    def measure(name: str, urls: list[str], key: str) -> None:
        auth = {"Authorization": f"Bearer {key}"}
        chat = [f"{url}/v1/chat/completions" for url in urls]
        load(chat[0], body, max(plan.concurrency), plan.warmup, 120, auth, urls=chat)
        row = {}
        for c in plan.concurrency:
            figures = load(chat[0], body, c, plan.count, plan.seconds, auth, urls=chat)
            if not figures["error_samples"]:
                del figures["error_samples"]
            row[f"c{c}"] = figures
            _say(
                f"{name} c={c}: {figures['rps']} req/s, p50 {figures['p50_ms']} ms, "
                f"p99 {figures['p99_ms']} ms, {figures['errors']} errors"
            )
        results[name] = row

    with _tempdir() as directory, atom_serve(directory, base_url, "full", loop) as server:
        measure("sqlite_1", [server.url], server.key)
    # The log's first node prints the admin key it makes; every later node, in this round or
    # the next, finds it made already.
    admin: str | None = None
    for n in nodes:
        with contextlib.ExitStack() as stack:

            def node(key: str | None) -> Server:
                where = stack.enter_context(_tempdir())
                return stack.enter_context(atom_serve(where, base_url, "full", loop, db, key))

            first = node(admin)
            admin = first.key
            servers = [first, *(node(admin) for _ in range(n - 1))]
            # Nodes that join a log fold it from its start; the figures are of nodes that have.
            started = time.perf_counter()
            head = caught_up(servers, admin)
            waited = round(time.perf_counter() - started, 1)
            _say(f"postgresql_{n}: caught up with the log's {head} events in {waited} s")
            measure(f"postgresql_{n}", [s.url for s in servers], admin)
            results[f"postgresql_{n}"]["caught_up"] = {"events": head, "seconds": waited}
    return results


@contextmanager
def _tempdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="atom-bench-") as directory:
        yield directory


def _targets(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, met or not, per mode."""
    met: dict[str, Any] = {}
    for mode, r in results.items():
        c64 = r.get("c64", {}).get("chat_completions")
        c1 = r.get("added_p50_ms_c1", {}).get("chat_completions")
        limit = 2.0 if mode == "normal" else 6.0
        met[mode] = {
            "c64_chat_1000rps_no_errors_p99_100ms": None
            if c64 is None
            else c64["rps"] >= 1000 and c64["errors"] == 0 and c64["p99_ms"] < 100,
            f"c1_chat_added_p50_under_{limit:g}ms": None if c1 is None else c1 < limit,
            "rss_within_5pct": r["rss_mb"]["ratio"] <= 1.05,
        }
    return met


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--modes", default="full,normal", help="durability modes to run")
    parser.add_argument("--concurrency", help="default 1,16,64 (--stream: 100,500,1000)")
    parser.add_argument("--loop", default="auto", help="the server's loop (atom serve --loop)")
    parser.add_argument("--nodes", metavar="N,M", help="node counts to run on --db (PostgreSQL)")
    parser.add_argument("--db", metavar="URL", help="a postgresql:// log for --nodes")
    parser.add_argument("--stream", action="store_true", help="streamed answers (see below)")
    parser.add_argument("--tokens", type=int, default=50, help="--stream: tokens per answer")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="--stream: ms between tokens")
    parser.add_argument("--seconds", type=float, default=5.0, help="--stream: s measured per run")
    parser.add_argument("--loadgen-procs", type=int, default=2, help="--stream: load processes")
    parser.add_argument("--loadgen", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loadgen:
        loadgen_main(args.loadgen)
        return
    if args.stream:
        from _stream_bench import run as run_stream

        args.concurrency = args.concurrency or "100,500,1000"
        print(orjson.dumps(run_stream(args)).decode(), flush=True)
        return
    args.concurrency = args.concurrency or "1,16,64"
    if (args.nodes is None) != (args.db is None):
        parser.error("--nodes and --db go together")
    concurrency = tuple(int(c) for c in args.concurrency.split(","))
    plan = (
        Plan(concurrency, count_c1=300, count=1500, seconds=10, warmup=2000, rss_total=6000)
        if args.quick
        else Plan(concurrency, count_c1=1500, count=6000, seconds=20, warmup=2000, rss_total=20000)
    )
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    _say(f"plan {plan}; {os.cpu_count()} CPUs; python {platform.python_version()}")
    started = time.perf_counter()
    if args.nodes is not None:
        counts = [int(n) for n in args.nodes.split(",")]
        with fake_upstream() as base_url:
            nodes = run_nodes(base_url, args.db, counts, plan, args.loop)
        summary = {
            "bench": "gateway_nodes",
            "quick": args.quick,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "nodes": nodes,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(orjson.dumps(summary).decode(), flush=True)
        return
    results: dict[str, Any] = {}
    with fake_upstream() as base_url:
        _say(f"fake upstream at {base_url}")
        for mode in modes:
            results[mode] = run_mode(base_url, mode, plan, args.loop)
    summary = {
        "bench": "gateway",
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "modes": results,
        "per_request_counts": COUNTS,
        "targets_met": _targets(results),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(orjson.dumps(summary).decode(), flush=True)


if __name__ == "__main__":
    main()
