"""`atom replay stream`: a recorded answer played back as the client saw it come."""

from __future__ import annotations

import subprocess
import time

import orjson
import pytest

from eventstore import SQLiteReader

from ._logs import PACED_REPLY, Story, refused, replay, story
from .conftest import ATOM

__all__ = ["story"]


def _answer(story: Story, request_id: str) -> str:
    with SQLiteReader(str(story.path)) as reader:
        last = reader.read_stream(f"request-{request_id}")[-1]
    assert last.type == "RequestCompleted"
    text: str = last.data["text"]
    return text


def test_at_speed_0_the_output_is_the_answer(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    for request_id, says in [
        (story.fallback, "backup (call "),
        (story.ensemble, "a, ensemble member a#1 (call "),
        (story.paced, "paced (call "),
        (story.cached, f"paced's answer to request {story.paced}, from the cache"),
    ]:
        ran = replay(capsys, "stream", "--db", str(story.path), request_id, "--speed", "0")
        assert ran.code == 0
        assert ran.out == _answer(story, request_id)
        assert ran.err.startswith(f"request {request_id}: {says}")
    assert _answer(story, story.paced) == PACED_REPLY


def test_json_gives_each_token_with_its_recorded_offset(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    ran = replay(
        capsys, "stream", "--db", str(story.path), story.ensemble, "--speed", "0", "--json"
    )
    tokens = [orjson.loads(line) for line in ran.out.splitlines()]
    assert "".join(t["text"] for t in tokens) == "The answer is 4"
    assert {(t["model"], t["member"]) for t in tokens} == {("a", "a#1")}
    offsets = [t["offset_ms"] for t in tokens]
    assert offsets == sorted(offsets)


def test_tokens_come_at_the_recorded_pace_divided_by_speed(story: Story) -> None:
    # Forty tokens a second: the recording spans about 130 ms; at half speed, about 260 ms.
    args = [ATOM, "replay", "stream", "--db", str(story.path), story.paced, "--json"]
    process = subprocess.Popen([*args, "--speed", "0.5"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    arrivals = []
    for line in process.stdout:
        arrivals.append((time.monotonic(), orjson.loads(line)))
    assert process.wait(timeout=30) == 0
    assert "".join(token["text"] for _, token in arrivals) == PACED_REPLY
    recorded = arrivals[-1][1]["offset_ms"] - arrivals[0][1]["offset_ms"]
    played = (arrivals[-1][0] - arrivals[0][0]) * 1000
    assert played >= 0.9 * recorded / 0.5, "waits are never shorter than the recording's"


def test_a_request_without_an_answer_or_a_bad_speed_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    db = str(story.path)
    refused(replay(capsys, "stream", "--db", db, story.failed), "has no answer to play: it failed")
    refused(replay(capsys, "stream", "--db", db, "nope"), "no request 'nope'")
    for speed in ("-1", "fast", "nan", "inf"):
        refused(replay(capsys, "stream", "--db", db, story.paced, "--speed", speed),
                f"--speed {speed!r}: not a number 0 or above")  # fmt: skip
