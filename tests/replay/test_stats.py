"""`atom replay stats --at`: the figures of any moment, against the live ones of that moment."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from eventstore import SQLiteReader
from replay.stats import figures, moment

from ._logs import Story, refused, replay, story

__all__ = ["story"]


def _recorded_at(path: Path, position: int) -> str | None:
    with SQLiteReader(str(path)) as reader:
        page = reader.read_page(position - 1, 1)
    return page[0].recorded_at if page else None


def test_the_figures_at_each_step_are_those_the_server_had_then(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    assert len(story.snapshots) == 5
    for snapshot in story.snapshots:
        ran = replay(capsys, "stats", "--db", str(story.path), "--at", str(snapshot.position),
                     "--json")  # fmt: skip
        assert ran.code == 0
        report = ran.json()
        assert report["position"] == snapshot.position
        assert report["at"] == _recorded_at(story.path, snapshot.position)
        assert report["figures"] == figures(snapshot.states, moment(report["at"]))


def test_the_first_step_in_figures(capsys: pytest.CaptureFixture[str], story: Story) -> None:
    first = story.snapshots[0].position
    f = replay(capsys, "stats", "--db", str(story.path), "--at", str(first), "--json").json()[
        "figures"
    ]
    assert f["spend"] == {
        "total_usd": pytest.approx(36e-6),
        "per_model_usd": {"backup": pytest.approx(36e-6), "cheap": 0.0},
    }
    cheap, backup = f["models"]["cheap"], f["models"]["backup"]
    assert (cheap["calls"], cheap["failed"], cheap["errors_by_kind"]) == (
        3,
        3,
        {"upstream_error": 3},
    )
    assert cheap["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert (backup["calls"], backup["completed"], backup["prompt_tokens"]) == (1, 1, 8)
    assert backup["quality"]["text_generation"] == {"mean_score": 1.0, "scores": 1}
    assert backup["latency_ms"]["p50"] is not None and backup["ttft_ms"]["p50"] is not None
    assert f["strategies"]["cost_first"]["requests"] == 1
    assert f["strategies"]["cost_first"]["fallbacks"] == 3
    assert f["requests"] == {"completed": 1, "failed": 0, "cached": 0}


def test_a_time_means_the_last_event_recorded_at_or_before_it(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    db = str(story.path)
    checked = 0
    for snapshot in story.snapshots:
        at = _recorded_at(story.path, snapshot.position)
        assert at is not None
        if _recorded_at(story.path, snapshot.position + 1) == at:
            continue  # committed together: the time cannot tell them apart
        ran = replay(capsys, "stats", "--db", db, "--at", at, "--json")
        assert ran.json()["position"] == snapshot.position
        assert ran.json()["figures"] == figures(snapshot.states, moment(at))
        checked += 1
    assert checked
    first = datetime.fromisoformat(_recorded_at(story.path, 1) or "")
    before = (first - timedelta(seconds=1)).isoformat()
    empty = replay(capsys, "stats", "--db", db, "--at", before, "--json").json()
    assert (empty["position"], empty["at"], empty["figures"]["models"]) == (0, None, {})
    # A time with another zone is the same moment.
    local = first.astimezone(datetime.now().astimezone().tzinfo).isoformat()
    assert replay(capsys, "stats", "--db", db, "--at", local, "--json").json()["position"] >= 1


def test_without_at_the_figures_are_those_of_the_end(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    ran = replay(capsys, "stats", "--db", str(story.path))
    assert ran.code == 0
    assert ran.out.startswith(f"at position {story.snapshots[-1].position} (")
    lines = ran.out.splitlines()
    header = next(line for line in lines if line.startswith("model "))
    assert header.split()[:4] == ["model", "calls", "ok", "failed"]
    cheap = next(line for line in lines if line.startswith("cheap "))
    assert "upstream_error 3" in cheap
    assert "requests: 4 completed (1 from the cache), 1 failed" in ran.out


def test_a_bad_at_is_refused_in_one_line(capsys: pytest.CaptureFixture[str], story: Story) -> None:
    db = str(story.path)
    refused(replay(capsys, "stats", "--db", db, "--at", "yesterday"),
            "--at 'yesterday' is neither a position nor an ISO 8601 time")  # fmt: skip
    refused(
        replay(capsys, "stats", "--db", db, "--at", "9999"), "position 9999 is past the log's end"
    )
    refused(replay(capsys, "stats", "--db", db, "--at", "-3"), "'-3' is neither")
