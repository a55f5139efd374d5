from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from atom_actors.circuit import Circuit, CircuitPolicy, admit, record
from atom_actors.snapshot import Health

POLICY = CircuitPolicy(failure_threshold=3, cooldown_s=10.0)


def test_opens_after_the_threshold_of_consecutive_failures() -> None:
    c = Circuit()
    for _ in range(2):
        c = record(c, POLICY, 0.0, ok=False)
        assert c.state is Health.CLOSED
    c = record(c, POLICY, 1.0, ok=False)
    assert c.state is Health.OPEN and c.opened_at == 1.0


def test_a_success_resets_the_count() -> None:
    c = record(record(Circuit(), POLICY, 0, ok=False), POLICY, 0, ok=False)
    c = record(c, POLICY, 0, ok=True)
    c = record(record(c, POLICY, 0, ok=False), POLICY, 0, ok=False)
    assert c.state is Health.CLOSED


def test_open_refuses_until_the_cooldown_then_lets_one_trial_through() -> None:
    c = Circuit(Health.OPEN, 3, opened_at=100.0)
    allowed, c = admit(c, POLICY, 105.0)
    assert not allowed and c.state is Health.OPEN
    allowed, c = admit(c, POLICY, 110.0)
    assert allowed and c.state is Health.HALF_OPEN
    allowed, c = admit(c, POLICY, 110.5)
    assert not allowed, "only one trial call at a time"


def test_the_trial_decides() -> None:
    trial = Circuit(Health.HALF_OPEN, 3, opened_at=100.0, probing=True)
    assert record(trial, POLICY, 111.0, ok=True) == Circuit()
    reopened = record(trial, POLICY, 111.0, ok=False)
    assert reopened.state is Health.OPEN and reopened.opened_at == 111.0


@given(
    outcomes=st.lists(st.booleans(), max_size=40),
    now=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_an_open_circuit_never_admits_within_its_cooldown(outcomes: list[bool], now: float) -> None:
    c = Circuit()
    for ok in outcomes:
        c = record(c, POLICY, now, ok=ok)
    if c.state is Health.OPEN:
        allowed, _ = admit(c, POLICY, c.opened_at + POLICY.cooldown_s / 2)
        assert not allowed
    else:
        assert admit(c, POLICY, now)[0]
