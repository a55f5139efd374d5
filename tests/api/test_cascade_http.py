"""The cascade over HTTP: `strategy: cascade` with its ladder and checks on /process and
/orchestrate, streamed or not, and its figures on /orchestration/performance."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import ANSWER, DISSENT, Fleet, bearer, sse_events

PROCESS = "/api/advanced-ai/process"
ORCHESTRATE = "/api/advanced-ai/orchestrate"


def moves(body: dict[str, Any]) -> list[tuple[str, int, str | None]]:
    return [(m["action"], m["step"], m["speaker"]) for m in body["cascade"]]


async def test_a_cascade_keeps_a_cheap_answer_its_checks_pass_and_climbs_past_the_rest(
    fleet: Fleet,
) -> None:
    ask = {
        "prompt": "What is 6 x 7?",
        "strategy": "cascade",
        "answer_format": "number",
        "max_tokens": 16,
    }
    status, kept = await fleet.post(PROCESS, {**ask, "cascade": {"checks": {"validity": {}}}})
    assert status == 200, kept
    assert (kept["model"], kept["text"], kept["route"]["strategy"]) == ("cheap", ANSWER, "cascade")
    assert moves(kept) == [("call", 0, None), ("accept", 0, "cheap")]
    # Nothing is scored yet, so the learned check (a default) keeps no cheap answer: the top
    # of the ladder (dear, which dissents) answers.
    status, climbed = await fleet.post(PROCESS, ask)
    assert status == 200, climbed
    assert (climbed["model"], climbed["text"]) == ("dear", DISSENT)
    assert moves(climbed) == [
        ("call", 0, None),
        ("call", 1, None),
        ("call", 2, None),
        ("accept", 2, "dear"),
    ]
    assert [r.body["model"] for r in fleet.upstream.requests] == ["cheap", "cheap", "mid", "dear"]
    status, figures = await fleet.get("/api/advanced-ai/orchestration/performance?consistent=true")
    row = figures["strategies"]["cascade"]
    assert (row["requests"], row["escalations"]) == (2, 2)
    assert row["cost_usd"] == kept["cost_usd"] + climbed["cost_usd"]
    # Against dear answering both with the same tokens, the kept cheap answer saved money and
    # the climb cost the cheaper rungs on top.
    assert row["savings_usd"] > 0


async def test_orchestrate_streams_the_first_rungs_agreeing_answers_then_the_moves(
    fleet: Fleet,
) -> None:
    body = {
        "prompt": "What is 6 x 7?",
        "strategy": "cascade",
        "answer_format": "number",
        "max_tokens": 16,
        "stream": True,
        "cascade": {"first": 2, "checks": {"agreement": {}, "validity": {}}},
    }
    async with fleet.api.http.post(
        fleet.api.url + ORCHESTRATE, headers=bearer(fleet.key), json=body
    ) as response:
        assert response.status == 200
        events = [event async for event in sse_events(response)]
    tokens = [data for event, data in events if event == "token"]
    assert {t["member"] for t in tokens} == {"rung1:cheap", "rung1:mid"}
    (done,) = [data for event, data in events if event == "done"]
    assert (done["model"], done["text"]) == ("cheap", ANSWER)
    accepted = done["cascade"][-1]
    assert accepted["reason"] == (
        "agreement passed: 1.00 of 2 replies agree (needs 1);"
        " validity passed: a valid number answer"
    )
    assert [r["member"] for r in accepted["replies"]] == ["rung1:cheap", "rung1:mid"]
    received = fleet.events(done["request_id"])[0].data
    assert received["cascade"]["first"] == 2
    assert received["cascade"]["acceptance"]["learned"] is None
