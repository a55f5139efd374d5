"""Budgets: reservations that can never overspend a limit, settled with the real cost.

The book lives on the event loop, whose single thread makes check-and-reserve atomic in this
process. It reads the Budgets projection and adds what this process reserved that the
projection has not folded yet, counting conservatively while the two catch up: an amount may
be counted twice for a moment, never zero times. What other processes (other gateway nodes on
one log) reserved meanwhile is checked where it cannot be raced: a reservation in a limited
scope is appended with a guard (`BudgetGuard`), which the log's writer decides under the
log's write lock over every budget event the others committed since the book's view.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from eventstore import Guard, RecordedEvent, new_event_id

from .cost import Settlement
from .events import BudgetReserved, BudgetSettled
from .projections import current_period

RESERVATION_TTL_S = 900.0
"""An unsettled reservation (its process crashed) stops counting after this long, by default."""


class BudgetExceeded(Exception):
    """A reservation does not fit a scope's remaining budget."""

    def __init__(self, scope: str, amount_pico: int, headroom_pico: int) -> None:
        super().__init__(
            f"budget {scope!r}: this call may cost up to {amount_pico / 1e12:.6f} USD "
            f"but only {max(headroom_pico, 0) / 1e12:.6f} USD remain"
        )
        self.scope = scope
        self.amount_pico = amount_pico
        self.headroom_pico = headroom_pico


def rooms(
    state: Mapping[str, Any],
    extra: Iterable[tuple[list[str], int]],
    scopes: Iterable[str],
    now: float,
) -> dict[str, int]:
    """What remains of each limited scope among `scopes`, in pico-dollars.

    `state` is the Budgets projection; `extra` is money to count on top of it.
    """
    extra = list(extra)
    today = datetime.fromtimestamp(now, UTC)
    found = {}
    for scope in scopes:
        limit = state["limits"].get(scope)
        if limit is None:
            continue
        limit_pico, period = limit
        spent = state["spent"].get(scope, {}).get(current_period(period, today), 0)
        reserved = sum(
            amount
            for scopes_, amount, expires in state["reserved"].values()
            if scope in scopes_ and expires > now
        )
        reserved += sum(amount for scopes_, amount in extra if scope in scopes_)
        found[scope] = limit_pico - spent - reserved
    return found


def headroom(
    state: Mapping[str, Any],
    extra: Iterable[tuple[list[str], int]],
    scopes: Iterable[str],
    now: float,
) -> tuple[str, int] | None:
    """The tightest (scope, remaining pico-dollars) among `scopes`, or None when none is limited."""
    found = rooms(state, extra, scopes, now)
    if not found:
        return None
    scope = min(found, key=lambda s: found[s])
    return scope, found[scope]


BUDGET_EVENTS: Final = frozenset({"BudgetSet", "BudgetCleared", "BudgetReserved", "BudgetSettled"})


@dataclass(slots=True)
class BudgetGuard:
    """The condition a reservation is appended on: that what other processes reserved, settled
    and set since this book's view still leaves it room in every limited scope.

    Called on the log's writer thread under its write lock, with the others' budget events
    after the view; `refused` says (scope, room) once it has refused.
    """

    rooms: dict[str, int]
    limits: dict[str, int]
    amount: int
    clock: Callable[[], float]
    refused: tuple[str, int] | None = None

    def __call__(self, events: Sequence[RecordedEvent]) -> str | None:
        change = dict.fromkeys(self.rooms, 0)
        limits = dict(self.limits)
        lifted: set[str] = set()
        now = self.clock()
        for event in events:
            data = event.data
            if event.type == "BudgetReserved":
                if data["expires_at"] > now:
                    for scope in data["scopes"]:
                        if scope in change:
                            change[scope] -= data["amount_pico"]
            elif event.type == "BudgetSettled":
                for scope in data["scopes"]:
                    if scope in change:
                        change[scope] += data["reserved_pico"] - data["actual_pico"]
            elif event.type == "BudgetSet" and data["scope"] in change:
                limits[data["scope"]] = data["limit_pico"]
                lifted.discard(data["scope"])
            elif event.type == "BudgetCleared":
                lifted.add(data["scope"])
        for scope, room in self.rooms.items():
            left = room + change[scope] + limits[scope] - self.limits[scope]
            if scope not in lifted and left < self.amount:
                self.refused = (scope, left)
                return str(BudgetExceeded(scope, self.amount, left))
        return None


@dataclass(slots=True)
class _Pending:
    scopes: list[str]
    amount: int
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    request_id: str
    scopes: list[str]
    amount_pico: int
    model: str
    # In a limited scope: what its append must be guarded by (see BudgetGuard).
    guard: Guard | None = None
    budget_guard: BudgetGuard | None = None


class BudgetBook:
    """Reserve before a call, settle after it; never lets concurrent calls overspend."""

    def __init__(
        self,
        state: Callable[[], Mapping[str, Any]],
        position: Callable[[], int],
        clock: Callable[[], float] = time.time,
        *,
        reservation_ttl_s: float = RESERVATION_TTL_S,
    ) -> None:
        self._state = state
        self._position = position
        self._clock = clock
        self._ttl_s = reservation_ttl_s
        self._pending: dict[str, _Pending] = {}
        # (log position of the settlement, reservation id): the earliest folded comes first,
        # so forgetting what the projection now holds costs nothing while nothing is due.
        self._settled: list[tuple[int, str]] = []

    @property
    def unfolded(self) -> int:
        """How many reservations this book counts on top of the projection."""
        return len(self._pending)

    def _forget_folded(self) -> None:
        position = self._position()
        settled = self._settled
        while settled and settled[0][0] <= position:
            self._pending.pop(heapq.heappop(settled)[1], None)

    def _extra(self) -> list[tuple[list[str], int]]:
        folded = self._state()["reserved"]
        return [
            (pending.scopes, pending.amount)
            for rid, pending in self._pending.items()
            if pending.settled or rid not in folded
        ]

    def headroom(self, scopes: Iterable[str]) -> tuple[str, int] | None:
        """The tightest remaining budget among `scopes`, counting this process's reservations."""
        found = self._rooms(scopes)
        if not found:
            return None
        scope = min(found, key=lambda s: found[s])
        return scope, found[scope]

    def _rooms(self, scopes: Iterable[str]) -> dict[str, int]:
        self._forget_folded()
        state = self._state()
        limits = state["limits"]
        if not any(scope in limits for scope in scopes):
            return {}
        return rooms(state, self._extra(), scopes, self._clock())

    def reserve(
        self, request_id: str, scopes: list[str], amount_pico: int, model: str
    ) -> tuple[Reservation, BudgetReserved]:
        """Take `amount_pico` from every scope or raise BudgetExceeded; append the event, with
        the reservation's `guard` when a scope is limited."""
        found = self._rooms(scopes)
        if found:
            tight = min(found, key=lambda s: found[s])
            if amount_pico > found[tight]:
                raise BudgetExceeded(tight, amount_pico, found[tight])
        checked = None
        guard = None
        if found:
            limits = self._state()["limits"]
            checked = BudgetGuard(found, {s: limits[s][0] for s in found}, amount_pico, self._clock)
            guard = Guard(self._position(), checked, BUDGET_EVENTS)
        reservation = Reservation(
            new_event_id(), request_id, scopes, amount_pico, model, guard, checked
        )
        self._pending[reservation.reservation_id] = _Pending(scopes, amount_pico)
        event = BudgetReserved(
            request_id=request_id,
            reservation_id=reservation.reservation_id,
            scopes=scopes,
            amount_pico=amount_pico,
            model=model,
            expires_at=round(self._clock() + self._ttl_s, 3),
        )
        return reservation, event

    def withdraw(self, reservation: Reservation) -> None:
        """Forget a reservation whose guard refused it: it was never written."""
        self._pending.pop(reservation.reservation_id, None)

    def settle(self, reservation: Reservation, settlement: Settlement) -> BudgetSettled:
        """Replace the reservation by the call's cost; the caller appends the event."""
        pending = self._pending.get(reservation.reservation_id)
        if pending is not None:
            pending.settled = True
            pending.amount = settlement.cost_pico
        return BudgetSettled(
            request_id=reservation.request_id,
            reservation_id=reservation.reservation_id,
            scopes=reservation.scopes,
            reserved_pico=reservation.amount_pico,
            actual_pico=settlement.cost_pico,
            model=reservation.model,
            rule=settlement.rule.value,
            prompt_tokens=settlement.prompt_tokens,
            completion_tokens=settlement.completion_tokens,
        )

    def settled_at(self, reservation: Reservation, position: int) -> None:
        """The settlement is at `position` in the log: once folded, stop counting it here."""
        if reservation.reservation_id in self._pending:
            heapq.heappush(self._settled, (position, reservation.reservation_id))
