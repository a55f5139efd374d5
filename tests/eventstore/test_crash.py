"""Every acknowledged event survives a SIGKILL, and no batch is ever half-visible."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from eventstore import open_store, verify_rows

_APPENDER = """
import random, sys, threading
from eventstore import NewEvent, open_store
location, seed = sys.argv[1], int(sys.argv[2])
store = open_store(location)
lock = threading.Lock()

def run(k):
    rng = random.Random(seed * 100 + k)
    n = 0
    while True:
        size = rng.randint(1, 5)
        batch = f"{seed}-{k}-{n}"
        events = [NewEvent("Chunk", {"batch": batch, "size": size, "i": i}) for i in range(size)]
        positions = store.append(f"s{k}-{n % 3}", events)
        with lock:
            print(" ".join(map(str, positions)), flush=True)
        n += 1

for k in range(3):
    threading.Thread(target=run, args=(k,), daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.slow
def test_acknowledged_events_survive_sigkill(location: str) -> None:
    # Every trial kills an appender on the same log, which the next one recovers and extends.
    rng = random.Random(20261129)
    acknowledged: set[int] = set()
    for trial in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", _APPENDER, location, str(trial)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        # Wait for the first acknowledgement, then kill at a random later moment.
        first = child.stdout.readline()
        assert first.strip(), "the appender acknowledged nothing"
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL
        acknowledged |= {int(p) for line in [first, *rest.splitlines()] for p in line.split()}

        with open_store(location, create=False) as store:
            report = verify_rows(store.iter_raw())
            assert report.ok, f"trial {trial}: {report.problem}"
            events = list(store.read_all())
        positions = {e.position for e in events}
        assert acknowledged <= positions, f"trial {trial}: lost {acknowledged - positions}"
        sizes = Counter(e.data["batch"] for e in events)
        expected = {e.data["batch"]: e.data["size"] for e in events}
        assert sizes == expected, f"trial {trial}: a batch is partly visible"
