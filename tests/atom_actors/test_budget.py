"""Budgets never overspend, whatever the interleaving of reservations, settlements and folds."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from atom_actors.budget import BudgetBook, BudgetExceeded, headroom
from atom_actors.cost import Settlement, SettleRule
from atom_actors.events import BudgetSet, DomainEvent
from atom_actors.projections import Budgets
from eventstore import RecordedEvent

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()


class FoldedLog:
    """A log and the Budgets projection folding it, lagging behind as much as a test wants."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self.projection = Budgets()
        self.state: dict[str, Any] = self.projection.initial()
        self.position = 0

    def append(self, event: DomainEvent) -> int:
        position = len(self.events) + 1
        self.events.append(
            RecordedEvent(position, "s", position, str(position), event.TYPE, 1, event.data(), {},
                          "2026-11-29T12:00:00.000000Z", "")
        )  # fmt: skip
        return position

    def fold_one(self) -> None:
        if self.position < len(self.events):
            self.state = self.projection.apply(self.state, self.events[self.position])
            self.position += 1


operations = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "settle", "fail", "fold"]),
        st.integers(1, 400),  # amount to reserve, in pico-dollars
        st.floats(0.0, 1.0),  # the share of a reservation the call really cost
        st.integers(0, 50),  # which open reservation to settle
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(limit=st.integers(0, 3000), ops=operations)
def test_settled_and_outstanding_money_never_exceeds_the_limit(
    limit: int, ops: list[tuple[str, int, float, int]]
) -> None:
    log = FoldedLog()
    log.append(BudgetSet(scope="global", limit_pico=limit, period="total"))
    log.fold_one()
    book = BudgetBook(lambda: log.state, lambda: log.position, lambda: NOW)
    open_: list[Any] = []
    settled_total = 0
    ids = itertools.count()
    for op, amount, share, pick in ops:
        if op == "reserve":
            try:
                reservation, event = book.reserve(f"r{next(ids)}", ["global"], amount, "m")
            except BudgetExceeded as exc:
                assert exc.headroom_pico < amount
                continue
            log.append(event)
            open_.append(reservation)
        elif op in ("settle", "fail") and open_:
            reservation = open_.pop(pick % len(open_))
            actual = 0 if op == "fail" else int(reservation.amount_pico * share)
            cost = Settlement(SettleRule.USAGE, 0, 0, actual)
            book.settled_at(reservation, log.append(book.settle(reservation, cost)))
            settled_total += actual
        else:
            log.fold_one()
        outstanding = sum(r.amount_pico for r in open_)
        # What has been spent plus what may still be spent fits the limit at every moment.
        assert settled_total + outstanding <= limit
    while log.position < len(log.events):
        log.fold_one()
    # Rebuilt from the log, the projection agrees with what was settled.
    assert log.state["spent"].get("global", {}).get("total", 0) == settled_total
    # Once folded, a settlement is the projection's to count: the book keeps only open calls.
    book.headroom(["global"])
    assert book.unfolded == len(open_)


def test_a_reservation_left_by_a_crash_counts_until_it_expires() -> None:
    log = FoldedLog()
    log.append(BudgetSet(scope="key:k1", limit_pico=1000, period="day"))
    crashed = BudgetBook(lambda: log.state, lambda: log.position, lambda: NOW)
    _, reserved = crashed.reserve("r1", ["global", "key:k1"], 600, "m")
    log.append(reserved)
    for _ in log.events:
        log.fold_one()
    # A new process rebuilt from the log: the unsettled reservation still counts.
    restarted = BudgetBook(lambda: log.state, lambda: log.position, lambda: NOW + 60)
    assert restarted.headroom(["global", "key:k1"]) == ("key:k1", 400)
    later = BudgetBook(lambda: log.state, lambda: log.position, lambda: reserved.expires_at + 1)
    assert later.headroom(["global", "key:k1"]) == ("key:k1", 1000)


def test_day_budgets_start_afresh_each_day() -> None:
    state = Budgets().initial()
    state["limits"]["tenant:acme"] = [100, "day"]
    state["spent"]["tenant:acme"] = {"total": 500, "day:2026-11-28": 100, "day:2026-11-29": 30}
    assert headroom(state, [], ["tenant:acme"], NOW) == ("tenant:acme", 70)
    assert headroom(state, [], ["global"], NOW) is None
