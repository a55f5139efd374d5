"""`atom replay rescore`: new scores for past answers, appended once however often it runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atom_actors.scorers import ReferenceScorer
from eventstore import SQLiteReader, SQLiteStore
from replay.rescore import Where, plan, score_locally
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI

from ._logs import Story, copy_log, refused, replay, story

__all__ = ["story"]
JUDGE_KEY_ENV = "ATOM_TEST_JUDGE_KEY"


def _scores(path: Path, scorer: str) -> dict[str, Any]:
    """ScoreRecorded data by the model of the call it scores."""
    with SQLiteReader(str(path)) as reader:
        found = [e for e in reader.read_all() if e.type == "ScoreRecorded"]
    return {e.data["model"]: e for e in found if e.data["scorer"] == scorer}


def _quiet(done: int, total: int) -> None:
    """No progress to show."""


def test_reference_scores_what_the_gateway_did_not_and_a_second_run_adds_nothing(
    capsys: pytest.CaptureFixture[str], story: Story, tmp_path: Path
) -> None:
    path = copy_log(story.path, tmp_path / "log.db")
    before = _scores(path, "reference")
    assert sorted(before) == ["a", "backup"], "the gateway scored the answers it returned"

    first = replay(capsys, "rescore", "--db", str(path), "--scorer", "reference", "--json")

    assert first.code == 0
    assert first.json() == {
        "scorer": "reference", "version": "1", "since": 1, "answers": 5, "scored": 2,
        "mean_score": 0.5, "already_scored": 2, "filtered_out": 0,
        "unscorable": {"reference: no expected answer": 1}, "judge": None,
    }  # fmt: skip
    after = _scores(path, "reference")
    assert (after["b"].data["score"], after["c"].data["score"]) == (1.0, 0.0)
    assert after["c"].stream_id == f"request-{story.ensemble}"
    assert after["c"].metadata["actor"] == "atom replay rescore"
    with SQLiteReader(str(path)) as reader:
        head = reader.head()
        answered = next(e for e in reader.read_all() if e.event_id == after["c"].causation_id)
    assert answered.type == "ModelCallCompleted" and answered.data["text"] == "5"

    second = replay(capsys, "rescore", "--db", str(path), "--scorer", "reference", "--json")

    assert (second.code, second.json()["scored"], second.json()["already_scored"]) == (0, 0, 4)
    with SQLiteReader(str(path)) as reader:
        assert reader.head() == head
    stats = replay(capsys, "stats", "--db", str(path), "--json").json()["figures"]
    assert stats["models"]["c"]["quality"]["text_generation"] == {"mean_score": 0.0, "scores": 2}


def test_two_runs_that_race_append_each_score_once(story: Story, tmp_path: Path) -> None:
    path = copy_log(story.path, tmp_path / "log.db")
    with SQLiteStore(str(path)) as store:
        # Both planned before either appended: the event ids keep the second from counting twice.
        plans = [plan(store, ReferenceScorer(), 1, Where(), _quiet) for _ in range(2)]
        head = store.head()
        for planned in plans:
            score_locally(store, ReferenceScorer(), planned.answers, _quiet)
        assert store.head() == head + 2


def test_where_and_since_choose_the_answers(
    capsys: pytest.CaptureFixture[str], story: Story, tmp_path: Path
) -> None:
    path = copy_log(story.path, tmp_path / "log.db")
    db = ["rescore", "--db", str(path), "--json"]

    only_c = replay(capsys, *db, "--scorer", "reference", "--where", "model=c,type=number").json()
    assert (only_c["scored"], only_c["filtered_out"]) == (1, 4)
    assert sorted(_scores(path, "reference")) == ["a", "backup", "c"]

    with SQLiteReader(str(path)) as reader:
        paced = reader.read_stream(f"request-{story.paced}")[0].position
        failed = reader.read_stream(f"request-{story.failed}")[0].recorded_at
    since = replay(capsys, *db, "--scorer", "agreement", "--since", str(paced)).json()
    assert (since["answers"], since["unscorable"]) == (1, {"agreement: no consensus": 1})
    # Neither the failed request nor the cached one after it has an answer from a model.
    nothing = replay(capsys, *db, "--scorer", "reference", "--since", failed).json()
    assert nothing["answers"] == 0

    either = replay(capsys, *db, "--scorer", "feedback", "--where", "model=a,model=b").json()
    assert (either["filtered_out"], either["unscorable"]) == (3, {"feedback: no score given": 2})


@pytest.fixture
def judge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeOpenAI, Path]]:
    """A judge model on a fake OpenAI upstream, and a configuration naming it."""
    monkeypatch.setenv(JUDGE_KEY_ENV, "sk-judge")
    replies = {"judge": Behaviour(reply="Correct and clear.\nScore: 8")}
    with FakeOpenAI.in_thread(models=replies, api_key="sk-judge") as upstream:
        config = tmp_path / "atom.toml"
        config.write_text(
            "[[models]]\n"
            'name = "judge"\nprovider = "openai"\nmodel = "judge"\n'
            f'base_url = "{upstream.base_url}"\napi_key_env = "{JUDGE_KEY_ENV}"\n'
            "input_usd_per_mtok = 1.0\noutput_usd_per_mtok = 2.0\n"
        )
        yield upstream, config


def test_a_judge_model_grades_every_answer_once(
    capsys: pytest.CaptureFixture[str],
    story: Story,
    tmp_path: Path,
    judge: tuple[FakeOpenAI, Path],
) -> None:
    upstream, config = judge
    path = copy_log(story.path, tmp_path / "log.db")
    args = ["rescore", "--db", str(path), "--scorer", "judge", "--judge-model", "judge",
            "--config", str(config), "--json"]  # fmt: skip

    ran = replay(capsys, *args)

    assert ran.code == 0, ran.err
    report = ran.json()
    assert (report["scored"], report["mean_score"]) == (5, 0.8)
    run = report["judge"]
    assert (run["calls"], run["failed"], run["left_by_budget"]) == (5, 0, 0)
    assert len(upstream.requests) == 5
    asked = upstream.requests[0].body["messages"]
    assert asked[0]["role"] == "system" and "Score: N" in asked[0]["content"]
    assert "<question>\nWhat is 2 + 2?\n</question>" in asked[1]["content"]
    scores = _scores(path, "judge")
    assert sorted(scores) == ["a", "b", "backup", "c", "paced"]
    with SQLiteReader(str(path)) as reader:
        calls = reader.read_stream(f"request-{run['request_id']}")
    completed = [e for e in calls if e.type == "ModelCallCompleted"]
    assert [c.data["model"] for c in completed] == ["judge"] * 5
    assert sum(c.data["cost_pico"] for c in completed) / 1e12 == pytest.approx(run["spent_usd"])
    # Both the judge's call and its score point at the answer they judge.
    (graded_c,) = [c for c in completed if c.causation_id == scores["c"].causation_id]
    assert scores["c"].data["detail"] == f"judged by judge in call {graded_c.data['call_id']}"

    again = replay(capsys, *args)
    assert (again.json()["scored"], again.json()["already_scored"]) == (0, 5)
    assert len(upstream.requests) == 5, "nothing judged twice"


def test_the_judge_stops_before_its_spend_would_pass_the_budget(
    capsys: pytest.CaptureFixture[str],
    story: Story,
    tmp_path: Path,
    judge: tuple[FakeOpenAI, Path],
) -> None:
    upstream, config = judge
    path = copy_log(story.path, tmp_path / "log.db")
    args = ["rescore", "--db", str(path), "--scorer", "judge", "--judge-model", "judge",
            "--config", str(config)]  # fmt: skip

    # A call may cost up to ~$0.00098 (its prompt's bound, 256 tokens of reply), and reserves
    # that much; each costs ~$0.00009.
    ran = replay(capsys, *args, "--budget-usd", "0.0012", "--json")

    assert ran.code == 1
    run = ran.json()["judge"]
    assert 0 < run["calls"] < 5 and run["left_by_budget"] == 5 - run["calls"]
    assert run["spent_usd"] <= 0.0012
    assert len(upstream.requests) == run["calls"]

    rest = replay(capsys, *args)
    assert rest.code == 0
    assert f"{5 - run['calls']} scored (mean 0.800), {run['calls']} already scored" in rest.out
    assert len(upstream.requests) == 5


def test_bad_input_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str],
    story: Story,
    tmp_path: Path,
    judge: tuple[FakeOpenAI, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, config = judge
    path = copy_log(story.path, tmp_path / "log.db")
    db = ["rescore", "--db", str(path)]
    refused(replay(capsys, *db, "--scorer", "bleu"),
            "no scorer 'bleu'; there are agreement, feedback, judge, reference")  # fmt: skip
    refused(replay(capsys, *db, "--scorer", "reference", "--where", "colour=red"),
            "--where: no key 'colour'")  # fmt: skip
    refused(replay(capsys, *db, "--scorer", "reference", "--where", "model"), "not KEY=VALUE")
    refused(replay(capsys, *db, "--scorer", "reference", "--since", "last week"), "neither")
    refused(replay(capsys, *db, "--scorer", "reference", "--judge-model", "judge"),
            "--judge-model and --config go with --scorer judge")  # fmt: skip
    refused(replay(capsys, *db, "--scorer", "judge"), "needs --judge-model")
    judge_args = ["--scorer", "judge", "--judge-model", "judge", "--config", str(config)]
    refused(replay(capsys, *db, *judge_args, "--budget-usd", "lots"), "--budget-usd 'lots'")
    refused(replay(capsys, *db, *judge_args[:-1], str(tmp_path / "none.toml")), "no such file")
    refused(replay(capsys, *db, *judge_args[:2], "--judge-model", "gpt-5", *judge_args[4:]),
            "no model 'gpt-5'; there are judge")  # fmt: skip
    monkeypatch.delenv(JUDGE_KEY_ENV)
    refused(replay(capsys, *db, *judge_args), f"unavailable: credentials: {JUDGE_KEY_ENV} not set")
    missing = tmp_path / "missing.db"
    refused(
        replay(capsys, "rescore", "--db", str(missing), "--scorer", "reference"), "no such file"
    )
    assert not missing.exists()
