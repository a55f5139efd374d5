"""The gateway under chaos, as a benchmark: `atom serve` SIGKILLed under load and restarted,
every upstream fault on both wire formats, and the seal between tenancies.

    python bench/chaos.py [--trials 20] [--clients 32]

Prints what it finds, then one JSON line last: kills, acknowledged, acknowledged_lost,
verify_failures, rebuild_diffs, overspend_usd, orphaned_reservations, orphans_counted,
orphans_released, faults_tried, requests_past_deadline, leaked_markers, markers_scanned and
seconds. Every figure but kills, acknowledged, orphaned_reservations, orphans_counted,
faults_tried, markers_scanned and seconds must be 0 (orphans_released true).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos import fault_runs, kill_runs, past_deadline, seal_run


async def main(trials: int, clients: int) -> dict[str, object]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        kills, faults, seal = (Path(folder) / name for name in ("kills", "faults", "seal"))
        for each in (kills, faults, seal):
            each.mkdir()
        run = await kill_runs(kills, trials, clients)
        outcomes = await fault_runs(faults)
        leaked, scanned = await seal_run(seal)
    audit = run.audit
    for outcome in outcomes:
        print(
            f"{outcome.wire:9} {outcome.fault:28} {outcome.status} in {outcome.seconds:.2f} s "
            f"{outcome.kind or 'answered':16} settled {', '.join(outcome.settled_rules)}",
            file=sys.stderr,
        )
    for message in audit.messages:
        print(message, file=sys.stderr)
    return {
        "kills": run.kills,
        "acknowledged": audit.acknowledged,
        "acknowledged_lost": audit.acknowledged_lost,
        "verify_failures": audit.verify_failures,
        "rebuild_diffs": audit.rebuild_diffs,
        "overspend_usd": round(audit.overspend_usd, 12),
        "orphaned_reservations": audit.orphaned_reservations,
        "orphans_counted": audit.orphans_counted,
        "orphans_released": run.released,
        "faults_tried": len(outcomes),
        "requests_past_deadline": len(past_deadline(outcomes)),
        "leaked_markers": leaked,
        "markers_scanned": scanned,
        "seconds": round(time.monotonic() - started, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="kills (default: 20)")
    parser.add_argument("--clients", type=int, default=32, help="clients at once (default: 32)")
    options = parser.parse_args()
    print(orjson.dumps(asyncio.run(main(options.trials, options.clients))).decode())
