"""Instructions per request of the whole `atom serve`, counted by callgrind: a figure that
does not move with the machine's load, to compare two checkouts' hot paths.

    .venv/bin/python bench/instructions_bench.py [--tree PATH] [--requests 1000]

`atom serve` of the checkout at --tree (default: this one) runs under valgrind's callgrind
with instrumentation off. After a warm-up it is switched on: first for --idle seconds with
no request (what the server does by the clock: saving projections, the figures ticker,
polls), then for --requests requests through /v1/chat/completions at concurrency 16
(gateway_bench.py's fake upstream and load generator, no page open). Under callgrind the
server answers about ten requests a second, so its once-a-second work would weigh a hundred
times more per request than at full speed: the idle rate times the load's duration is taken
off before dividing by the requests. Progress lines start with '#'; the last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from gateway_bench import (
    KEY_ENV,
    MESSAGES,
    MODEL,
    ROOT,
    _config,
    _drain,
    _read_line,
    _stop,
    fake_upstream,
    load,
)


def _say(message: str) -> None:
    print(f"# {message}", flush=True)


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _instructions(path: str) -> int:
    """The instructions a callgrind dump counted."""
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"{path}: no totals")


def _dump(pid: int, path: str) -> None:
    """Ask callgrind to write what it counted so far to `path` (and start counting afresh)."""
    _control(pid, "-d")
    deadline = time.monotonic() + 120
    while not (os.path.exists(path) and os.path.getsize(path) > 0):
        if time.monotonic() > deadline:
            raise TimeoutError(f"callgrind wrote no {path}")
        time.sleep(0.2)
    time.sleep(1)  # the dump is written in one go, but give it time to finish


def measure(tree: Path, requests: int, warmup: int, idle: float) -> dict[str, Any]:
    with fake_upstream() as base_url, tempfile.TemporaryDirectory(prefix="atom-ir-") as directory:
        config = _config(directory, base_url, "normal")
        env = {**os.environ, KEY_ENV: "sk-bench", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree)}
        atom = "import sys; from api.cli import main; sys.exit(main())"
        out = os.path.join(directory, "callgrind.out.%p")
        process = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             sys.executable, "-c", atom, "serve", "--config", config, "--rate-limit", "0"],
            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        try:
            key = _read_line(process, r"^(atom_\S+)\s*$", 600).group(1)
            url = _read_line(process, r"serving on (http://\S+)", 600).group(1)
            _drain(process)
            auth = {"Authorization": f"Bearer {key}"}
            chat = f"{url}/v1/chat/completions"
            body = {"model": MODEL, "messages": MESSAGES}
            warm = load(chat, body, 16, warmup, 900, auth)
            _say(f"{tree}: warmed up with {warm['requests']} requests")
            _control(process.pid, "-i", "on")
            started = time.perf_counter()
            time.sleep(idle)
            idle_dump = out.replace("%p", str(process.pid)) + ".1"
            _dump(process.pid, idle_dump)
            idle_seconds = time.perf_counter() - started
            started = time.perf_counter()
            figures = load(chat, body, 16, requests, 1800, auth)
            _control(process.pid, "-i", "off")
            seconds = time.perf_counter() - started
        finally:
            _stop(process, timeout=600)
        # The load generator opens its pool with 32 requests first: they are counted too.
        served = figures["requests"] + 32
        idle_rate = _instructions(idle_dump) / idle_seconds
        total = _instructions(out.replace("%p", str(process.pid)))
    by_the_clock = idle_rate * seconds
    return {
        "tree": str(tree),
        "requests": served,
        "errors": figures["errors"],
        "instructions": total,
        "idle_instructions_per_s": round(idle_rate),
        "instructions_per_request": round((total - by_the_clock) / served),
        "instructions_per_request_with_idle": round(total / served),
        "seconds_under_callgrind": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds counted without load")
    args = parser.parse_args()
    result = measure(args.tree.resolve(), args.requests, args.warmup, args.idle)
    _say(f"{result['instructions_per_request']:,} instructions per request")
    print(orjson.dumps({"bench": "instructions", **result}).decode(), flush=True)


if __name__ == "__main__":
    main()
