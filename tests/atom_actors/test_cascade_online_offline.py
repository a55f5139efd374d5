"""One code path: the cascade online makes the decisions `atom replay evaluate` makes offline.

A small synthetic dataset with answers that look right or wrong in different ways is served by
the `recorded` provider. Online, the train prompts are asked of the rungs below the top with
their gold answers, so the log's scores are the history evaluate fits on; then each test prompt
goes up the cascade. Evaluate runs on the same files, and every prompt's moves must be the same.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.cascade import Acceptance
from atom_actors.catalog import ModelSpec
from atom_actors.gateway import Gateway
from atom_actors.principal import Principal, Role
from atom_actors.providers import CallParams
from atom_actors.request import ProcessRequest
from atom_actors.snapshot import CascadeSpec, Strategy
from eventstore import EventStore, SQLiteReader
from replay.cli import main

MakeGateway = Callable[..., Awaitable[Gateway]]
USER = Principal(key_id="key-1", role=Role.USER)
NUMBER = AnswerFormat(AnswerKind.NUMBER)
# name, share of right answers, USD an answer
MODELS = (("small", 0.55, 0.001), ("medium", 0.75, 0.004), ("large", 0.95, 0.02))
STEP_KEYS = ("action", "step", "models", "answer", "speaker", "verdicts", "reason")


def _reply(rng: random.Random, a: int, b: int, right: bool) -> str:
    """A worked answer when right; when wrong, one of three ways to be wrong: a slip in the
    arithmetic, a misread number worked correctly, or a guess without its working."""
    if right:
        return f"{a} + {b} = {a + b}. #### {a + b}"
    way = rng.randrange(3)
    if way == 0:
        return f"{a} + {b} = {a + b + 1}. #### {a + b + 1}"
    if way == 1:
        return f"{a + 1} + {b} = {a + b + 1}. #### {a + b + 1}"
    return f"I would say {a + b + 2}"


def _lines(rng: random.Random, start: int, prompts: int) -> list[str]:
    lines = []
    for k in range(start, start + prompts):
        a, b = rng.randrange(10, 1000), rng.randrange(10, 1000)
        responses = {}
        for name, accuracy, cost in MODELS:
            right = rng.random() < accuracy
            text = _reply(rng, a, b, right)
            responses[name] = {
                "text": text,
                "correct": right,
                "cost_usd": cost,
                "prompt_tokens": 12,
                "completion_tokens": len(text) // 4,
            }
        record = {"prompt": f"Question {k}: what is {a} + {b}?", "gold": str(a + b)}
        lines.append(orjson.dumps({**record, "responses": responses}).decode())
    return lines


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, Path]:
    rng = random.Random(15)
    train, test = _lines(rng, 0, 30), _lines(rng, 30, 24)
    paths = {name: tmp_path / f"{name}.jsonl" for name in ("train", "test", "all")}
    for name, lines in (("train", train), ("test", test), ("all", train + test)):
        paths[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def _catalog(path: Path) -> list[ModelSpec]:
    # Prices that make each answer cost what the data records; priors in the models' order.
    return [
        ModelSpec(
            name=name,
            provider="recorded",
            model=name,
            path=str(path),
            capabilities=frozenset({"text_generation"}),
            input_usd_per_mtok=cost * 1e6 / 20,
            output_usd_per_mtok=cost * 1e6 / 20,
            context_window=8192,
            quality_prior=prior,
        )
        for (name, _, cost), prior in zip(MODELS, (0.5, 0.7, 0.95), strict=True)
    ]


def _offline(dataset: dict[str, Path], db: Path, *options: str) -> list[list[dict[str, Any]]]:
    """Each test prompt's cascade moves as `atom replay evaluate` records them."""
    code = main(
        [
            "evaluate",
            "--train",
            str(dataset["train"]),
            "--test",
            str(dataset["test"]),
            "--answer-format",
            "number",
            "--db",
            str(db),
            "--json",
            *options,
        ]
    )
    assert code == 0
    with SQLiteReader(str(db)) as log:
        decided = [e.data for e in log.read_all() if e.type == "EvaluationDecided"]
    return [[{k: s[k] for k in STEP_KEYS} for s in d["cascade"]] for d in decided]


async def _online(
    gateway: Gateway, log: EventStore, dataset: dict[str, Path], asked: ProcessRequest
) -> list[list[dict[str, Any]]]:
    moves = []
    for line in dataset["test"].read_text(encoding="utf-8").splitlines():
        prompt = orjson.loads(line)["prompt"]
        request = ProcessRequest(
            [{"role": "user", "content": prompt}],
            CallParams(max_tokens=256),
            strategy=Strategy.CASCADE,
            cascade=asked.cascade,
            acceptance=asked.acceptance,
            answer_format=NUMBER,
        )
        result = await gateway.process(request, USER)
        stream = log.read_stream(f"request-{result.request_id}")
        moves.append(
            [{k: e.data[k] for k in STEP_KEYS} for e in stream if e.type == "CascadeStepped"]
        )
    return moves


async def test_the_cascade_online_decides_as_evaluate_does_offline(
    log: EventStore,
    make_gateway: MakeGateway,
    dataset: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    gateway = await make_gateway(_catalog(dataset["all"]))
    # The history evaluate fits the acceptance score on: every rung below the top, scored.
    for line in dataset["train"].read_text(encoding="utf-8").splitlines():
        item = orjson.loads(line)
        for model in ("small", "medium"):
            answered = await gateway.process(
                ProcessRequest(
                    [{"role": "user", "content": item["prompt"]}],
                    CallParams(max_tokens=256),
                    model,
                    expected=item["gold"],
                    answer_format=NUMBER,
                ),
                USER,
            )
    await gateway.projections.wait_until(answered.position, timeout=5)

    learned = ProcessRequest([], acceptance=Acceptance(validity=False, learned=0.6))
    offline = _offline(dataset, tmp_path / "e1.db", "--strategy", "cascade", "--threshold", "0.6")
    online = await _online(gateway, log, dataset, learned)
    assert gateway.acceptance.examples == 60
    assert online == offline
    # The learned check decides prompt by prompt: some answers are kept at each rung.
    kept = [moves[-1]["step"] for moves in online]
    assert {0, 1, 2} <= set(kept)

    agreeing = ProcessRequest(
        [], cascade=CascadeSpec(first=2), acceptance=Acceptance(agreement=1.0, learned=None)
    )
    offline = _offline(dataset, tmp_path / "e2.db", "--strategy", "cascade:agreement")
    online = await _online(gateway, log, dataset, agreeing)
    assert online == offline
    assert {moves[-1]["step"] for moves in online} == {0, 1}
    capsys.readouterr()
