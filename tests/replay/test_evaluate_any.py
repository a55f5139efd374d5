"""`atom replay evaluate` on any recorded dataset: synthetic models of known accuracy, correlation
and cost (figures worked out by hand), other answer formats, and separate train and test files."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atom_actors.datasets import SyntheticModel, synthesize, to_jsonl
from eventstore import SQLiteReader
from replay.cli import main
from replay.evaluate._figures import Config, at_parity, frontier, within_cost

# Nested errors (correlation 1): small is right on half the prompts, medium on those and 20% more,
# large on those and 20% more again. Each answer records its cost.
MODELS = [
    SyntheticModel("small", 0.5, 0.001),
    SyntheticModel("medium", 0.7, 0.004),
    SyntheticModel("large", 0.9, 0.02),
]


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Path, Path]:
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text(to_jsonl(synthesize(MODELS, 40, correlation=1.0, seed=1)), encoding="utf-8")
    test.write_text(to_jsonl(synthesize(MODELS, 40, correlation=1.0, seed=2)), encoding="utf-8")
    return train, test


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["evaluate", *args, "--json"])
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    report: dict[str, Any] = orjson.loads(captured.out)
    return report


def _synthetic(
    capsys: pytest.CaptureFixture[str], parts: tuple[Path, Path], db: Path, *args: str
) -> dict[str, Any]:
    train, test = parts
    return _report(capsys, "--train", str(train), "--test", str(test), "--db", str(db), *args)


def test_three_synthetic_models_give_the_figures_worked_out_by_hand(
    capsys: pytest.CaptureFixture[str], parts: tuple[Path, Path], tmp_path: Path
) -> None:
    report = _synthetic(capsys, parts, tmp_path / "e.db", "--strategy", "cost_first")
    rows = report["rows"]
    # 40 test prompts at the recorded 0.001, 0.004 and 0.02 USD an answer; no price was given.
    for model, accuracy, cost in (("small", 0.5, 0.04), ("medium", 0.7, 0.16), ("large", 0.9, 0.8)):
        assert (rows[f"model:{model}"]["accuracy"], rows[f"model:{model}"]["cost_usd"]) == (
            accuracy,
            pytest.approx(cost),
        )
    assert report["models"] == ["small", "medium", "large"]
    assert report["answers_with_recorded_cost"] == 120
    assert (report["accuracy"], report["cost_usd"]) == (0.5, pytest.approx(0.04))
    # Where only large is right the three answers differ; the strongest member settles the tie.
    vote = rows["ensemble:majority_vote"]
    assert (vote["accuracy"], vote["cost_usd"]) == (0.9, pytest.approx(1.0))
    assert report["best_single_model"] == {"model": "large", "accuracy": 0.9, "cost_usd": 0.8}
    # Small and medium agree only where both are right (20 prompts); on the other 20 large is
    # asked, and is right on 16: 36 of 40, 0.9, for 40 x (0.001 + 0.004) + 20 x 0.02 = 0.6 USD.
    agreed = rows["cascade:agreement"]
    assert (agreed["accuracy"], agreed["cost_usd"]) == (0.9, pytest.approx(0.6))
    assert agreed["calls"] == {"small": 40, "medium": 40, "large": 20}
    assert report["parity"] == {
        "config": "cascade:agreement", "accuracy": 0.9, "cost_usd": pytest.approx(0.6),
        "cost_share": pytest.approx(0.75),
    }  # fmt: skip
    assert report["best_within_cost"]["accuracy"] == 0.9
    edge = [(c["accuracy"], c["cost_usd"]) for c in report["frontier"]]
    assert edge[0] == (0.5, pytest.approx(0.04))
    assert edge[-1] == (0.9, pytest.approx(0.6))
    assert report["weak_accuracy"] is None and report["rows"]["random"]["apgr"] is None


@pytest.mark.parametrize(
    ("threshold", "accuracy", "cost", "calls"),
    [
        # The acceptance score learns each rung's success rate: about 0.5 for small, 0.7 for
        # medium (the answers look alike). Above it, a rung's answer is never kept.
        ("0.3", 0.5, 0.04, {"small": 40, "medium": 0, "large": 0}),
        ("0.6", 0.7, 0.04 + 0.16, {"small": 40, "medium": 40, "large": 0}),
        ("0.8", 0.9, 0.04 + 0.16 + 0.8, {"small": 40, "medium": 40, "large": 40}),
    ],
)
def test_the_cascade_climbs_the_ladder_as_far_as_its_threshold_sends_it(
    capsys: pytest.CaptureFixture[str],
    parts: tuple[Path, Path],
    tmp_path: Path,
    threshold: str,
    accuracy: float,
    cost: float,
    calls: dict[str, int],
) -> None:
    report = _synthetic(
        capsys, parts, tmp_path / "e.db", "--strategy", "cascade", "--threshold", threshold
    )
    assert (report["accuracy"], report["cost_usd"]) == (accuracy, pytest.approx(cost))
    assert report["calls"] == calls
    assert report["cascade_threshold"] == float(threshold)
    # The sweep, worked out from each rung's probability, agrees with the loop at the default.
    (point,) = [
        p for p in report["rows"]["cascade"]["sweep"] if p["config"] == f"cascade@{threshold}"
    ]
    assert (point["accuracy"], point["cost_usd"]) == (accuracy, pytest.approx(cost))


def test_every_cascade_step_is_on_the_record(
    capsys: pytest.CaptureFixture[str], parts: tuple[Path, Path], tmp_path: Path
) -> None:
    db = tmp_path / "e.db"
    _synthetic(capsys, parts, db, "--strategy", "cascade", "--threshold", "0.6")
    with SQLiteReader(str(db)) as log:
        decided = [e.data for e in log.read_all() if e.type == "EvaluationDecided"]
    first = decided[0]
    assert first["models"] == ["small", "medium"]
    assert [r["models"] for r in first["route"]["cascade"]["rungs"]] == [
        ["small"], ["medium"], ["large"]
    ]  # fmt: skip
    steps = first["cascade"]
    assert [(s["action"], s["step"]) for s in steps] == [("call", 0), ("call", 1), ("accept", 1)]
    assert steps[1]["reason"].startswith("escalate: learned failed: 0.5")
    assert steps[2]["speaker"] == "medium"


def _formatted(path: Path, answers: list[tuple[str, str, str]]) -> Path:
    lines = [
        json.dumps({"prompt": f"question {i}", "gold": gold,
                    "responses": {"a": {"text": a, "cost_usd": 0.001},
                                  "b": {"text": b, "cost_usd": 0.01}}})
        for i, (gold, a, b) in enumerate(answers)
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("answer_format", "answers", "accuracies"),
    [
        (
            "choice",
            [("B", "Answer: (B)", "the answer is C"), ("A", "(a)", "A"), ("C", "D", "Answer: C")],
            (2 / 3, 2 / 3),
        ),
        (
            "json:result.value",
            [
                ("4", '{"result": {"value": 4}}', '```json\n{"result": {"value": 5}}\n```'),
                ("x", '{"result": {"value": "x"}}', '{"result": {"value": "x"}}'),
            ],
            (1.0, 0.5),
        ),
        ("text", [("Paris", "paris.", "Lyon"), ("Rome", "ROME", "Rome!")], (1.0, 0.5)),
    ],
)
def test_answers_are_scored_in_the_format_asked_for(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    answer_format: str,
    answers: list[tuple[str, str, str]],
    accuracies: tuple[float, float],
) -> None:
    data = _formatted(tmp_path / "d.jsonl", answers)
    report = _report(
        capsys, "--train", str(data), "--test", str(data), "--db", str(tmp_path / "e.db"),
        "--strategy", "random", "--answer-format", answer_format,
    )  # fmt: skip
    got = (report["rows"]["model:a"]["accuracy"], report["rows"]["model:b"]["accuracy"])
    assert got == pytest.approx(accuracies)


def test_the_plot_of_many_models_is_a_png(
    capsys: pytest.CaptureFixture[str], parts: tuple[Path, Path], tmp_path: Path
) -> None:
    plot = tmp_path / "frontier.png"
    _synthetic(capsys, parts, tmp_path / "e.db", "--strategy", "cascade", "--plot", str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--answer-format", "float"], "--answer-format: 'float' is not one of number"),
        (["--answer-format", "json"], "--answer-format: 'json' is not"),
        (["--answer-format", "number:x"], "--answer-format: 'number:x' is not"),
        (["--threshold", "1.5"], "--threshold: 1.5 is not within [0, 1]"),
        (["--dataset", "x.jsonl"], "give --dataset, or --train and --test, not both"),
        (["--test", "other.jsonl"], "--test: no such file"),
    ],
)
def test_bad_options_are_one_line(
    capsys: pytest.CaptureFixture[str],
    parts: tuple[Path, Path],
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    train, test = parts
    given_args = ["--train", str(train), "--test", str(test), "--strategy", "cascade", *args]
    if "--test" in args:
        given_args = [
            "--train",
            str(train),
            "--strategy",
            "cascade",
            "--test",
            str(tmp_path / "nope"),
        ]
        message = f"{tmp_path / 'nope'}: no such file"
    code = main(["evaluate", *given_args, "--db", str(tmp_path / "e.db")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("atom replay evaluate: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "e.db").exists()


def test_train_and_test_files_must_hold_the_same_models(
    capsys: pytest.CaptureFixture[str], parts: tuple[Path, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text(to_jsonl(synthesize(MODELS[:2], 10, 1.0)), encoding="utf-8")
    code = main(["evaluate", "--train", str(parts[0]), "--test", str(other),
                 "--strategy", "cascade", "--db", str(tmp_path / "e.db")])  # fmt: skip
    assert code == 2
    assert "--train has models small, medium, large; --test has small, medium" in (
        capsys.readouterr().err
    )


configs = st.lists(
    st.builds(Config, st.sampled_from("abcdef"), st.floats(0, 1), st.integers(0, 100)),
    min_size=1,
)


@settings(deadline=None)
@given(configs)
def test_the_frontier_holds_exactly_the_undominated_configurations(
    given_configs: list[Config],
) -> None:
    edge = frontier(given_configs)
    for config in given_configs:
        # Every configuration is matched or beaten by one on the frontier at no more cost...
        assert any(e.cost_pico <= config.cost_pico and e.accuracy >= config.accuracy for e in edge)
    for a, b in pairwise(edge):
        # ...and along the frontier more money buys more accuracy.
        assert a.cost_pico < b.cost_pico and a.accuracy < b.accuracy


@settings(deadline=None)
@given(configs, st.floats(0, 1), st.integers(0, 100))
def test_parity_and_best_within_cost_answer_the_buyers_questions(
    given_configs: list[Config], accuracy: float, cost: int
) -> None:
    target = Config("best", accuracy, cost)
    parity, within = at_parity(given_configs, target), within_cost(given_configs, target)
    reaching = [c for c in given_configs if c.accuracy >= accuracy]
    affordable = [c for c in given_configs if c.cost_pico <= cost]
    assert (parity is None) == (not reaching)
    assert parity is None or parity.cost_pico == min(c.cost_pico for c in reaching)
    assert (within is None) == (not affordable)
    assert within is None or within.accuracy == max(c.accuracy for c in affordable)
