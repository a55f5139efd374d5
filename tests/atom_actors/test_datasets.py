"""Loading recorded datasets: RouteLLM's GSM8K files and the JSONL format."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atom_actors.cost import estimate_tokens
from atom_actors.datasets import (
    DatasetError,
    RecordedAnswer,
    RecordedDataset,
    RecordedItem,
    SyntheticModel,
    load_dataset,
    load_jsonl,
    load_routellm,
    synthesize,
    to_jsonl,
)
from tests.paths import GSM8K

SHARED = GSM8K
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"


def _write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _write_routellm(directory: Path, rows: list[dict[str, str]]) -> Path:
    with (directory / "gsm8k_responses.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return directory


def _row(prompt: str, a: str, b: str) -> dict[str, str]:
    return {"prompt": prompt, "m1": a, "m2": b, "m1_response": "one", "m2_response": "two"}


def test_routellm_discovers_models_and_reads_correctness(tmp_path: Path) -> None:
    _write_routellm(tmp_path, [_row("Q1", "True", "False"), _row("Q2", "True", "True")])
    ds = load_routellm(tmp_path)
    assert ds.models == ("m1", "m2")
    assert [item.prompt for item in ds.items] == ["Q1", "Q2"]
    assert ds.items[0].answers["m2"] == RecordedAnswer("two", False, 1, 1, tokens_estimated=True)
    assert (ds.accuracy("m1"), ds.accuracy("m2")) == (1.0, 0.5)


def test_routellm_removes_contaminated_prompts_only_when_asked(tmp_path: Path) -> None:
    _write_routellm(tmp_path, [_row("Q1", "True", "True"), _row("Q2", "False", "True")])
    _write_jsonl(tmp_path / "contaminated_prompts.jsonl", [{"eval_prompt": "Q1"}])
    assert [item.prompt for item in load_routellm(tmp_path).items] == ["Q2"]
    assert len(load_routellm(tmp_path, decontaminate=False).items) == 2


def test_routellm_gold_matches_equal_then_last_contained_question(tmp_path: Path) -> None:
    few_shot = "Q: What is 1+1? A: 2\nQ: What is 3+3? A:"
    _write_routellm(tmp_path, [_row("What is 2+2?", "True", "True"), _row(few_shot, "1", "0")])
    _write_jsonl(
        tmp_path / "gsm8k_test.jsonl",
        [
            {"question": "What is 2+2?", "answer": "2+2=4\n#### 4"},
            {"question": "What is 1+1?", "answer": "#### 2"},
            {"question": "What is 3+3?", "answer": "#### 6"},
        ],
    )
    assert [item.gold for item in load_dataset(tmp_path / "gsm8k_responses.csv").items] == [
        "4",
        "6",
    ]


def test_routellm_rejects_a_bad_correctness_value(tmp_path: Path) -> None:
    _write_routellm(tmp_path, [_row("Q1", "yes", "True")])
    with pytest.raises(DatasetError, match="expected True or False"):
        load_routellm(tmp_path)


def test_jsonl_keeps_recorded_counts_and_estimates_missing_ones(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "d.jsonl",
        [
            {
                "prompt": "12345678",
                "gold": 7,
                "responses": {
                    "a": {"text": "x", "correct": True, "prompt_tokens": 3, "completion_tokens": 1},
                    "b": {"text": "hello"},
                },
            },
            {"prompt": "p2", "responses": {"c": {"text": "t"}}},
        ],
    )
    ds = load_dataset(path)
    assert ds.models == ("a", "b", "c")
    first = ds.items[0]
    assert first.gold == "7"
    assert first.answers["a"] == RecordedAnswer("x", True, 3, 1, tokens_estimated=False)
    assert first.answers["b"] == RecordedAnswer("hello", None, 2, 2, tokens_estimated=True)
    assert ds.accuracy("b") is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"responses": {}}, "`prompt` must be a str"),
        ({"prompt": "p", "responses": {"a": {"text": "t", "correct": "yes"}}}, "correct"),
        ({"prompt": "p", "responses": {"a": {"text": "t", "prompt_tokens": -1}}}, "prompt_tokens"),
        ({"prompt": "p", "responses": {"a": {}}}, "`text` must be a str"),
        ({"prompt": "p", "responses": {"a": {"text": "t", "cost_usd": -1}}}, "cost_usd"),
        ({"prompt": "p", "responses": {"a": {"text": "t", "cost_usd": "1"}}}, "cost_usd"),
        ({"prompt": "p", "responses": {"a": {"text": "t", "mean_logprob": 0.5}}}, "mean_logprob"),
    ],
)
def test_jsonl_names_the_line_of_a_malformed_record(
    tmp_path: Path, record: dict[str, object], message: str
) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "ok", "responses": {}}, record])
    with pytest.raises(DatasetError, match=rf"d\.jsonl:2.*{message}"):
        load_jsonl(path)


@given(st.text(max_size=200))
def test_estimate_is_a_quarter_of_the_characters_rounded_up(text: str) -> None:
    assert 4 * estimate_tokens(text) - 4 < len(text) <= 4 * estimate_tokens(text)


def _numbered(n: int) -> RecordedDataset:
    return RecordedDataset(("m",), tuple(RecordedItem(str(i), None, {}) for i in range(n)))


@given(st.integers(0, 60), st.floats(0.0, 1.0), st.integers())
def test_split_is_a_seeded_ordered_partition(n: int, fraction: float, seed: int) -> None:
    ds = _numbered(n)
    train, test = ds.split(fraction, seed)
    assert (train, test) == ds.split(fraction, seed)
    assert len(train.items) == round(fraction * n)
    assert sorted(train.items + test.items, key=lambda it: int(it.prompt)) == list(ds.items)
    for part in (train, test):
        assert [int(it.prompt) for it in part.items] == sorted(int(it.prompt) for it in part.items)


def test_split_depends_on_the_seed() -> None:
    ds = _numbered(50)
    assert ds.split(0.5, 1) != ds.split(0.5, 2)


def test_shared_routellm_gsm8k_data() -> None:
    everything = load_routellm(SHARED, decontaminate=False)
    ds = load_routellm(SHARED)
    assert len(everything.items) == 1319
    assert len(ds.items) == 1319 - 12
    assert ds.models == (WEAK, STRONG)
    assert all(item.gold is not None for item in ds.items)
    # RouteLLM reports 63.7% and 85.8% on the decontaminated set.
    assert ds.accuracy(WEAK) == pytest.approx(0.637, abs=0.0005)
    assert ds.accuracy(STRONG) == pytest.approx(0.858, abs=0.0005)


def test_jsonl_carries_recorded_costs_and_logprobs(tmp_path: Path) -> None:
    response = {"text": "#### 3", "cost_usd": 0.002, "mean_logprob": -0.25}
    path = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "responses": {"a": response}}])
    answer = load_jsonl(path).items[0].answers["a"]
    assert (answer.cost_usd, answer.mean_logprob) == (0.002, -0.25)


THREE = [
    SyntheticModel("small", 0.5, 0.001),
    SyntheticModel("medium", 0.7, 0.004),
    SyntheticModel("large", 0.9, 0.02),
]


@pytest.mark.parametrize("correlation", [0.0, 1.0])
def test_synthetic_models_are_right_exactly_as_often_as_asked(correlation: float) -> None:
    ds = synthesize(THREE, prompts=40, correlation=correlation, seed=3)
    assert ds.models == ("small", "medium", "large")
    assert [ds.accuracy(m.name) for m in THREE] == [0.5, 0.7, 0.9]
    for item in ds.items:
        for i, (model, answer) in enumerate(item.answers.items()):
            value = answer.text.removeprefix("#### ")
            assert (value == item.gold) is answer.correct
            assert answer.correct or int(value) == int(item.gold or 0) + 1 + i
            assert answer.cost_usd == THREE[i].cost_usd, model


def test_perfectly_correlated_models_err_in_a_nested_way() -> None:
    ds = synthesize(THREE, prompts=40, correlation=1.0, seed=5)
    for item in ds.items:
        small, medium, large = (item.answers[m.name].correct for m in THREE)
        assert small <= medium <= large  # type: ignore[operator]


def test_a_dataset_survives_the_jsonl_round_trip(tmp_path: Path) -> None:
    ds = synthesize(THREE, prompts=12, correlation=0.5, seed=1)
    path = tmp_path / "s.jsonl"
    path.write_text(to_jsonl(ds), encoding="utf-8")
    again = load_jsonl(path)
    assert again.models == ds.models
    assert [(i.prompt, i.gold, dict(i.answers)) for i in again.items] == [
        (i.prompt, i.gold, dict(i.answers)) for i in ds.items
    ]


def test_the_documented_jsonl_example_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "datasets.md").read_text("utf-8")
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.jsonl"
    path.write_text(json.dumps(json.loads(example)) + "\n", encoding="utf-8")
    ds = load_jsonl(path)
    assert ds.models == ("small", "medium", "large")
    large = ds.items[0].answers["large"]
    assert (large.cost_usd, large.completion_tokens, large.tokens_estimated) == (0.004, 6, False)
    assert ds.items[0].answers["medium"].mean_logprob == -0.21
