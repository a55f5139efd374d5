"""The circuit breaker as a pure state machine: opens on repeated failures, probes after a rest."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .snapshot import Health


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """Open after `failure_threshold` consecutive failures; try one call after `cooldown_s`."""

    failure_threshold: int = 5
    cooldown_s: float = 30.0


DEFAULT_CIRCUIT = CircuitPolicy()


@dataclass(frozen=True, slots=True)
class Circuit:
    state: Health = Health.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False


def admit(circuit: Circuit, policy: CircuitPolicy, now: float) -> tuple[bool, Circuit]:
    """Whether a call may go through now, and the circuit after letting it (or not)."""
    if circuit.state is Health.CLOSED:
        return True, circuit
    if circuit.state is Health.OPEN:
        if now - circuit.opened_at < policy.cooldown_s:
            return False, circuit
        return True, replace(circuit, state=Health.HALF_OPEN, probing=True)
    if circuit.probing:
        return False, circuit
    return True, replace(circuit, probing=True)


def record(circuit: Circuit, policy: CircuitPolicy, now: float, *, ok: bool) -> Circuit:
    """The circuit after a call's outcome."""
    if ok:
        return Circuit()
    failures = circuit.failures + 1
    if circuit.state is Health.HALF_OPEN or failures >= policy.failure_threshold:
        return Circuit(Health.OPEN, failures, now, probing=False)
    return replace(circuit, failures=failures)
