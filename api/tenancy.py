"""What a caller may see: everyone's data for operators and admins, else its own tenancy's."""

from __future__ import annotations

from collections.abc import Iterable

from atom_actors.principal import Principal, tenancy_of

from .keys import KeyRing


def seen_tenancy(principal: Principal) -> str | None:
    """The tenancy whose figures a caller sees; None: every tenancy's (operators, admins)."""
    return None if principal.sees_all else principal.tenancy


def visible_scopes(principal: Principal, keys: KeyRing, scopes: Iterable[str]) -> list[str]:
    """The budget scopes among `scopes` a caller may see: all for operators; else its
    tenancy's own scope and the scopes of its tenancy's keys (the global budget, which sums
    every tenant's spend, is an operator's figure)."""
    own = principal.tenancy
    visible = []
    for scope in scopes:
        if principal.sees_all or scope == own:
            visible.append(scope)
        elif scope.startswith("key:"):
            record = keys.get(scope.removeprefix("key:"))
            if record is not None and tenancy_of(record.key_id, record.tenant) == own:
                visible.append(scope)
    return visible
