"""The gateway under chaos (tests/chaos.py): `atom serve` killed under load loses nothing it
acknowledged, and every upstream fault ends within its deadline, settled by the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import FAULTS, fault_runs, kill_runs, past_deadline, seal_run

BEFORE_OUTPUT = {"429 with Retry-After", "500", "529 overloaded", "hang before the first byte"}


@pytest.mark.timeout(900)
async def test_sigkill_under_load_loses_nothing_acknowledged_and_overspends_nothing(
    tmp_path: Path,
) -> None:
    run = await kill_runs(tmp_path, trials=20, clients=32)
    audit = run.audit
    assert run.kills == 20 and audit.acknowledged > 100
    assert (audit.acknowledged_lost, audit.verify_failures, audit.rebuild_diffs) == (0, 0, 0), (
        audit.messages
    )
    assert audit.overspend_usd == 0
    # The kills left reservations unsettled: each counted against the budget after the
    # restart, until it expired, and then was released.
    assert audit.orphaned_reservations > 0
    assert audit.orphans_counted == audit.orphaned_reservations
    assert run.released


@pytest.mark.timeout(300)
async def test_every_upstream_fault_ends_within_its_deadline_settled_by_the_rules(
    tmp_path: Path,
) -> None:
    outcomes = await fault_runs(tmp_path)
    assert len(outcomes) == 2 * len(FAULTS)
    assert past_deadline(outcomes) == []
    for outcome in outcomes:
        # A fallback's answer, or an error that says what happened.
        assert outcome.status == 200 or outcome.kind in ("timeout", "upstream_failed"), outcome
        assert outcome.settled_rules, outcome
        if outcome.fault in BEFORE_OUTPUT:
            assert set(outcome.settled_rules) == {"none"}, outcome
        else:
            assert outcome.settled_rules[0] == "cut", outcome


async def test_through_atom_serve_a_tenants_reads_hold_nothing_of_another(
    tmp_path: Path,
) -> None:
    leaked, scanned = await seal_run(tmp_path)
    assert (leaked, scanned) == (0, 11)
