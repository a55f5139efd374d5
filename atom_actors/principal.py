"""Who is asking: a role, the key behind a request, and the tenancy whose data it may see.

A tenancy is the unit that is sealed from the others: `tenant:<name>` for the keys of a
tenant, `key:<id>` for a key without one (it is its own tenant), `internal` for a trusted
tool's own calls. Operators and admins see every tenancy; everyone else only their own.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

INTERNAL: Final = "internal"
"""The tenancy of a trusted tool's calls (`atom replay rescore`, a judge run): no key's."""


class Role(enum.IntEnum):
    """Roles in order: each may do everything the ones below it may."""

    VIEWER = 1
    USER = 2
    OPERATOR = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, label: str) -> Role:
        """The role named `label` (viewer, user, operator, admin); ValueError otherwise."""
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown role {label!r}") from None


ROLE_LABELS: Final = tuple(role.label for role in Role)
TENANT_NAME: Final = re.compile(r"[^\s\x00-\x1f]{1,100}")
"""A tenant's name: 1 to 100 characters, no spaces (it is part of a scope, `tenant:<name>`)."""


def check_tenant(name: str) -> str:
    """`name` if it is a tenant's name, else ValueError saying why."""
    if not TENANT_NAME.fullmatch(name):
        raise ValueError(f"tenant {name!r} is not 1 to 100 characters without spaces")
    return name


def tenancy_of(key_id: str | None, tenant: str | None) -> str:
    """The tenancy of a caller: its tenant's, else its key's own, else `internal`."""
    if tenant:
        return f"tenant:{tenant}"
    if key_id:
        return f"key:{key_id}"
    return INTERNAL


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """The caller of a request: an API key (its id, role, name and tenant) or a trusted tool."""

    key_id: str | None
    role: Role
    name: str = ""
    tenant: str | None = None

    @classmethod
    def tool(cls, name: str) -> Principal:
        """A trusted tool of this installation, such as `atom replay rescore`: no key, admin."""
        return cls(key_id=None, role=Role.ADMIN, name=name)

    @property
    def api_key_id(self) -> str:
        """The id of the API key behind this principal: every API request has one."""
        if self.key_id is None:
            raise ValueError(f"{self.name or 'this caller'} has no API key")
        return self.key_id

    @property
    def tenancy(self) -> str:
        return tenancy_of(self.key_id, self.tenant)

    @property
    def sees_all(self) -> bool:
        """Operators and admins see every tenancy's requests, spend and topics."""
        return self.role >= Role.OPERATOR

    def may_see(self, tenancy: str | None) -> bool:
        """Whether this caller may see data of `tenancy`."""
        return self.sees_all or tenancy == self.tenancy

    @property
    def scopes(self) -> list[str]:
        """The budget scopes this caller spends in: global, then its key's and its tenant's."""
        scopes = ["global"]
        if self.key_id:
            scopes.append(f"key:{self.key_id}")
        if self.tenant:
            scopes.append(f"tenant:{self.tenant}")
        return scopes
