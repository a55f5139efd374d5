"""Streamed answers: /process and /orchestrate as Server-Sent Events, and a request's tokens
on the WebSocket, checked against the log."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.auth import Role
from tests.api.conftest import ANSWER, Fleet, bearer, issue_key, sse_events
from tests.fakes.faults import Behaviour, Fault

PROCESS = "/api/advanced-ai/process"
ORCHESTRATE = "/api/advanced-ai/orchestrate"
LONG = " ".join(f"word{i}" for i in range(30)) + "."


def _logged_tokens(fleet: Fleet, request_id: str) -> list[str]:
    """Every delta the log holds for the request, in order."""
    return [
        delta[0]
        for event in fleet.events(request_id)
        if event.type == "TokensStreamed"
        for delta in event.data["deltas"]
    ]


async def _stream(fleet: Fleet, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    async with fleet.api.http.post(
        fleet.api.url + path, headers=bearer(fleet.key), json={**body, "stream": True}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        return [event async for event in sse_events(response)]


async def test_process_streams_tokens_in_order_then_done_once_committed(fleet: Fleet) -> None:
    fleet.upstream.models["cheap"] = Behaviour(reply=LONG, tokens_per_second=100)
    tokens: list[dict[str, Any]] = []
    completed_when_first_token: list[str] = []
    async with fleet.api.http.post(
        fleet.api.url + PROCESS,
        headers=bearer(fleet.key),
        json={"model": "cheap", "prompt": "count", "stream": True},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        async for event, data in sse_events(response):
            if event == "token":
                if not tokens:
                    # The first token is out while the request is still going: it streams.
                    log = list(fleet.store.read_all())
                    completed_when_first_token = [
                        e.type for e in log if e.type == "RequestCompleted"
                    ]
                tokens.append(data)
                continue
            assert event == "done"
            # Right when `done` is read, its RequestCompleted is already committed.
            events = fleet.events(data["request_id"])
            done = data
            break
        else:
            pytest.fail("the stream ended without a done event")
        assert await response.content.read() == b""
    assert completed_when_first_token == []
    assert events[-1].type == "RequestCompleted"
    assert events[-1].position == done["position"]
    assert events[-1].data["text"] == done["text"] == LONG
    assert "".join(t["text"] for t in tokens) == LONG
    assert [t["text"] for t in tokens] == _logged_tokens(fleet, done["request_id"])
    assert {t["member"] for t in tokens} == {"cheap"}
    times = [t["ms"] for t in tokens]
    assert times == sorted(times)
    assert done["model"] == "cheap"
    assert done["usage"]["completion_tokens"] == len(tokens) == 30
    assert done["attempts"] == [{"model": "cheap", "attempt": 1, "outcome": "ok", "message": ""}]


async def test_orchestrate_streams_each_members_tokens_then_the_combined_answer(
    fleet: Fleet,
) -> None:
    body = {"prompt": "hi", "ensemble": {"models": ["cheap", "mid", "dear"]}}
    events = await _stream(fleet, ORCHESTRATE, body)
    assert [e for e, _ in events[-1:]] == ["done"]
    assert {e for e, _ in events[:-1]} == {"token"}
    done = events[-1][1]
    texts: dict[str, str] = {}
    for _, token in events[:-1]:
        texts[token["member"]] = texts.get(token["member"], "") + token["text"]
    assert texts == {m["member"]: m["text"] for m in done["members"]}
    assert set(texts) == {"cheap#1", "mid#2", "dear#3"}
    assert done["text"] == ANSWER
    assert done["agreement"] == pytest.approx(2 / 3)
    [completed] = [e for e in fleet.events(done["request_id"]) if e.type == "RequestCompleted"]
    assert completed.position == done["position"]


async def test_orchestrate_streams_with_a_routing_strategy(fleet: Fleet) -> None:
    events = await _stream(fleet, ORCHESTRATE, {"prompt": "hi", "strategy": "cost_first"})
    *tokens, (kind, done) = events
    assert kind == "done"
    assert (done["model"], done["route"]["strategy"]) == ("cheap", "cost_first")
    assert "".join(t["text"] for _, t in tokens) == done["text"] == ANSWER


async def test_a_cached_answer_streams_word_by_word_at_no_cost(fleet: Fleet) -> None:
    body = {"model": "mid", "prompt": "hi", "temperature": 0}
    first = await _stream(fleet, PROCESS, body)
    # The cache is a projection of the log: a consistent read waits until it has the answer.
    assert (await fleet.get("/api/advanced-ai/dashboard?consistent=true"))[0] == 200
    again = await _stream(fleet, PROCESS, body)
    assert first[-1][1]["cached"] is False and first[-1][1]["cost_usd"] > 0
    *tokens, (kind, done) = again
    assert (kind, done["cached"], done["cost_usd"]) == ("done", True, 0)
    assert [t["text"] for _, t in tokens] == ["The ", "answer ", "is ", "42."]
    assert len(fleet.upstream.requests) == 1


async def test_a_failure_mid_stream_ends_with_an_error_event(fleet: Fleet) -> None:
    fleet.upstream.models["cheap"] = Behaviour(reply=LONG)
    fleet.upstream.fail(Fault.error_event(after=3), model="cheap")
    events = await _stream(fleet, PROCESS, {"model": "cheap", "prompt": "hi"})
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "error"
    assert "done" not in kinds
    # Cut after three tokens, and not retried: the client has those three already.
    assert kinds.count("token") == 3
    error = events[-1][1]["error"]
    assert error["type"] == "upstream_failed"
    assert len(error["tried"]) == 1
    request_id = error["message"].rsplit("(request ", 1)[1].rstrip(")")
    types = [e.type for e in fleet.events(request_id)]
    assert types[-1] == "RequestFailed"
    assert types.count("ModelCallFailed") == 1


async def test_a_stream_that_breaks_off_is_not_retried_after_its_first_tokens(
    fleet: Fleet,
) -> None:
    fleet.upstream.fail(Fault.error_event(after=2), model="cheap", times=1)
    events = await _stream(fleet, PROCESS, {"model": "cheap", "prompt": "hi"})
    *tokens, (kind, error) = events
    # A retry would have streamed a second answer after the first one's two tokens.
    assert kind == "error" and len(tokens) == 2
    assert "a streamed answer is not retried" in error["error"]["message"]
    request_id = error["error"]["message"].rsplit("(request ", 1)[1].rstrip(")")
    types = [e.type for e in fleet.events(request_id)]
    assert types.count("ModelCallStarted") == 1 and types[-1] == "RequestFailed"


async def test_a_streamed_request_refused_before_any_token_gets_its_status(
    fleet: Fleet,
) -> None:
    async with fleet.api.http.post(
        fleet.api.url + PROCESS,
        headers=bearer(fleet.key),
        json={"model": "nope", "prompt": "hi", "stream": True},
    ) as response:
        assert response.status == 404


async def test_a_stream_refused_up_front_says_why_in_json(fleet: Fleet) -> None:
    async with fleet.api.http.post(
        fleet.api.url + PROCESS,
        headers=bearer(fleet.key),
        json={"model": "nope", "prompt": "hi", "stream": True},
    ) as response:
        assert response.content_type == "application/json"
        assert await response.json() == {
            "error": {"type": "not_found", "message": "no model named 'nope'", "field": "model"}
        }


# ----------------------------------------------------------------------------------- WebSocket


@pytest.mark.parametrize("stream", [False, True])
async def test_a_requests_tokens_arrive_on_the_websocket_in_order_once(
    fleet: Fleet, stream: bool
) -> None:
    # The first token waits, so that the subscriber hears of the request and subscribes to
    # its tokens before they flow.
    fleet.upstream.models["cheap"] = Behaviour(
        reply=LONG, first_token_delay=0.5, tokens_per_second=200
    )
    api = fleet.api
    # The poster's own key: a key without a tenant watches its own requests only.
    async with api.http.ws_connect(api.ws_url(), headers=bearer(fleet.key)) as ws:
        await ws.send_json({"op": "subscribe", "topics": ["requests"]})
        assert await ws.receive_json(timeout=5) == {"type": "subscribed", "topics": ["requests"]}
        body = {"model": "cheap", "prompt": "count", "stream": stream}
        posting = asyncio.create_task(_post_and_read(fleet, body))
        received = await ws.receive_json(timeout=5)
        assert received["topic"] == "requests"
        assert received["payload"]["state"] == "received"
        request_id = received["payload"]["request_id"]
        topic = f"tokens:{request_id}"
        await ws.send_json({"op": "subscribe", "topics": [topic]})
        tokens: list[dict[str, Any]] = []
        subscribed = False
        while True:
            message = await ws.receive_json(timeout=10)
            if message["type"] == "subscribed":
                assert not tokens, "a token came before the subscription was confirmed"
                subscribed = True
            elif message["topic"] == topic:
                tokens.append(message["payload"])
            else:
                assert message == {
                    "type": "event",
                    "topic": "requests",
                    "payload": {"request_id": request_id, "state": "completed"},
                }
                break
        answer = await posting
    assert subscribed
    assert "".join(t["text"] for t in tokens) == answer == LONG
    # In order and never twice: exactly the deltas of the log, one by one.
    assert [t["text"] for t in tokens] == _logged_tokens(fleet, request_id)
    assert {t["member"] for t in tokens} == {"cheap"}


async def _post_and_read(fleet: Fleet, body: dict[str, Any]) -> str:
    async with fleet.api.http.post(
        fleet.api.url + PROCESS, headers=bearer(fleet.key), json=body
    ) as response:
        assert response.status == 200
        if not body["stream"]:
            text: str = (await response.json())["text"]
            return text
        events = [event async for event in sse_events(response)]
        assert events[-1][0] == "done"
        text = events[-1][1]["text"]
        return text


async def test_a_websocket_session_token_follows_a_request(fleet: Fleet) -> None:
    """Browsers open the WebSocket with a session token instead of a header."""
    api = fleet.api
    status, session, _ = await api.call(
        "POST", "/api/advanced-ai/auth/session", key=fleet.key, json={"minutes": 1}
    )
    assert status == 200
    async with api.http.ws_connect(api.ws_url() + f"?token={session['token']}") as ws:
        await ws.send_json({"op": "subscribe", "topics": ["requests"],
                            "filter": {"state": "completed"}})  # fmt: skip
        assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
        status, answer = await fleet.post(PROCESS, {"model": "cheap", "prompt": "hi"})
        assert status == 200
        # The filter kept "received" out: the first event is the request's completion.
        message = await ws.receive_json(timeout=5)
        assert message == {
            "type": "event",
            "topic": "requests",
            "payload": {"request_id": answer["request_id"], "state": "completed"},
        }
        await ws.send_json({"op": "ping"})
        assert await ws.receive_json(timeout=5) == {"type": "pong"}


async def test_a_viewer_watches_its_own_tenants_requests_and_an_operator_all(
    fleet: Fleet,
) -> None:
    api, store = fleet.api, fleet.store
    user_a = issue_key(store, Role.USER, tenant="a")
    viewer_a = issue_key(store, Role.VIEWER, tenant="a")
    viewer_b = issue_key(store, Role.VIEWER, tenant="b")
    async with asyncio.timeout(5):
        while any(api.services.keys.find(k) is None for k in (user_a, viewer_a, viewer_b)):
            await asyncio.sleep(0.02)
    keys = (viewer_a, viewer_b, api.keys[Role.OPERATOR])
    sockets = [await api.http.ws_connect(api.ws_url(), headers=bearer(k)) for k in keys]
    watch_a, watch_b, watch_all = sockets
    try:
        for ws in sockets:
            await ws.send_json({"op": "subscribe", "topics": ["requests"]})
            assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
        status, answer = await fleet.post(PROCESS, {"model": "cheap", "prompt": "hi"}, user_a)
        assert status == 200
        status, other = await fleet.post(PROCESS, {"model": "cheap", "prompt": "hi"})
        assert status == 200

        async def heard(ws: Any, count: int) -> list[tuple[str, str]]:
            messages = [await ws.receive_json(timeout=5) for _ in range(count)]
            return [(m["payload"]["request_id"], m["payload"]["state"]) for m in messages]

        mine = [(answer["request_id"], "received"), (answer["request_id"], "completed")]
        theirs = [(other["request_id"], "received"), (other["request_id"], "completed")]
        assert await heard(watch_a, 2) == mine
        assert await heard(watch_all, 4) == mine + theirs
        # Tenant b heard of neither: the next thing it gets is the answer to its ping.
        await watch_b.send_json({"op": "ping"})
        assert await watch_b.receive_json(timeout=5) == {"type": "pong"}
        await watch_a.send_json({"op": "ping"})
        assert await watch_a.receive_json(timeout=5) == {"type": "pong"}
    finally:
        for ws in sockets:
            await ws.close()
