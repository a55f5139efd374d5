"""Browser sessions: a short-lived token that stands for an API key, recorded in the log.

Signing in exchanges a key for a token (POST /auth/session). The log records SessionStarted
in stream `session-<id>` with the token's sha256 (never the token), its key and its expiry,
and the key ring folds it like the keys. So a token works on every node of a shared log and
after `atom serve` restarts, until it expires, its session ends (sign-out records
SessionEnded) or its key is revoked; a copy of the log holds nothing that would open one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

from atom_actors.events import SessionEnded, SessionStarted
from eventstore import NewEvent

from .keys import hash_key

SESSION_PREFIX: Final = "atomsession_"


def session_stream(session_id: str) -> str:
    return f"session-{session_id}"


def is_session_token(credential: str) -> bool:
    """Whether a presented credential is a session token rather than an API key."""
    return credential.startswith(SESSION_PREFIX)


@dataclass(frozen=True, slots=True)
class NewSession:
    """A fresh token and the event that records its session; the token is shown once."""

    token: str
    session_id: str
    event: NewEvent


def start(key_id: str, expires_at: int) -> NewSession:
    """A session for `key_id` until `expires_at` (Unix seconds)."""
    token, session_id = SESSION_PREFIX + secrets.token_urlsafe(32), secrets.token_hex(8)
    started = SessionStarted(
        session_id=session_id, key_id=key_id, token_hash=hash_key(token), expires_at=expires_at
    )
    return NewSession(token, session_id, started.new(api_key_id=key_id, actor="api"))


def end(session_id: str, key_id: str) -> NewEvent:
    """The event that ends a session (sign-out)."""
    return SessionEnded(session_id=session_id, key_id=key_id).new(api_key_id=key_id, actor="api")
