"""`atom replay trace` on logs the gateway wrote: every step of a request, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventstore import SQLiteReader
from replay.trace import build, render

from ._logs import PACED_REPLY, Story, copy_log, refused, replay, story

__all__ = ["story"]


def _trace(capsys: pytest.CaptureFixture[str], story: Story, request_id: str, *more: str) -> Any:
    ran = replay(capsys, "trace", "--db", str(story.path), request_id, "--json", *more)
    assert (ran.code, ran.err) == (0, "")
    return ran.json()


def _in_order(text: str, *fragments: str) -> None:
    at = 0
    for fragment in fragments:
        found = text.find(fragment, at)
        assert found >= 0, f"{fragment!r} missing after position {at} of:\n{text}"
        at = found + len(fragment)


def test_a_request_that_was_retried_then_fell_back_and_was_scored_is_told_in_order(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    trace = _trace(capsys, story, story.fallback)

    attempt = ["BudgetReserved", "ModelCallStarted", "ModelCallFailed", "BudgetSettled"]
    assert [s["type"] for s in trace["steps"]] == [
        "RequestReceived", "RouteDecided", *attempt * 3, "BudgetReserved", "ModelCallStarted",
        "ModelCallCompleted", "BudgetSettled", "ScoreRecorded", "RequestCompleted",
    ]  # fmt: skip
    steps = {s["type"]: s["data"] for s in trace["steps"]}
    assert steps["RequestReceived"]["api_key_id"] == "key-1"
    assert steps["RequestReceived"]["tenant"] == "acme"
    route = steps["RouteDecided"]
    assert [c["model"] for c in route["candidates"]] == ["cheap", "backup", "dear"]
    assert {"model": "a", "reason": "not in allow list"} in route["excluded"]
    failures = [s["data"] for s in trace["steps"] if s["type"] == "ModelCallFailed"]
    assert [(f["model"], f["attempt"], f["kind"], f["status"]) for f in failures] == [
        ("cheap", n, "upstream_error", 500) for n in (1, 2, 3)
    ]
    completed = steps["ModelCallCompleted"]
    tokens = trace["tokens"][completed["call_id"]]
    assert tokens["count"] == completed["completion_tokens"] == 2
    assert tokens["first_ms"] == completed["ttft_ms"] and tokens["each"] is None
    assert completed["cost_usd"] == pytest.approx(8 * 3e-6 + 2 * 6e-6)
    assert [r["state"] for r in trace["reservations"]] == ["settled"] * 4
    score = steps["ScoreRecorded"]
    assert (score["scorer"], score["scorer_version"], score["score"]) == ("reference", "1", 1.0)
    assert steps["RequestCompleted"]["fallbacks"] == 3 and trace["outcome"] == "completed"
    offsets = [s["offset_ms"] for s in trace["steps"]]
    assert offsets == sorted(offsets) and offsets[-1] > 400, "two backoffs: 0.2 s and 0.4 s"

    human = replay(capsys, "trace", "--db", str(story.path), story.fallback).out
    _in_order(
        human,
        f"request {story.fallback}: completed",
        "received on process from key key-1, tenant acme",
        "route cost_first",
        "candidate cheap", "candidate backup", "candidate dear", "excluded a: not in allow list",
        "budget reserved $0.000031 for cheap",
        "call cheap attempt 1 failed", "upstream_error (HTTP 500, retryable)",
        "budget settled $0 of $0.000031 by nothing was output",
        "call cheap attempt 2 failed", "call cheap attempt 3 failed",
        "call backup attempt 1 completed", "8 + 2 tokens, $0.000036",
        "2 tokens streamed: the first at",
        "budget settled $0.000036 of", "by the usage reported",
        "score reference v1 gave 1 to backup",
        "completed by backup", "4 attempts, 3 fallbacks", 'answer "Four: 4"',
    )  # fmt: skip


def test_an_ensemble_shows_each_members_vote_and_the_agreement(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    trace = _trace(capsys, story, story.ensemble)

    kinds = [s["type"] for s in trace["steps"]]
    assert kinds.count("ModelCallCompleted") == 3
    combined = kinds.index("EnsembleCombined")
    assert kinds[combined:] == ["EnsembleCombined", *["ScoreRecorded"] * 4, "RequestCompleted"]
    assert max(i for i, k in enumerate(kinds) if k.startswith("ModelCall")) < combined
    data = trace["steps"][combined]["data"]
    assert data["result"]["chosen"] == "a#1"
    assert data["result"]["agreement"] == pytest.approx(2 / 3)
    assert [(m["member"], m["vote"]) for m in data["members"]] == [
        ("a#1", "4"), ("b#2", "4"), ("c#3", "5"),
    ]  # fmt: skip
    scores = [s["data"] for s in trace["steps"] if s["type"] == "ScoreRecorded"]
    assert sorted((s["scorer"], s["model"], s["score"]) for s in scores) == [
        ("agreement", "a", 1.0), ("agreement", "b", 1.0), ("agreement", "c", 0.0),
        ("reference", "a", 1.0),
    ]  # fmt: skip

    human = replay(capsys, "trace", "--db", str(story.path), story.ensemble).out
    _in_order(
        human,
        "ensemble majority_vote of a, b, c",
        "ensemble majority_vote: a#1 speaks for answer",
        "agreement 0.67",
        'a#1 voted "4", weight 1.0 (vote)', 'b#2 voted "4"', 'c#3 voted "5"',
        "score agreement v1 gave 0 to c",
        'completed by a in',
    )  # fmt: skip


def test_tokens_lists_every_token_with_its_time(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    trace = _trace(capsys, story, story.paced, "--tokens")

    (tokens,) = trace["tokens"].values()
    texts = [text for text, _ in tokens["each"]]
    offsets = [ms for _, ms in tokens["each"]]
    assert "".join(texts) == PACED_REPLY and tokens["count"] == 6
    assert offsets == sorted(offsets) and offsets[0] == tokens["first_ms"]
    # Forty tokens a second: the five gaps take about 125 ms.
    assert tokens["duration_ms"] == pytest.approx(offsets[-1] - offsets[0])
    assert tokens["duration_ms"] > 80
    human = replay(capsys, "trace", "--db", str(story.path), story.paced, "--tokens").out
    _in_order(human, *(f' ms  "{text}"' for text in texts))


def test_a_cached_answer_names_its_source(capsys: pytest.CaptureFixture[str], story: Story) -> None:
    trace = _trace(capsys, story, story.cached)

    assert [s["type"] for s in trace["steps"]] == [
        "RequestReceived",
        "CacheHit",
        "RequestCompleted",
    ]
    assert trace["steps"][1]["data"]["source_request_id"] == story.paced
    human = replay(capsys, "trace", "--db", str(story.path), story.cached).out
    assert f"cache hit: the answer of request {story.paced}" in human
    assert "from the cache" in human


def test_a_failed_request_says_why(capsys: pytest.CaptureFixture[str], story: Story) -> None:
    trace = _trace(capsys, story, story.failed)

    assert trace["outcome"] == "failed"
    assert trace["steps"][-1]["data"]["status"] == 502
    human = replay(capsys, "trace", "--db", str(story.path), story.failed).out
    _in_order(human, "bad_request (HTTP 400, not retryable)", "failed: upstream_failed (HTTP 502)")


def test_a_reservation_its_crashed_process_never_settled_is_unsettled_then_expired(
    capsys: pytest.CaptureFixture[str], story: Story, tmp_path: Path
) -> None:
    with SQLiteReader(str(story.path)) as reader:
        events = reader.read_stream(f"request-{story.paced}")
    # The process died while the answer streamed: after its first tokens, before the outcome.
    first = next(e for e in events if e.type == "TokensStreamed")
    streamed = len(first.data["deltas"])  # as many as the first flush held
    crashed = copy_log(story.path, tmp_path / "crashed.db", until=first.position)

    ran = replay(capsys, "trace", "--db", str(crashed), story.paced, "--json")
    trace = ran.json()
    assert trace["outcome"] == "unfinished"
    assert [r["state"] for r in trace["reservations"]] == ["unsettled"]
    (call_id,) = trace["unfinished_calls"]
    assert trace["tokens"][call_id]["count"] == streamed
    human = replay(capsys, "trace", "--db", str(crashed), story.paced).out
    _in_order(
        human,
        "(UNSETTLED)",
        "unsettled: reservation",
        "was never settled; it expires at",
        f"unfinished: call {call_id} has no outcome on record",
        f"{streamed} tokens streamed",
        "unfinished: the request has no RequestCompleted or RequestFailed",
    )

    expires_at = trace["reservations"][0]["expires_at"]
    with SQLiteReader(str(crashed)) as reader:
        later = build(reader.read_stream(f"request-{story.paced}"), now=expires_at + 1)
    assert [r.state for r in later.reservations] == ["expired"]
    assert "was never settled; it expired at" in render(later)


def test_tracing_reads_the_log_without_changing_a_byte(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    before = story.path.read_bytes()
    for request_id in (story.fallback, story.ensemble, story.cached):
        assert replay(capsys, "trace", "--db", str(story.path), request_id).code == 0
    assert story.path.read_bytes() == before
    assert sorted(p.name for p in story.path.parent.iterdir()) == ["atom.db"]


def test_an_unknown_request_or_a_missing_log_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], story: Story, tmp_path: Path
) -> None:
    refused(replay(capsys, "trace", "--db", str(story.path), "nope"), "no request 'nope'")
    missing = tmp_path / "missing.db"
    refused(replay(capsys, "trace", "--db", str(missing), story.paced), "missing.db: no such file")
    assert not missing.exists()
