"""Budget administration: spending limits set and cleared on the log, per scope.

A scope's limits live in stream `budget-<scope>` (BudgetSet, BudgetCleared); the Budgets
projection folds them, so `atom budgets`, the admin routes and a running server (whichever
process wrote them) read the same limits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from atom_actors import views
from atom_actors.cost import from_usd
from atom_actors.events import BudgetCleared, BudgetSet
from atom_actors.principal import TENANT_NAME
from atom_actors.projections import Budgets
from eventstore import LogReader, NewEvent, fold

PERIODS: Final = ("total", "day", "month")
MAX_USD: Final = 1_000_000
"""The largest limit: money is counted in 64-bit pico-dollars, which end at 9.2 million USD."""
_SCOPE = re.compile(rf"global|tenant:{TENANT_NAME.pattern}|key:[0-9a-f]{{1,64}}")


class BadBudget(ValueError):
    """A scope, an amount or a period that is not one; the message says which and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_scope(text: str) -> str:
    """A budget scope: `global`, `tenant:<name>` or `key:<key id>`."""
    if not _SCOPE.fullmatch(text):
        raise BadBudget("scope", f"scope {text!r} is not global, tenant:<name> or key:<key id>")
    return text


def budget_stream(scope: str) -> str:
    return f"budget-{scope}"


@dataclass(frozen=True, slots=True)
class Budget:
    """A limit in USD for a period: all time (`total`), a UTC day or a UTC month."""

    usd: float
    period: str = "total"

    def __post_init__(self) -> None:
        if not math.isfinite(self.usd) or not 0 <= self.usd <= MAX_USD:
            raise BadBudget(
                "usd", f"a budget is an amount of USD from 0 to {MAX_USD:,}, got {self.usd!r}"
            )
        if self.period not in PERIODS:
            raise BadBudget("period", f"a budget period is one of {', '.join(PERIODS)}")

    def event(self, scope: str, by: str | None) -> NewEvent:
        limit = BudgetSet(scope=scope, limit_pico=from_usd(self.usd), period=self.period)
        return limit.new(actor=by or "cli")


def cleared(scope: str, by: str | None) -> NewEvent:
    return BudgetCleared(scope=scope).new(actor=by or "cli")


def read_budgets(reader: LogReader) -> dict[str, Any]:
    """The Budgets projection folded from a log."""
    events = (e for e in reader.read_all() if e.type in Budgets.types)
    state: dict[str, Any] = fold(Budgets(), events)
    return state


def rows(state: dict[str, Any], scopes: list[str] | None = None) -> list[dict[str, Any]]:
    """Each limited scope as it stands now: limit, spent, reserved, remaining, period start."""
    return views.budget_rows(state, datetime.now(UTC), scopes)
