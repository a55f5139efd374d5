"""gateway_bench.py --stream: streamed answers that last like a model's, many at a time.

Three kinds of processes on 127.0.0.1: the fake OpenAI upstream streaming `--tokens` tokens
`--gap-ms` apart (its first token after one gap too), `atom serve` in front of it (one model,
max_concurrency 2048) and load generators (`--loadgen-procs` processes of this module, each an
aiohttp client on uvloop running its share of the streams). Each client reads a stream to its
end and starts the next; the clients start one stream-length apart in turn, so that streams
overlap as in steady traffic, and keep going for `--seconds` after that ramp.

For each concurrency the upstream is measured alone, then through /v1/chat/completions:
streams completed per second within the window, time to first token, the largest gap between
two tokens of a stream (p99 over streams), the server's CPU per token delivered, its peak
RSS, the streams that failed or ended other than exactly as the upstream sent them (errors)
and the tokens they lacked (tokens_lost), and how busy the machine's cores were while each
was measured (machine_busy: they also run the upstream and the load generators). Then, at
the highest concurrency, /api/advanced-ai/process with SSE; and at 500 streams (or the
nearest below), the WebSocket fan-out: 200 subscribers on `requests`, 50 following token
topics, and one subscriber that reads nothing, which the server cuts (4008) once its buffers
and its queue are full, while the rest and the streams go on (`slow_clients_cut` says
whether that happened in the run; once it has, the subscriber reads what it left, and
`slow_subscriber_close_code` is the code of the close frame it finds there).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, NamedTuple

import orjson
from gateway_bench import (
    MODEL,
    ROOT,
    Server,
    _say,
    atom_serve,
    cpu_seconds,
    peak_rss_mb,
    upstream_process,
)

MESSAGES: Final = [{"role": "user", "content": "Tell the streaming benchmark a story."}]
# A stream's record: ok, ttft_ms, largest gap ms, tokens received, end (wall clock).
Record = tuple[bool, float, float, int, float]
FANOUT_CONCURRENCY: Final = 500
REQUEST_WATCHERS: Final = 200
TOKEN_WATCHERS: Final = 50


def reply_of(tokens: int) -> str:
    """The upstream's answer: `tokens` tokens the fake streams one by one, each numbered."""
    return "".join(f" t{i}" for i in range(tokens))


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


# ------------------------------------------------------------------------------ load generator


def _openai_text(event: bytes, state: dict[str, bool]) -> str | None:
    """The token an OpenAI chunk carries; marks [DONE] and in-stream errors."""
    at = event.find(b"data: ")
    if at < 0:
        return None
    data = event[at + 6 :]
    if data == b"[DONE]":
        state["done"] = True
        return None
    chunk = orjson.loads(data)
    if "error" in chunk:
        state["failed"] = True
        return None
    choices = chunk.get("choices")
    if not choices:
        return None
    text: str | None = choices[0].get("delta", {}).get("content")
    return text or None


def _process_text(event: bytes, state: dict[str, bool]) -> str | None:
    """The token a /process `token` event carries; marks `done` and `error`."""
    if event.startswith(b"event: token"):
        text: str = orjson.loads(event[event.index(b"data: ") + 6 :])["text"]
        return text
    if event.startswith(b"event: done"):
        state["done"] = True
    elif event.startswith(b"event: error"):
        state["failed"] = True
    return None


async def _run_streams(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    payload = orjson.dumps(spec["body"])
    headers = {"Content-Type": "application/json", **spec["headers"]}
    reply: str = spec["reply"]
    take = _process_text if spec["kind"] == "process" else _openai_text
    start, ramp, total = spec["start"], spec["ramp"], spec["total"]
    end = start + ramp + spec["seconds"]
    records: list[Record] = []
    samples: list[str] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> Record:
            state = {"done": False, "failed": False}
            texts: list[str] = []
            began = time.perf_counter()
            first = last = 0.0
            gap = 0.0
            why = ""
            try:
                async with session.post(spec["url"], data=payload, headers=headers) as response:
                    if response.status != 200:
                        why = f"{response.status} {(await response.read())[:200]!r}"
                    else:
                        buffer = b""
                        while chunk := await response.content.readany():
                            now = time.perf_counter()
                            *events, buffer = (buffer + chunk).split(b"\n\n")
                            for event in events:
                                if (text := take(event, state)) is None:
                                    continue
                                if not texts:
                                    first = now
                                else:
                                    gap = max(gap, now - last)
                                last = now
                                texts.append(text)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                why = repr(exc)
            ok = not why and state["done"] and not state["failed"] and "".join(texts) == reply
            if not ok and len(samples) < 3:
                samples.append(why or f"{len(texts)} tokens, done={state['done']}")
            ttft = (first - began) * 1000 if texts else math.nan
            return ok, ttft, gap * 1000, len(texts), time.time()

        async def client(index: int) -> None:
            await asyncio.sleep(max(0.0, start + ramp * index / total - time.time()))
            while time.time() < end:
                records.append(await one())

        first_index = spec["first"]
        await asyncio.gather(*(client(first_index + i) for i in range(spec["clients"])))
    return {"records": records, "samples": samples}


def loadgen_main(spec_json: str, out: str) -> None:
    import uvloop

    _answer(out, uvloop.run(_run_streams(orjson.loads(spec_json))))


def _answer(out: str, result: dict[str, Any]) -> None:
    # To a file, not stdout: after uvloop.run, a write of more than 64 KB to a stdout pipe
    # was cut there without an error (seen with 1,000 streams' records).
    with open(out, "wb") as f:
        f.write(orjson.dumps(result))


class _Child(NamedTuple):
    process: subprocess.Popen[bytes]
    out: str


def _spawn(role: str, spec: dict[str, Any]) -> _Child:
    """This module as a `--loadgen` or `--watch` process, answering in a file of its own."""
    handle, out = tempfile.mkstemp(prefix="atom-bench-", suffix=".json")
    os.close(handle)
    command = [sys.executable, __file__, role, orjson.dumps(spec).decode(), out]
    return _Child(subprocess.Popen(command, cwd=ROOT), out)


def _kill(children: Sequence[_Child]) -> None:
    """Stop the children still running (a run that failed before collecting them)."""
    for child in children:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


def _collect(child: _Child, timeout: float) -> dict[str, Any]:
    try:
        if child.process.wait(timeout=timeout) != 0:
            raise RuntimeError(f"a bench process failed with {child.process.returncode}")
        with open(child.out, "rb") as f:
            result: dict[str, Any] = orjson.loads(f.read())
        return result
    finally:
        os.unlink(child.out)


def streams(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    kind: str,
    concurrency: int,
    procs: int,
    reply: str,
    ramp: float,
    seconds: float,
) -> dict[str, Any]:
    """Run `concurrency` clients over `procs` processes, starting in a second; their figures."""
    start = time.time() + 1.0  # the processes' start-up is not measured
    per = [concurrency // procs + (i < concurrency % procs) for i in range(procs)]
    firsts = [sum(per[:i]) for i in range(procs)]
    shared = {"url": url, "body": body, "headers": headers, "kind": kind, "reply": reply,
              "start": start, "ramp": ramp, "seconds": seconds, "total": concurrency}  # fmt: skip
    running = [
        _spawn("--loadgen", {**shared, "first": first, "clients": clients})
        for first, clients in zip(firsts, per, strict=True)
        if clients
    ]
    window = (start + ramp, start + ramp + seconds)
    busy: list[float] = []
    sampler = threading.Thread(target=lambda: busy.append(machine_busy(*window)), daemon=True)
    sampler.start()
    try:
        results = [_collect(child, ramp + seconds + 180) for child in running]
        sampler.join()
    finally:
        _kill(running)
    records = [tuple(r) for result in results for r in result["records"]]
    done = [r for r in records if r[0] and window[0] <= r[4] <= window[1]]
    return {
        "streams": len(records),
        "streams_per_s": round(len(done) / seconds, 1),
        "ttft_p50_ms": round(_percentile([r[1] for r in records if r[3]], 0.50), 2),
        "ttft_p99_ms": round(_percentile([r[1] for r in records if r[3]], 0.99), 2),
        "gap_p99_ms": round(_percentile([r[2] for r in records if r[3]], 0.99), 2),
        "tokens": sum(r[3] for r in records),
        "errors": sum(not r[0] for r in records),
        "machine_busy": busy[0] if busy else math.nan,
        "error_samples": [s for result in results for s in result["samples"]][:3],
    }


def _cpu_times() -> tuple[int, int]:
    """The machine's CPU time so far, in all and idle (with I/O wait), in clock ticks."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def machine_busy(start: float, end: float) -> float:
    """The share of all the machine's cores busy between two wall-clock times (waits for them)."""
    time.sleep(max(0.0, start - time.time()))
    total, idle = _cpu_times()
    time.sleep(max(0.0, end - time.time()))
    total_after, idle_after = _cpu_times()
    return round(1 - (idle_after - idle) / max(total_after - total, 1), 3)


# ---------------------------------------------------------------------------------- processes


@contextmanager
def paced_upstream(tokens: int, gap_ms: float) -> Iterator[tuple[str, int]]:
    """The fake OpenAI upstream streaming like a model, on uvloop; its URL and pid."""
    with upstream_process(
        "--uvloop", "--reply", reply_of(tokens), "--tokens-per-second", str(1000 / gap_ms),
        "--first-token-delay", str(gap_ms / 1000),
    ) as (base_url, pid):  # fmt: skip
        yield base_url, pid


def _lost(figures: dict[str, Any], tokens: int) -> int:
    return int(figures["streams"] * tokens - figures["tokens"])


def measure(
    server: Server,
    base_url: str,
    concurrency: int,
    args: Any,
) -> dict[str, Any]:
    """The upstream alone, then through ATOM's OpenAI route, at one concurrency."""
    reply = reply_of(args.tokens)
    ramp = args.tokens * args.gap_ms / 1000
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    common = {"kind": "openai", "concurrency": concurrency, "procs": args.loadgen_procs,
              "reply": reply, "ramp": ramp, "seconds": args.seconds}  # fmt: skip
    upstream_headers = {"Authorization": "Bearer sk-bench"}
    direct = streams(f"{base_url}/chat/completions", body, upstream_headers, **common)
    auth = {"Authorization": f"Bearer {server.key}"}
    before = cpu_seconds(server.pid)
    atom = streams(f"{server.url}/v1/chat/completions", body, auth, **common)
    cpu_ms = (cpu_seconds(server.pid) - before) * 1000
    row = {
        "streams_per_s": {"atom": atom["streams_per_s"], "direct": direct["streams_per_s"]},
        "ttft_added_p50_ms": round(atom["ttft_p50_ms"] - direct["ttft_p50_ms"], 2),
        "ttft_added_p99_ms": round(atom["ttft_p99_ms"] - direct["ttft_p99_ms"], 2),
        "gap_p99_ms": {"atom": atom["gap_p99_ms"], "direct": direct["gap_p99_ms"]},
        "server_cpu_ms_per_token": round(cpu_ms / max(atom["tokens"], 1), 4),
        "peak_rss_mb": peak_rss_mb(server.pid),
        "errors": atom["errors"],
        "tokens_lost": _lost(atom, args.tokens),
        # Both cores also run the upstream and the load generators: how full they were.
        "machine_busy": {"atom": atom["machine_busy"], "direct": direct["machine_busy"]},
    }
    _say(
        f"c={concurrency}: direct {_brief(direct)}; atom {_brief(atom)}; "
        f"{row['server_cpu_ms_per_token']} ms CPU/token, peak RSS {row['peak_rss_mb']} MB"
        + (f"; errors {atom['error_samples']}" if atom["error_samples"] else "")
    )
    return row


def _brief(figures: dict[str, Any]) -> str:
    return (
        f"{figures['streams_per_s']} streams/s, ttft p50 {figures['ttft_p50_ms']} "
        f"p99 {figures['ttft_p99_ms']} ms, gap p99 {figures['gap_p99_ms']} ms, "
        f"{figures['errors']} errors, machine {figures['machine_busy']:.0%} busy"
    )


def measure_process(server: Server, concurrency: int, args: Any) -> dict[str, Any]:
    """/api/advanced-ai/process with SSE at one concurrency."""
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    auth = {"Authorization": f"Bearer {server.key}"}
    figures = streams(
        f"{server.url}/api/advanced-ai/process", body, auth, kind="process",
        concurrency=concurrency, procs=args.loadgen_procs, reply=reply_of(args.tokens),
        ramp=args.tokens * args.gap_ms / 1000, seconds=args.seconds,
    )  # fmt: skip
    _say(f"process SSE c={concurrency}: {_brief(figures)}")
    return _row(concurrency, figures, args.tokens)


def _row(concurrency: int, figures: dict[str, Any], tokens: int) -> dict[str, Any]:
    """A run's figures as the summary gives them."""
    return {
        "concurrency": concurrency,
        "streams_per_s": figures["streams_per_s"],
        "ttft_p50_ms": figures["ttft_p50_ms"],
        "ttft_p99_ms": figures["ttft_p99_ms"],
        "gap_p99_ms": figures["gap_p99_ms"],
        "errors": figures["errors"],
        "tokens_lost": _lost(figures, tokens),
    }


def run(args: Any) -> dict[str, Any]:
    """The whole streaming run; the summary printed as the last line."""
    concurrency = tuple(int(c) for c in args.concurrency.split(","))
    started = time.perf_counter()
    _say(
        f"stream: {args.tokens} tokens {args.gap_ms} ms apart, concurrency {concurrency}, "
        f"{args.seconds} s each, {args.loadgen_procs} load processes; {os.cpu_count()} CPUs"
    )
    results: dict[str, Any] = {}
    with (
        paced_upstream(args.tokens, args.gap_ms) as (base_url, _),
        tempfile.TemporaryDirectory(prefix="atom-bench-") as directory,
        atom_serve(directory, base_url, "full", args.loop, max_concurrency=2048) as server,
    ):
        _say(f"upstream {base_url}; atom serve pid {server.pid} at {server.url}")
        for c in concurrency:
            results[f"c{c}"] = measure(server, base_url, c, args)
        process = measure_process(server, max(concurrency), args)
        fanout = measure_fanout(server, _fanout_concurrency(concurrency), args)
    summary = {
        "bench": "gateway_stream",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tokens": args.tokens,
        "gap_ms": args.gap_ms,
        "seconds_per_run": args.seconds,
        "loadgen_procs": args.loadgen_procs,
        "stream": results,
        "process_sse": process,
        "fanout": fanout,
        "targets_met": _targets(results, args.tokens),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return summary


def _fanout_concurrency(concurrency: Sequence[int]) -> int:
    below = [c for c in concurrency if c <= FANOUT_CONCURRENCY]
    return max(below) if below else min(concurrency)


def _targets(results: dict[str, Any], tokens: int) -> dict[str, Any]:
    """The issue's targets at 500 and 1,000 streams, met or not."""
    met: dict[str, Any] = {}
    if (r := results.get("c500")) is not None:
        direct = r["streams_per_s"]["direct"]
        met["c500"] = {
            "streams_per_s_at_least_0.95_direct": r["streams_per_s"]["atom"] >= 0.95 * direct,
            "ttft_added_p50_at_most_20ms": r["ttft_added_p50_ms"] <= 20,
            "ttft_added_p99_at_most_100ms": r["ttft_added_p99_ms"] <= 100,
            "gap_p99_at_most_20ms_over_direct": r["gap_p99_ms"]["atom"]
            <= r["gap_p99_ms"]["direct"] + 20,
            "no_error_no_loss": r["errors"] == 0 and r["tokens_lost"] == 0,
        }
    if (r := results.get("c1000")) is not None:
        met["c1000"] = {"no_error_no_loss": r["errors"] == 0 and r["tokens_lost"] == 0}
    met["server_cpu_per_token_under_0.1ms"] = all(
        r["server_cpu_ms_per_token"] < 0.1 for r in results.values()
    )
    return met


# ------------------------------------------------------------------------------ the fan-out


async def _watch(spec: dict[str, Any]) -> dict[str, Any]:
    """WebSocket subscribers while streams run: `requests` watchers, token followers and,
    with `slow`, one subscriber that reads nothing."""
    import aiohttp

    url, headers = spec["url"], spec["headers"]
    until: float = spec["until"]
    tokens: int = spec["tokens"]
    requests: list[int] = []
    followed: list[int] = []
    closed_early: list[int | None] = []
    out_of_order = 0
    slow_close: list[Any] = []
    # Request ids as the first watcher sees them arrive, with when: followers take fresh ones.
    fresh: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
    spied: asyncio.Queue[str] = asyncio.Queue()

    def left() -> float:
        return max(0.01, until - time.time())

    async def subscribe(ws: aiohttp.ClientWebSocketResponse, op: str, topic: str) -> None:
        await ws.send_str(orjson.dumps({"op": op, "topics": [topic]}).decode())

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def watcher(first: bool) -> None:
            count = 0
            async with http.ws_connect(url, headers=headers) as ws:
                await subscribe(ws, "subscribe", "requests")
                while time.time() < until:
                    try:
                        message = await ws.receive(timeout=left())
                    except TimeoutError:
                        break
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        closed_early.append(ws.close_code)
                        break
                    event = orjson.loads(message.data)
                    if event.get("topic") != "requests":
                        continue
                    count += 1
                    if first and event["payload"]["state"] == "received":
                        fresh.put_nowait((event["payload"]["request_id"], time.time()))
                        spied.put_nowait(event["payload"]["request_id"])
            requests.append(count)

        async def follower() -> None:
            nonlocal out_of_order
            count = 0
            async with http.ws_connect(url, headers=headers) as ws:
                while time.time() < until:
                    try:
                        async with asyncio.timeout(left()):
                            request_id, seen_at = await fresh.get()
                    except TimeoutError:
                        break
                    if time.time() - seen_at > 0.05:
                        continue  # its stream is well under way: take a newer one
                    topic = f"tokens:{request_id}"
                    await subscribe(ws, "subscribe", topic)
                    last = -1
                    stop = min(time.time() + spec["stream_s"] * 2, until)
                    while last < tokens - 1 and time.time() < stop:
                        try:
                            message = await ws.receive(timeout=max(0.01, stop - time.time()))
                        except TimeoutError:
                            break
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            closed_early.append(ws.close_code)
                            followed.append(count)
                            return
                        event = orjson.loads(message.data)
                        if event.get("topic") != topic:
                            continue
                        number = int(event["payload"]["text"].strip()[1:])
                        out_of_order += last >= 0 and number != last + 1
                        last = number
                        count += 1
                    await subscribe(ws, "unsubscribe", topic)
            followed.append(count)

        async def slow() -> None:
            # Follows every stream's tokens and reads nothing: the server must cut it (4008).
            # A small receive buffer: the server's queue, not the kernel's, holds its backlog.
            small = aiohttp.TCPConnector(limit=0, socket_factory=_small_socket)
            async with aiohttp.ClientSession(connector=small) as own:
                ws = await own.ws_connect(url, headers=headers, autoclose=False, heartbeat=None)
                await unread(ws)

        async def cut_count() -> int:
            status = f"{spec['http_url']}/api/advanced-ai/streaming/status"
            async with http.get(status, headers=headers) as response:
                return int((await response.json())["slow_clients_cut"])

        async def unread(ws: aiohttp.ClientWebSocketResponse) -> None:
            cut_before = await cut_count()
            checked = time.time()
            try:
                while time.time() < until and not ws.closed:
                    try:
                        async with asyncio.timeout(left()):
                            request_id = await spied.get()
                    except TimeoutError:
                        break
                    with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                        await subscribe(ws, "subscribe", f"tokens:{request_id}")
                    # Once the server has cut a client, stop: the close frame waits behind
                    # what this one left unread, for the server's close grace (5 s) only.
                    if time.time() - checked > 0.25:
                        checked = time.time()
                        if await cut_count() > cut_before:
                            break
                # Read what it left unread, to find the close frame the server sent.
                with contextlib.suppress(TimeoutError):
                    while (message := await ws.receive(timeout=30)).type is aiohttp.WSMsgType.TEXT:
                        pass
                    if message.type is aiohttp.WSMsgType.CLOSE:
                        slow_close.append(message.data)
            finally:
                await ws.close()

        await asyncio.gather(
            *(watcher(i == 0) for i in range(spec["watchers"])),
            *(follower() for _ in range(spec["followers"])),
            *([slow()] if spec["slow"] else []),
        )
    return {
        "requests_messages": requests,
        "token_messages": followed,
        "out_of_order": out_of_order,
        "closed_early": closed_early,
        "slow_close_code": slow_close[0] if slow_close else None,
    }


def _small_socket(address: Any) -> socket.socket:
    family, kind, protocol, _, _ = address
    sock = socket.socket(family=family, type=kind, proto=protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


def watch_main(spec_json: str, out: str) -> None:
    import uvloop

    _answer(out, uvloop.run(_watch(orjson.loads(spec_json))))


def _hub_status(server: Server) -> dict[str, Any]:
    """The server's WebSocket figures (GET /streaming/status)."""
    import urllib.request

    request = urllib.request.Request(
        f"{server.url}/api/advanced-ai/streaming/status",
        headers={"Authorization": f"Bearer {server.key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        status: dict[str, Any] = orjson.loads(response.read())
    return status


def measure_fanout(server: Server, concurrency: int, args: Any) -> dict[str, Any]:
    """WebSocket subscribers while `concurrency` streams run through the OpenAI route."""
    ramp = args.tokens * args.gap_ms / 1000
    ws_url = server.url.replace("http://", "ws://") + "/api/advanced-ai/streaming/ws"
    auth = {"Authorization": f"Bearer {server.key}"}
    spec = {"url": ws_url, "http_url": server.url, "headers": auth, "tokens": args.tokens,
            "stream_s": ramp, "watchers": REQUEST_WATCHERS, "followers": TOKEN_WATCHERS,
            "slow": False, "until": time.time() + 1.0 + ramp + args.seconds + 0.5}  # fmt: skip
    watching = _spawn("--watch", spec)
    # The slow subscriber and the watcher it learns request ids from, in a process of their
    # own: among 250 busy sockets, its reading after the cut took longer than the server's
    # close grace, and the close frame was given up.
    slow = _spawn("--watch", {**spec, "watchers": 1, "followers": 0, "slow": True})
    try:
        body = {"model": MODEL, "messages": MESSAGES, "stream": True}
        figures = streams(
            f"{server.url}/v1/chat/completions", body, auth, kind="openai",
            concurrency=concurrency, procs=args.loadgen_procs, reply=reply_of(args.tokens),
            ramp=ramp, seconds=args.seconds,
        )  # fmt: skip
        watched = _collect(watching, 120)
        slow_close_code = _collect(slow, 120)["slow_close_code"]
    finally:
        _kill([watching, slow])
    hub = _hub_status(server)
    requests = watched["requests_messages"]
    followed = watched["token_messages"]
    row = {
        **_row(concurrency, figures, args.tokens),
        "requests_subscribers": len(requests),
        "requests_messages_min": min(requests, default=0),
        "requests_messages_max": max(requests, default=0),
        "token_subscribers": len(followed),
        "token_messages": sum(followed),
        "token_out_of_order": watched["out_of_order"],
        "subscribers_closed_early": len(watched["closed_early"]),
        "slow_subscriber_close_code": slow_close_code,
        "slow_clients_cut": hub["slow_clients_cut"],
        "messages_sent": hub["messages_sent"],
    }
    _say(f"fan-out c={concurrency}: {_brief(figures)}; {row}")
    return row


if __name__ == "__main__":
    if sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "--watch":
        watch_main(sys.argv[2], sys.argv[3])
