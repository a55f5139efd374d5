"""Who is calling: roles, the principal behind a key, and reading credentials from a request."""

from __future__ import annotations

from collections.abc import Mapping

from atom_actors.principal import ROLE_LABELS, Principal, Role

__all__ = ["ROLE_LABELS", "Principal", "Role", "permits", "presented_key"]


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
