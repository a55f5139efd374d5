"""Who is calling: roles, the principal behind a key, and reading credentials from a request."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


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


ROLE_LABELS = tuple(role.label for role in Role)


@dataclass(frozen=True, slots=True)
class Principal:
    """The key a request was authenticated with."""

    key_id: str
    role: Role
    name: str
    tenant: str | None = None


def permits(role: Role, needed: Role) -> bool:
    return role >= needed


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key from `Authorization: Bearer <key>` or `X-API-Key: <key>`, if any."""
    authorization = headers.get("Authorization", "")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    key = headers.get("X-API-Key", "").strip()
    return key or None
