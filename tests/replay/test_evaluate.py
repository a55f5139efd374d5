"""`atom replay evaluate` on a dataset small enough to work out by hand, on bad input, and on
RouteLLM's GSM8K answers."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from atom_actors.datasets import load_jsonl
from eventstore import SQLiteReader
from replay.cli import main
from tests.paths import GSM8K

from .conftest import Atom

SHARED = GSM8K
PRICES = ["--prices", "weak=1/1", "strong=10/10"]
# The seed whose 50:50 split fits on the first four prompts and tests on the last four.
SEED = "68"


def _item(prompt: str, gold: str, weak: tuple[str, bool], strong: tuple[str, bool]) -> str:
    responses = {
        model: {"text": text, "correct": flag, "prompt_tokens": 100, "completion_tokens": 100}
        for model, (text, flag) in (("weak", weak), ("strong", strong))
    }
    return json.dumps({"prompt": prompt, "gold": gold, "responses": responses})


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Fit on four prompts of one length: weak fails the alpha ones, strong the omega ones (each
    is right on half: the dearer counts as the stronger). Test on four more.

    Test prompts (length; weak, strong right?): A "omega aa" (8; yes, yes), B alpha (30; no, yes),
    C alpha (12; no, yes), D omega (20; no, no). Weak 25%, strong 75%. A call costs 200 tokens:
    0.0002 USD weak, 0.002 USD strong. The dataset flags A's weak answer wrong, against the scorer.
    """
    right, wrong = ("#### 7", True), ("#### 5", False)
    lines = [
        _item("alpha train one", "7", wrong, right),
        _item("alpha train two", "7", wrong, right),
        _item("omega train one", "7", right, wrong),
        _item("omega train two", "7", right, wrong),
        _item("omega aa", "1", ("#### 1", False), ("#### 1", True)),
        _item("alpha " + "b" * 24, "2", ("#### 20", False), ("#### 2", True)),
        _item("alpha cccccc", "3", ("#### 30", False), ("The answer is 3.", True)),
        _item("omega " + "d" * 14, "4", ("#### 97", False), ("#### 98", False)),
    ]
    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = _run(capsys, *args, "--json")
    assert (code, err) == (0, "")
    report: dict[str, Any] = orjson.loads(out)
    return report


def _tiny(
    capsys: pytest.CaptureFixture[str], dataset: Path, db: Path, *args: str
) -> dict[str, Any]:
    return _json(capsys, "--dataset", str(dataset), "--db", str(db), "--seed", SEED, *PRICES, *args)


def test_the_seed_splits_the_tiny_dataset_as_planned(dataset: Path) -> None:
    train, test = load_jsonl(dataset).split(0.5, int(SEED))
    assert [item.prompt.split()[1] for item in train.items] == ["train"] * 4
    assert [item.prompt[:7] for item in test.items] == ["omega a", "alpha b", "alpha c", "omega d"]


def test_quality_first_routes_by_learnt_per_prompt_quality(
    capsys: pytest.CaptureFixture[str], dataset: Path, tmp_path: Path
) -> None:
    report = _tiny(capsys, dataset, tmp_path / "e.db", "--strategy", "quality_first")
    # Alpha prompts promise a gain from the strong model (B, C), omega ones a loss (A, D).
    # Right on A, B, C; two calls of each model.
    assert report["accuracy"] == 0.75
    assert report["cost_usd"] == pytest.approx(2 * 0.0002 + 2 * 0.002)
    assert report["calls"] == {"weak": 2, "strong": 2}
    assert report["strong_share"] == 0.5
    assert report["pgr"] == 1.0
    # The knob's curve: B and C together, then A and D: PGR 0, 1, 1 at shares 0, 1/2, 1.
    assert report["apgr"] == pytest.approx(0.75)
    assert report["cpt50"] == pytest.approx(0.25)
    assert report["cpt80"] == pytest.approx(0.4)
    assert report["quality_first_apgr"] == report["apgr"]
    assert report["weak_accuracy"] == 0.25
    assert report["strong_accuracy"] == 0.75
    assert report["models"] == ["weak", "strong"]
    assert (report["test_size"], report["train_size"]) == (4, 4)
    assert report["scorer_agreement_with_csv"] == 7 / 8
    assert (report["answers_with_estimated_tokens"], report["answers"]) == (0, 8)
    assert report["best_single_model"] == {
        "model": "strong",
        "accuracy": 0.75,
        "cost_usd": pytest.approx(0.008),
    }


def test_every_router_is_reported_on_the_same_prompts(
    capsys: pytest.CaptureFixture[str], dataset: Path, tmp_path: Path
) -> None:
    rows = _tiny(capsys, dataset, tmp_path / "e.db", "--strategy", "cost_first")["rows"]
    expected = {
        "cost_first": (0.25, 0.0008),
        "speed_first": (0.25, 0.0008),  # equal speeds: the cheaper
        "capability": (0.75, 0.0044),
        "round_robin": (0.5, 0.0044),  # A weak, B strong, C weak, D strong
        "prompt_length": (0.5, 0.0044),  # B and D are longer than the median, 15
        "model:weak": (0.25, 0.0008),
        "model:strong": (0.75, 0.008),
        # Both models answer; where they differ the one with the higher quality wins.
        **{
            f"ensemble:{method}": (0.75, 0.0088)
            for method in (
                "majority_vote",
                "weighted_average",
                "confidence_weighted",
                "best_of_n",
                "consensus",
            )
        },
    }
    for name, (accuracy, cost) in expected.items():
        assert (rows[name]["accuracy"], rows[name]["cost_usd"]) == (
            accuracy,
            pytest.approx(cost),
        ), name
    # By length: B +1, D 0, C +1, A 0, so PGR 0, 1/2, 1/2, 1, 1.
    assert rows["prompt_length"]["apgr"] == pytest.approx(0.625)
    assert rows["prompt_length"]["cpt80"] == pytest.approx(0.65)
    assert rows["ensemble:consensus"]["calls"] == {"weak": 4, "strong": 4}
    assert rows["cost_first"]["apgr"] is None
    assert rows["random"]["apgr"] is not None


def test_the_ensemble_option_selects_the_ensemble_strategy(
    capsys: pytest.CaptureFixture[str], dataset: Path, tmp_path: Path
) -> None:
    report = _tiny(capsys, dataset, tmp_path / "e.db", "--ensemble", "weighted_average")
    assert report["strategy"] == "ensemble:weighted_average"
    assert (report["accuracy"], report["calls"]) == (0.75, {"weak": 4, "strong": 4})
    assert report["apgr"] is None


def test_the_run_is_on_the_record_and_verifies(
    capsys: pytest.CaptureFixture[str], dataset: Path, tmp_path: Path, atom: Atom
) -> None:
    db = tmp_path / "e.db"
    report = _tiny(capsys, dataset, db, "--strategy", "prompt_length")
    with SQLiteReader(str(db)) as log:
        events = list(log.read_all())
    assert [e.type for e in events] == [
        "EvaluationStarted",
        *["EvaluationDecided"] * 4,
        "EvaluationCompleted",
    ]
    assert {e.correlation_id for e in events} == {report["evaluation_id"]}
    started, decided, completed = events[0].data, [e.data for e in events[1:5]], events[5].data
    assert started["settings"]["strategy"] == "prompt_length"
    assert started["settings"]["prices"] == {"weak": "1/1", "strong": "10/10"}
    assert (started["train_size"], started["test_size"]) == (4, 4)
    assert [d["models"] for d in decided] == [["weak"], ["strong"], ["weak"], ["strong"]]
    assert [d["correct"] for d in decided] == [True, True, False, False]
    assert [d["cost_pico"] for d in decided] == [2 * 10**8, 2 * 10**9, 2 * 10**8, 2 * 10**9]
    assert decided[1]["median"] == 15
    assert completed == {k: v for k, v in report.items() if k != "db"}
    result = atom("replay", "verify", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 6 events")


def test_the_decisions_of_a_routing_strategy_carry_the_route(
    capsys: pytest.CaptureFixture[str], dataset: Path, tmp_path: Path
) -> None:
    db = tmp_path / "e.db"
    _tiny(capsys, dataset, db, "--strategy", "quality_first")
    with SQLiteReader(str(db)) as log:
        decided = [e.data for e in log.read_all() if e.type == "EvaluationDecided"]
    route = decided[1]["route"]
    assert route["strategy"] == "quality_first"
    assert route["chosen"] == "strong"
    # Predicted 0.5 +- 1/22 (the two alpha neighbours' offsets of +-1, shrunk by 20 more on the
    # line), weighing as the 4 train scores against the prior 0.5 counted 5 times.
    qualities = {c["model"]: c["quality"] for c in route["candidates"]}
    assert qualities == {
        "strong": pytest.approx((2.5 + 4 * (0.5 + 1 / 22)) / 9),
        "weak": pytest.approx((2.5 + 4 * (0.5 - 1 / 22)) / 9),
    }


def test_the_table_marks_the_selected_strategy_and_states_its_assumptions(
    capsys: pytest.CaptureFixture[str], dataset: Path, tmp_path: Path
) -> None:
    code, out, _ = _run(
        capsys,
        *("--dataset", str(dataset), "--db", str(tmp_path / "e.db"), "--seed", SEED, *PRICES),
        *("--strategy", "quality_first"),
    )
    assert code == 0
    selected = next(line for line in out.splitlines() if line.startswith("*"))
    # cost%, parity, best@cost, then strong share, PGR, APGR, CPT50, CPT80.
    assert selected.split() == [
        "*", "quality_first", "75.0%", "0.0044", "55.0%", "55.0%", "75.0%",
        "50.0%", "1.000", "0.750", "25.0%", "40.0%",
    ]  # fmt: skip
    assert "weak (1/1, 25.0%), strong (10/10, 75.0%)" in out
    assert "agrees with the dataset's flags on 87.5%" in out
    assert "0 of 8 answers' token counts estimated" in out
    assert sum(line.startswith("  ensemble:") for line in out.splitlines()) == 5


def test_the_plot_is_a_png(
    capsys: pytest.CaptureFixture[str], dataset: Path, tmp_path: Path
) -> None:
    plot = tmp_path / "curve.png"
    _tiny(capsys, dataset, tmp_path / "e.db", "--strategy", "random", "--plot", str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_terminal_sees_progress_and_a_pipe_does_not(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    dataset: Path,
    tmp_path: Path,
    atom: Atom,
) -> None:
    args = ["--dataset", str(dataset), "--seed", SEED, *PRICES, "--strategy", "random"]
    piped = atom("replay", "evaluate", *args, "--db", str(tmp_path / "piped.db"))
    assert (piped.returncode, piped.stderr) == (0, "")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = _run(capsys, *args, "--db", str(tmp_path / "tty.db"))
    assert code == 0
    assert "\revaluating [" in err
    assert re.search(r"\] (\d+)/\1", err), "the bar reaches its end"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--strategy", "fastest"], "--strategy: no 'fastest'; one of round_robin"),
        ([], "--strategy is required"),
        (["--strategy", "random", "--split", "50-50"], "--split: '50-50' is not TRAIN:TEST"),
        (["--strategy", "random", "--split", "0:0"], "--split: '0:0'"),
        (["--strategy", "random", "--split", "100:0"], "leaves 8 prompts to fit on and 0 to test"),
        (["--strategy", "random", "--format", "xml"], "--format: no 'xml'; one of routellm-csv"),
        (["--ensemble", "median"], "--ensemble: no 'median'"),
        (["--strategy", "cost_first", "--ensemble", "consensus"], "--ensemble goes with"),
        (["--strategy", "random", "--scorer", "judge"], "--scorer: no 'judge'"),
        (["--strategy", "cascade:agreement"], "cascade:agreement needs a dataset of three models"),
        (["--strategy", "random", "--prices", "weak=cheap"], "--prices: 'weak=cheap'"),
        (["--strategy", "random", "--prices", "other=1/1"], "the dataset has no model other"),
        (["--strategy", "random", "--prices", "weak=-1/1"], "--prices: 'weak=-1/1'"),
    ],
)
def test_bad_input_is_one_line_and_records_nothing(
    capsys: pytest.CaptureFixture[str],
    dataset: Path,
    tmp_path: Path,
    args: list[str],
    fragment: str,
) -> None:
    db = tmp_path / "e.db"
    code, out, err = _run(capsys, "--dataset", str(dataset), "--db", str(db), *PRICES, *args)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("atom replay evaluate: ")
    assert fragment in err
    assert not db.exists()


def test_a_plot_without_matplotlib_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    dataset: Path,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    db = tmp_path / "e.db"
    args = ["--dataset", str(dataset), "--db", str(db), *PRICES, "--strategy", "random"]
    code, _, err = _run(capsys, *args, "--plot", str(tmp_path / "p.png"))
    assert (code, err) == (
        2,
        "atom replay evaluate: --plot needs matplotlib: pip install matplotlib\n",
    )
    assert not db.exists()


def test_a_missing_dataset_or_price_is_one_line(
    capsys: pytest.CaptureFixture[str], dataset: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "e.db")
    missing = str(tmp_path / "nowhere.csv")
    assert _run(capsys, "--dataset", missing, "--db", db, "--strategy", "random") == (
        2,
        "",
        f"atom replay evaluate: {missing}: no such file\n",
    )
    assert _run(capsys, "--dataset", str(dataset), "--db", db, "--strategy", "random") == (
        2,
        "",
        "atom replay evaluate: no price for weak: pass --prices 'weak=IN/OUT'\n",
    )


def test_routellm_gsm8k(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The shared data: RouteLLM's accuracies, and quality_first's knob beats prompt length."""
    csv = str(SHARED / "gsm8k_responses.csv")
    common = ["--dataset", csv, "--db", str(tmp_path / "gsm8k.db"), "--strategy", "quality_first"]
    by_scorer = _json(capsys, *common)
    # The number scorer also credits GPT-4's "#### $20.00", which RouteLLM's flags count wrong.
    assert by_scorer["weak_accuracy"] == pytest.approx(0.637, abs=0.02)
    assert by_scorer["strong_accuracy"] == pytest.approx(0.89, abs=0.02)
    assert 0.95 < by_scorer["scorer_agreement_with_csv"] < 1.0
    assert by_scorer["test_size"] + by_scorer["train_size"] == 1307  # 12 contaminated removed
    assert by_scorer["apgr"] > by_scorer["prompt_length_apgr"] > by_scorer["random_apgr"]
    assert by_scorer["random_apgr"] == pytest.approx(0.5, abs=0.05)
    # The cascade reads the weak answer, the router only the prompt: the cascade's curve is higher.
    assert by_scorer["cascade_apgr"] > by_scorer["apgr"] + 0.05
    cascade = by_scorer["rows"]["cascade"]
    (default,) = [p for p in cascade["sweep"] if p["config"] == "cascade@0.76"]
    assert (default["accuracy"], default["cost_usd"]) == (cascade["accuracy"], cascade["cost_usd"])
    frontier = [config["config"] for config in by_scorer["frontier"]]
    assert frontier[-1].startswith("quality_first")
    assert sum(name.startswith("cascade") for name in frontier) > len(frontier) / 2

    by_flags = _json(capsys, *common, "--scorer", "recorded")
    assert by_flags["weak_accuracy"] == pytest.approx(0.637, abs=0.02)
    assert by_flags["strong_accuracy"] == pytest.approx(0.858, abs=0.02)
    assert by_flags["apgr"] > by_flags["prompt_length_apgr"] > by_flags["random_apgr"]
    assert by_flags["prompt_length_apgr"] == pytest.approx(0.6, abs=0.05)
    assert by_flags["scorer_agreement_with_csv"] is None
