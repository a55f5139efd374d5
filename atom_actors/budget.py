"""Budgets: reservations that can never overspend a limit, settled with the real cost.

The book lives on the event loop, whose single thread makes check-and-reserve atomic. It reads
the Budgets projection and adds what this process reserved that the projection has not folded
yet, counting conservatively while the two catch up: an amount may be counted twice for a
moment, never zero times.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventstore import new_event_id

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


def headroom(
    state: Mapping[str, Any],
    extra: Iterable[tuple[list[str], int]],
    scopes: Iterable[str],
    now: float,
) -> tuple[str, int] | None:
    """The tightest (scope, remaining pico-dollars) among `scopes`, or None when none is limited.

    `state` is the Budgets projection; `extra` is money to count on top of it.
    """
    extra = list(extra)
    today = datetime.fromtimestamp(now, UTC)
    tightest: tuple[str, int] | None = None
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
        room = limit_pico - spent - reserved
        if tightest is None or room < tightest[1]:
            tightest = (scope, room)
    return tightest


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
        self._forget_folded()
        state = self._state()
        limits = state["limits"]
        if not any(scope in limits for scope in scopes):
            return None
        return headroom(state, self._extra(), scopes, self._clock())

    def reserve(
        self, request_id: str, scopes: list[str], amount_pico: int, model: str
    ) -> tuple[Reservation, BudgetReserved]:
        """Take `amount_pico` from every scope or raise BudgetExceeded; append the event."""
        tight = self.headroom(scopes)
        if tight is not None and amount_pico > tight[1]:
            raise BudgetExceeded(tight[0], amount_pico, tight[1])
        reservation = Reservation(new_event_id(), request_id, scopes, amount_pico, model)
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
