"""The operator console in headless Chromium: what a person sees, driven as a person would.

Every test fails if the browser reports an error (see conftest). They share one `atom serve`,
so each one counts what it adds rather than what there is.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.api.console.conftest import Console, Server

pytestmark = pytest.mark.browser


def _number(console: Console, testid: str) -> float:
    text = console.page.inner_text(f"[data-testid=counter-{testid}] .value")
    return float(re.sub(r"[^0-9.]", "", text) or 0)


def _trace(server: Server, key: str, request_id: str) -> dict[str, Any]:
    status, trace = server.call("GET", f"/api/advanced-ai/requests/{request_id}", key)
    assert status == 200, trace
    return dict(trace)


def _state_positions(trace: dict[str, Any]) -> list[int]:
    states = ("RequestReceived", "RequestCompleted", "RequestFailed")
    return [s["position"] for s in trace["steps"] if s["type"] in states]


def test_sign_in_keeps_only_a_session_token_and_sign_out_ends_it(
    console: Console, server: Server
) -> None:
    key = server.key("viewer", tenant="signin")
    console.sign_in(key)
    page = console.page
    expect(page.locator("#who")).to_have_text("viewer · tenant:signin")
    stored = page.evaluate(
        "() => JSON.stringify({...sessionStorage}) + JSON.stringify({...localStorage})"
    )
    assert key not in stored and key not in page.content()
    assert page.context.cookies() == []
    token = page.evaluate("() => JSON.parse(sessionStorage.getItem('atom.session')).token")
    assert token.startswith("atomsession_")
    assert server.call("GET", "/api/advanced-ai/dashboard", token)[0] == 200
    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    # Signing out ended the session on the server, not only in the page.
    status, _ = server.call("GET", "/api/advanced-ai/dashboard", token)
    assert status == 401


def test_the_overview_counts_rise_and_its_charts_hold_points(
    console: Console, server: Server
) -> None:
    key = server.key("user", tenant="overview")
    status, _ = server.call("PUT", "/api/advanced-ai/admin/budgets/tenant:overview",
                            server.admin_key, {"usd": 1, "period": "day"})  # fmt: skip
    assert status == 200
    console.sign_in(key)
    page = console.page
    page.wait_for_selector("[data-testid=counter-requests]")
    before = _number(console, "requests")
    for _ in range(12):
        server.ask(key)
    # Live: the figures topic tells the page, which reads them again (at most once a second).
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=counter-requests] .value')"
        ".textContent.replace(/[^0-9.]/g, '')) >= n",
        arg=before + 12,
    )
    assert _number(console, "spend") > 0
    assert _number(console, "p50") > 0
    for chart in ("requests/s", "latency", "tokens/s", "spend per bucket"):
        holder = page.locator(f".chart[data-testid='{chart}']")
        assert int(holder.get_attribute("data-points") or 0) >= 1, chart
        assert holder.locator("canvas").count() == 1
    assert float(page.get_attribute(".chart[data-testid='requests/s']", "data-total") or 0) > 0
    # Spend against the budget that applies to this tenant's requests.
    budget = page.locator("[data-testid=budgets] tr[data-scope='tenant:overview']")
    expect(budget).not_to_have_attribute("data-spent", "0")
    console.shot("overview")


def test_models_show_health_with_why_and_trends(console: Console, server: Server) -> None:
    key = server.key("user", tenant="models")
    server.ask(key)
    console.sign_in(key, "models")
    row = console.page.locator("tr[data-model=fast]")
    expect(row.locator("[data-testid=circuit]")).to_have_text("closed")
    expect(row).to_contain_text("calls succeed")
    expect(row.locator("[data-testid='spark-fast-calls']")).not_to_have_attribute(
        "data-points", "0"
    )
    console.shot("models")


def test_a_streamed_request_s_tokens_appear_in_order(console: Console, server: Server) -> None:
    key = server.key("user", tenant="live")
    console.sign_in(key, "live")
    page = console.page
    page.wait_for_selector("[data-testid=feed-table]")
    for _ in range(4):
        server.ask(key)
    streamed: list[tuple[str, str]] = []
    worker = threading.Thread(target=lambda: streamed.append(server.ask_streamed(key)))
    worker.start()
    # The request shows up while it runs; click it to watch its tokens come in.
    first = page.locator("[data-testid=feed-table] tbody tr").first
    expect(first).to_have_attribute("data-state", "received")
    expect(page.locator("[data-testid=feed-table] tbody tr")).to_have_count(5)
    first.click()
    tokens = page.locator("[data-testid=tokens]")
    expect(tokens).not_to_have_attribute("data-seqs", "")
    worker.join(60)
    [(request_id, text)] = streamed
    assert first.get_attribute("data-request-id") == request_id
    expect(tokens.locator(".tokens")).to_have_text(text)
    seqs = [int(s) for s in (tokens.get_attribute("data-seqs") or "").split(",")]
    assert seqs == sorted(set(seqs))
    row = page.locator(f"tr[data-request-id='{request_id}']")
    expect(row).to_have_attribute("data-state", "completed")
    # Each of its states once, each from its own position in the log.
    trace = _trace(server, key, request_id)
    positions = ",".join(map(str, _state_positions(trace)))
    expect(row).to_have_attribute("data-events", positions)
    console.shot("live")


def test_a_request_s_story_renders_every_step_and_plays_its_tokens(
    console: Console, server: Server
) -> None:
    key = server.key("user", tenant="story")
    request_id = server.ask(key, model="slow")
    trace = _trace(server, key, request_id)
    console.sign_in(key, f"request/{request_id}")
    page = console.page
    steps = page.locator("[data-testid=steps] > li")
    expect(steps).to_have_count(len(trace["steps"]))
    shown = [(li.get_attribute("data-type"), int(li.get_attribute("data-position") or 0))
             for li in steps.all()]  # fmt: skip
    assert shown == [(s["type"], s["position"]) for s in trace["steps"]]
    candidates = page.locator("[data-testid=candidates] tr[data-candidate]")
    expect(candidates).to_have_count(1)
    expect(page.locator("[data-testid=outcome]")).to_have_text("completed")
    answer = next(s for s in trace["steps"] if s["type"] == "RequestCompleted")["data"]["text"]
    expect(page.locator("[data-testid=answer]")).to_have_text(answer)
    copied = page.locator("[data-copy]").evaluate_all("els => els.map(e => e.dataset.copy)")
    assert copied == [request_id, str(trace["position"])]
    [call_id] = trace["tokens"]
    page.click(f"[data-testid='play-{call_id}']")
    played = page.locator(f"[data-testid='tokens-{call_id}']")
    expect(played).to_have_attribute("data-played", "done")
    expect(played).to_have_text(answer)
    console.shot("request")


def test_strategies_and_a_recommendation(console: Console, server: Server) -> None:
    key = server.key("user", tenant="strategies")
    body = {"prompt": "hi", "strategy": "cost_first", "max_tokens": 8}
    status, _ = server.call("POST", "/api/advanced-ai/process", key, body)
    assert status == 200
    console.sign_in(key, "strategies")
    page = console.page
    expect(page.locator("tr[data-strategy=cost_first]")).to_be_visible()
    page.select_option("[data-testid=capability]", "summarization")
    page.fill("[data-testid=budget]", "0.01")
    page.click("form button[type=submit]")
    expect(page.locator("[data-testid=recommended]")).not_to_be_empty()
    console.shot("strategies")


def test_an_operator_verifies_the_log_and_a_viewer_cannot(console: Console, server: Server) -> None:
    console.sign_in(server.key("operator"), "log")
    page = console.page
    expect(page.locator("[data-testid=head]")).not_to_have_text("0")
    page.click("[data-testid=verify]")
    result = page.locator("[data-testid=verification-now]")
    expect(result).to_have_attribute("data-ok", "true")
    expect(page.locator("[data-testid='verification-last']")).to_have_attribute("data-ok", "true")
    console.shot("log")
    page.click("#sign-out")
    console.sign_in(server.key("viewer"), "log")
    expect(page.locator("[data-testid='verification-last']")).to_be_visible()
    assert page.locator("[data-testid=verify]").count() == 0


def test_a_tenant_s_page_shows_none_of_another_tenant_s_requests(
    console: Console, server: Server
) -> None:
    mine, theirs = server.key("user", tenant="acme"), server.key("user", tenant="globex")
    console.sign_in(server.key("viewer", tenant="acme"), "live")
    page = console.page
    page.wait_for_selector("[data-testid=feed-table]")
    hidden = [server.ask(theirs) for _ in range(3)]
    shown = [server.ask(mine) for _ in range(2)]
    for request_id in shown:
        expect(page.locator(f"tr[data-request-id='{request_id}']")).to_have_attribute(
            "data-state", "completed"
        )
    listed = page.locator("[data-testid=feed-table] tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.requestId)"
    )
    assert set(listed) == set(shown)
    # Another tenant's request is answered 404, which the browser notes as a failed load.
    console.allowed.append(re.compile(r"status of 404"))
    console.go(f"request/{hidden[0]}")
    expect(page.locator("[data-testid=story]")).to_contain_text("No request")


def test_the_page_recovers_after_atom_serve_restarts(console: Console, server: Server) -> None:
    key = server.key("user", tenant="restart")
    console.sign_in(server.key("viewer", tenant="restart"), "live")
    page = console.page
    before = [server.ask(key) for _ in range(2)]
    for request_id in before:
        expect(page.locator(f"tr[data-request-id='{request_id}']")).to_have_attribute(
            "data-state", "completed"
        )
    # While it is down the browser reports the refused connections, and nothing else.
    console.allowed += [re.compile(p) for p in (r"ERR_CONNECTION_REFUSED",
                                                r"WebSocket connection to .* failed")]  # fmt: skip
    server.stop()
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    server.start()
    # Right away, before the page is back: these come to it from the log when it resubscribes.
    after = [server.ask(key) for _ in range(2)]
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    more = server.ask(key)
    for request_id in [*before, *after, more]:
        row = page.locator(f"tr[data-request-id='{request_id}']")
        expect(row).to_have_attribute("data-state", "completed")
        # No gap and no duplicate: exactly its states' positions, each once.
        positions = ",".join(map(str, _state_positions(_trace(server, key, request_id))))
        expect(row).to_have_attribute("data-events", positions)
    assert page.locator("[data-testid=feed-table] tbody tr").count() == 5
    # The session, recorded in the log, outlived the server that started it.
    console.go("overview")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=counter-requests] .value')"
        "?.textContent.replace(/[^0-9.]/g, '')) >= 5"
    )
