"""Browser sessions: a token recorded in the log by its hash, good until expiry or sign-out."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from api.auth import Role
from api.keys import KeysProjection, hash_key, issue, lookup_session
from api.services import build_services
from api.sessions import end, is_session_token, start
from eventstore import RecordedEvent
from tests.api.conftest import Api, StartApi

SESSION = "/api/advanced-ai/auth/session"
STATUS = "/api/advanced-ai/streaming/status"


def _recorded(kind: str, data: Mapping[str, Any], at: str) -> RecordedEvent:
    return RecordedEvent(1, "s", 0, "e", kind, 1, dict(data), {}, at, "")


def _ring(*events: RecordedEvent) -> dict[str, object]:
    projection = KeysProjection()
    state = projection.initial()
    for event in events:
        state = projection.apply(state, event)
    return state


def _key_events(key_id: str = "k1") -> RecordedEvent:
    issued = issue(Role.USER, "u")
    [part] = issued.parts
    [event] = part.events
    return _recorded(event.type, {**event.data, "key_id": key_id}, "2026-11-01T12:00:00Z")


NOON = 1793534400  # 2026-11-01T12:00:00Z


def test_a_session_stands_for_its_key_until_it_expires() -> None:
    session = start("k1", expires_at=NOON + 900)
    state = _ring(
        _key_events(),
        _recorded(session.event.type, session.event.data, "2026-11-01T12:00:01Z"),
    )
    assert is_session_token(session.token)
    found = lookup_session(state, session.token, now=NOON + 899)
    assert found is not None and (found.session_id, found.key.key_id) == (session.session_id, "k1")
    assert lookup_session(state, session.token, now=NOON + 900) is None
    assert lookup_session(state, session.token + "x", now=NOON) is None
    assert session.token not in str(state) and hash_key(session.token) in str(state)


def test_an_ended_session_is_refused_and_expired_ones_are_forgotten() -> None:
    first, second, third = (start("k1", expires_at=NOON + 60) for _ in range(3))
    ended = end(first.session_id, "k1")
    state = _ring(
        _key_events(),
        *(_recorded(s.event.type, s.event.data, "2026-11-01T12:00:00Z") for s in (first, second)),
        _recorded(ended.type, ended.data, "2026-11-01T12:00:10Z"),
    )
    assert lookup_session(state, first.token, now=NOON) is None
    assert lookup_session(state, second.token, now=NOON) is not None
    # A session started after the second one expired drops it from the state.
    later = _ring(
        _key_events(),
        _recorded(second.event.type, second.event.data, "2026-11-01T12:00:00Z"),
        _recorded(third.event.type, {**third.event.data, "expires_at": NOON + 999},
                  "2026-11-01T12:05:00Z"),
    )  # fmt: skip
    assert list(later["sessions"]) == [third.session_id]  # type: ignore[call-overload]


@given(st.text())
def test_any_string_is_refused_without_raising(token: str) -> None:
    assert lookup_session(_ring(_key_events()), token, now=0) is None


async def _sign_in(api: Api, key: str, **body: object) -> dict[str, object]:
    status, session, _ = await api.call("POST", SESSION, key=key, json=body)
    assert status == 200, session
    return dict(session)


async def test_the_token_reads_as_its_key_and_sign_out_ends_it(api: Api) -> None:
    session = await _sign_in(api, api.keys[Role.OPERATOR])
    token = str(session["token"])
    assert (session["role"], session["sees_all"]) == ("operator", True)
    assert session["expires_in"] == 900
    assert (await api.call("GET", STATUS, key=token))[0] == 200
    # Its role is its key's: an operator's route, but not an admin's.
    assert (await api.call("GET", "/metrics", key=token))[0] == 200
    assert (await api.call("GET", "/api/advanced-ai/admin/keys", key=token))[0] == 403
    # A session may ask for the next one.
    renewed = await _sign_in(api, token, minutes=1)
    assert renewed["expires_in"] == 60 and renewed["token"] != token
    status, ended, _ = await api.call("DELETE", SESSION, key=token)
    assert (status, ended) == (200, {"session_id": session["session_id"], "ended": True})
    status, error, _ = await api.call("GET", STATUS, key=token)
    assert (status, error["error"]["message"]) == (
        401,
        "the session token is invalid or has expired",
    )
    assert (await api.call("GET", STATUS, key=str(renewed["token"])))[0] == 200


async def test_signing_out_with_a_key_is_refused(api: Api) -> None:
    status, error, _ = await api.call("DELETE", SESSION, key=api.keys[Role.VIEWER])
    assert status == 400
    assert "session's token" in error["error"]["message"]


async def test_a_session_outlives_the_server_that_started_it(start_api: StartApi) -> None:
    first = await start_api()
    session = await _sign_in(first, first.keys[Role.VIEWER])
    await first.server.close()
    # A new server over the same log: a restart, or another node.
    second = await start_api(services=build_services(first.services.store))
    assert (await second.call("GET", STATUS, key=str(session["token"])))[0] == 200
    events = first.services.store.read_stream(f"session-{session['session_id']}")
    assert [e.type for e in events] == ["SessionStarted"]
    assert events[0].data["expires_at"] <= time.time() + 900
