"""`atom replay rebuild`: projections folded again from 0 against those the server stored."""

from __future__ import annotations

import os
import pty
import sqlite3
import subprocess
from pathlib import Path

import orjson
import pytest

from atom_actors.events import BudgetSet, ModelHealthChanged
from eventstore import SQLiteProjectionTable, SQLiteStore

from ._logs import Story, copy_log, refused, replay, story
from .conftest import ATOM

__all__ = ["story"]
NAMES = ["performance", "orchestration", "budgets", "cache", "failures", "scored_calls"]


def _head(path: Path) -> int:
    with SQLiteStore(str(path), create=False) as store:
        return store.head()


def _stored(path: Path) -> dict[str, tuple[int, int, bytes]]:
    table = SQLiteProjectionTable(str(path))
    try:
        return table.stored()
    finally:
        table.close()


def test_an_intact_log_rebuilds_identical_and_is_left_as_it_was(
    capsys: pytest.CaptureFixture[str], story: Story
) -> None:
    before = story.path.read_bytes()

    ran = replay(capsys, "rebuild", "--db", str(story.path), "--json")

    assert ran.code == 0
    report = ran.json()
    assert report["identical"] is True
    assert [(p["name"], p["status"]) for p in report["projections"]] == [
        (name, "identical") for name in NAMES
    ]
    assert {p["checkpoint"] for p in report["projections"]} == {report["head"]}
    assert story.path.read_bytes() == before
    human = replay(capsys, "rebuild", "--db", str(story.path))
    assert (
        human.code == 0 and f"performance v2: identical (checkpoint {report['head']})" in human.out
    )


def test_an_edited_projection_table_is_reported_with_every_difference(
    capsys: pytest.CaptureFixture[str], story: Story, tmp_path: Path
) -> None:
    path = copy_log(story.path, tmp_path / "edited.db")
    conn = sqlite3.connect(path)
    (state,) = conn.execute("SELECT state FROM projections WHERE name = 'performance'").fetchone()
    edited = orjson.loads(state)
    edited["models"]["backup"]["calls"] = 7
    del edited["models"]["cheap"]["errors"]["upstream_error"]
    with conn:
        conn.execute(
            "UPDATE projections SET state = ? WHERE name = 'performance'",
            (orjson.dumps(edited).decode(),),
        )
    conn.close()

    ran = replay(capsys, "rebuild", "--db", str(path), "--json")

    assert ran.code == 1
    report = ran.json()
    assert report["identical"] is False
    performance = report["projections"][0]
    assert performance["status"] == "differs"
    assert performance["differences"] == [
        {"path": "/models/backup/calls", "live": 7, "rebuilt": 1, "absent": None},
        {"path": "/models/cheap/errors/upstream_error", "live": None, "rebuilt": 3,
         "absent": "live"},
    ]  # fmt: skip
    assert all(p["status"] == "identical" for p in report["projections"][1:])
    human = replay(capsys, "rebuild", "--db", str(path))
    assert human.code == 1
    assert "performance v2: differs" in human.out
    assert "  /models/backup/calls: live 7, rebuilt 1" in human.out
    assert "  /models/cheap/errors/upstream_error: live (absent), rebuilt 3" in human.out


def test_the_rebuild_stops_at_the_checkpoint_the_live_state_was_stored_at(
    capsys: pytest.CaptureFixture[str], story: Story, tmp_path: Path
) -> None:
    path = copy_log(story.path, tmp_path / "later.db")
    checkpoint = _head(path)
    # Events the server had not folded yet when it stored its projections.
    with SQLiteStore(str(path)) as store:
        store.append(
            "model-backup",
            [
                ModelHealthChanged(
                    model="backup", previous="closed", current="open", reason="test"
                ).new()
            ],
        )
        store.append("budget-global", [BudgetSet(scope="global", limit_pico=5, period="day").new()])

    ran = replay(capsys, "rebuild", "--db", str(path), "--json")

    assert ran.code == 0, ran.out
    report = ran.json()
    assert report["head"] == checkpoint + 2
    assert {(p["status"], p["checkpoint"]) for p in report["projections"]} == {
        ("identical", checkpoint)
    }


def test_one_projection_into_a_kept_file_and_one_the_log_does_not_store(
    capsys: pytest.CaptureFixture[str], story: Story, tmp_path: Path
) -> None:
    out = tmp_path / "rebuilt.db"
    ran = replay(capsys, "rebuild", "--db", str(story.path), "--projection", "budgets",
                 "--out", str(out), "--json")  # fmt: skip
    assert ran.code == 0
    assert [p["name"] for p in ran.json()["projections"]] == ["budgets"]
    assert _stored(out) == {
        "budgets": _stored(copy_log(story.path, tmp_path / "copy.db"))["budgets"]
    }

    unstored = copy_log(story.path, tmp_path / "events-only.db", until=_head(story.path))
    ran = replay(capsys, "rebuild", "--db", str(unstored), "--json")
    assert ran.code == 0
    assert {p["status"] for p in ran.json()["projections"]} == {"not stored"}
    conn = sqlite3.connect(unstored)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "projections" not in tables, "the log was only read"


def test_bad_input_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], story: Story, tmp_path: Path
) -> None:
    db = str(story.path)
    refused(replay(capsys, "rebuild", "--db", db, "--projection", "spend"),
            "no projection 'spend'; there are performance, orchestration")  # fmt: skip
    refused(replay(capsys, "rebuild", "--db", db, "--out", db), "exists")
    refused(replay(capsys, "rebuild", "--db", db, "--out", str(tmp_path / "no" / "new.db")),
            "no such directory")  # fmt: skip
    refused(replay(capsys, "rebuild", "--db", str(tmp_path / "missing.db")), "no such file")


def test_a_terminal_sees_a_progress_bar_and_a_pipe_does_not(story: Story) -> None:
    args = [ATOM, "replay", "rebuild", "--db", str(story.path)]
    piped = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert (piped.returncode, piped.stderr) == (0, "")

    leader, terminal = pty.openpty()
    try:
        on_terminal = subprocess.run(
            args, stdout=subprocess.PIPE, stderr=terminal, timeout=60, check=False
        )
        drawn = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(terminal)
    assert on_terminal.returncode == 0 and on_terminal.stdout == piped.stdout.encode()
    assert "\rrebuilding [" in drawn and drawn.endswith("\r\x1b[K")
