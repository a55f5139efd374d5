"""API keys: issued at random, kept only as sha256 hashes in the log, folded into a key ring.

A key's story lives in stream `apikey-<key_id>` (ApiKeyIssued, then maybe ApiKeyRevoked);
its budget, if any, in `budget-key:<key_id>` (see budgets.py); the browser sessions that stand
for it in `session-<id>` (see sessions.py), folded into the same ring.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from atom_actors.events import ApiKeyIssued, ApiKeyRevoked, SessionEnded, SessionStarted
from atom_actors.principal import check_tenant
from eventstore import (
    NO_STREAM,
    EventStore,
    LiveProjections,
    LogReader,
    RecordedEvent,
    StreamAppend,
    fold,
)

from .auth import Principal, Role
from .budgets import Budget, budget_stream

KEY_PREFIX: Final = "atom_"

KeyState = dict[str, Any]
"""The projection's JSON state: {"keys": {key_id: record}, "hashes": {key_hash: key_id},
"sessions": {session_id: {key_id, hash, expires_at}}, "session_hashes": {hash: session_id}}."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_stream(key_id: str) -> str:
    return f"apikey-{key_id}"


def budget_scope(key_id: str) -> str:
    return f"key:{key_id}"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the log says about a key; never the key itself."""

    key_id: str
    name: str
    role: str
    tenant: str | None
    revoked: bool

    def principal(self) -> Principal | None:
        """The principal this key stands for, or None when revoked or its role is unknown."""
        if self.revoked:
            return None
        try:
            role = Role.parse(self.role)
        except ValueError:
            return None
        return Principal(key_id=self.key_id, role=role, name=self.name, tenant=self.tenant)


class KeysProjection:
    """A pure fold of the keys (ApiKeyIssued, ApiKeyRevoked) and the sessions that stand for
    them (SessionStarted, SessionEnded) into the key state.

    Sessions expired by the time a new one starts (by the log's clock) are dropped then, so
    the state holds about as many sessions as are open.
    """

    name = "api-keys"
    version = 2
    # The event types the fold reads; the live runner skips the others.
    types = frozenset(
        {ApiKeyIssued.TYPE, ApiKeyRevoked.TYPE, SessionStarted.TYPE, SessionEnded.TYPE}
    )

    def initial(self) -> KeyState:
        return {"keys": {}, "hashes": {}, "sessions": {}, "session_hashes": {}}

    def apply(self, state: KeyState, event: RecordedEvent) -> KeyState:
        data = event.data
        if event.type == ApiKeyIssued.TYPE and _strings(data, "key_id", "key_hash", "role"):
            state["keys"][data["key_id"]] = {
                "name": str(data.get("name", "")),
                "role": data["role"],
                "tenant": data.get("tenant"),
                "hash": data["key_hash"],
                "revoked": False,
            }
            state["hashes"][data["key_hash"]] = data["key_id"]
        elif event.type == ApiKeyRevoked.TYPE and _strings(data, "key_id"):
            record = state["keys"].get(data["key_id"])
            if record is not None:
                record["revoked"] = True
        elif (
            event.type == SessionStarted.TYPE
            and _strings(data, "session_id", "key_id", "token_hash")
            and isinstance(data.get("expires_at"), int)
        ):
            _drop_expired(state, datetime.fromisoformat(event.recorded_at).timestamp())
            state["sessions"][data["session_id"]] = {
                "key_id": data["key_id"],
                "hash": data["token_hash"],
                "expires_at": data["expires_at"],
            }
            state["session_hashes"][data["token_hash"]] = data["session_id"]
        elif event.type == SessionEnded.TYPE and _strings(data, "session_id"):
            _drop_session(state, data["session_id"])
        return state


def _drop_expired(state: KeyState, now: float) -> None:
    expired = [sid for sid, s in state["sessions"].items() if s["expires_at"] <= now]
    for session_id in expired:
        _drop_session(state, session_id)


def _drop_session(state: KeyState, session_id: str) -> None:
    session = state["sessions"].pop(session_id, None)
    if session is not None:
        state["session_hashes"].pop(session["hash"], None)


def _strings(data: dict[str, Any], *names: str) -> bool:
    # A malformed event (an import gone wrong) is skipped: a fold that raised would stop the
    # ring from following the log at all.
    return all(isinstance(data.get(name), str) for name in names)


def _record(key_id: str, entry: dict[str, Any]) -> KeyRecord:
    return KeyRecord(key_id, entry["name"], entry["role"], entry["tenant"], entry["revoked"])


def records(state: KeyState) -> list[KeyRecord]:
    return [_record(key_id, entry) for key_id, entry in state["keys"].items()]


def lookup(state: KeyState, key: str) -> KeyRecord | None:
    """The record of a presented key, found by its hash."""
    # Looking a sha256 up in a dict leaks nothing usable about the key (its preimage);
    # the final comparison is constant-time all the same.
    key_hash = hash_key(key)
    key_id = state["hashes"].get(key_hash)
    if key_id is None:
        return None
    entry = state["keys"][key_id]
    if not hmac.compare_digest(entry["hash"], key_hash):
        return None
    return _record(key_id, entry)


@dataclass(frozen=True, slots=True)
class Session:
    """An open session: its id, and the record of the key it stands for."""

    session_id: str
    key: KeyRecord


def lookup_session(state: KeyState, token: str, now: float) -> Session | None:
    """The open session of a presented token, found by its hash; None when unknown, ended
    or expired at `now`."""
    token_hash = hash_key(token)
    session_id = state["session_hashes"].get(token_hash)
    if session_id is None:
        return None
    entry = state["sessions"][session_id]
    if not hmac.compare_digest(entry["hash"], token_hash) or entry["expires_at"] <= now:
        return None
    key = state["keys"].get(entry["key_id"])
    return None if key is None else Session(session_id, _record(entry["key_id"], key))


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key and the atomic batch that records it; the key is shown once, then lost."""

    key: str
    key_id: str
    parts: tuple[StreamAppend, ...]


def issue(
    role: Role,
    name: str = "",
    *,
    tenant: str | None = None,
    budget: Budget | None = None,
    by: str | None = None,
) -> IssuedKey:
    """A fresh key with the events that record it (its budget in the same batch); ValueError
    for a tenant name that is not one."""
    if tenant is not None:
        check_tenant(tenant)
    key, key_id = new_key(), secrets.token_hex(8)
    issued = ApiKeyIssued(
        key_id=key_id, key_hash=hash_key(key), role=role.label, name=name, tenant=tenant, by=by
    )
    parts = [StreamAppend(key_stream(key_id), [issued.new(actor=by or "cli")], NO_STREAM)]
    if budget is not None:
        scope = budget_scope(key_id)
        parts.append(StreamAppend(budget_stream(scope), [budget.event(scope, by)]))
    return IssuedKey(key, key_id, tuple(parts))


class UnknownKey(LookupError):
    """No key with this id was ever issued."""


def revoke(store: EventStore, key_id: str, *, by: str | None = None) -> bool:
    """Record the key's revocation; False if it already was. Raises UnknownKey."""
    history = store.read_stream(key_stream(key_id))
    if not any(e.type == ApiKeyIssued.TYPE for e in history):
        raise UnknownKey(key_id)
    if any(e.type == ApiKeyRevoked.TYPE for e in history):
        return False
    # Expecting the version we read makes two racing revocations record one event.
    store.append(
        key_stream(key_id),
        [ApiKeyRevoked(key_id=key_id, by=by).new(actor=by or "cli")],
        history[-1].stream_version,
    )
    return True


def read_records(reader: LogReader) -> list[KeyRecord]:
    """Every key the log holds, in the order they were issued."""
    return records(fold(KeysProjection(), _key_events(reader.read_all())))


def _key_events(events: Iterable[RecordedEvent]) -> Iterable[RecordedEvent]:
    return (e for e in events if e.stream_id.startswith("apikey-"))


class KeyRing:
    """The server's view of the keys: the KeysProjection as live projections keep it."""

    def __init__(self, projections: LiveProjections) -> None:
        self._projections = projections

    @property
    def _state(self) -> KeyState:
        state: KeyState = self._projections.state(KeysProjection.name)
        return state

    async def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Wait until the keys include the log up to `position` (read your own writes)."""
        return await self._projections.wait_until(position, timeout)

    def find(self, key: str) -> KeyRecord | None:
        return lookup(self._state, key)

    def find_session(self, token: str, now: float) -> Session | None:
        return lookup_session(self._state, token, now)

    def get(self, key_id: str) -> KeyRecord | None:
        entry = self._state["keys"].get(key_id)
        return None if entry is None else _record(key_id, entry)

    def records(self) -> list[KeyRecord]:
        return records(self._state)
