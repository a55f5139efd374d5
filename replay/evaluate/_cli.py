"""The command line of `atom replay evaluate`."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from atom_actors.cascade import DEFAULT_THRESHOLD
from atom_actors.datasets import DatasetError
from atom_actors.snapshot import EnsembleMethod, Strategy

from .._progress import ProgressBar
from ._dataset import load, prepare
from ._output import plot, table
from ._record import run
from ._settings import (
    DEFAULT_DB,
    DEFAULT_PRICES,
    STRATEGIES,
    DatasetFormat,
    EvaluationError,
    Price,
    ScorerKind,
    Settings,
    parse_answer_format,
)


def add_parser(commands: Any) -> None:
    """Add `evaluate` to `atom replay`'s subcommands (the argparse subparsers action)."""
    parser = commands.add_parser(
        "evaluate",
        help="evaluate routing strategies and ensembles on recorded answers",
        description=(
            "Learn per-prompt quality and the cascade's acceptance score from the train part "
            "of a recorded dataset (any number of models), then route each test prompt with "
            "ATOM's strategies, the cascade, its five ensemble methods over every model, and "
            "baselines, answering from the recorded answers (no network). Prints every "
            "router's accuracy and cost (recorded costs where the data has them, else prices), "
            "the frontier of cost against accuracy, the cheapest configuration at the best "
            "single model's accuracy and the best accuracy at its cost; with --json one JSON "
            "object with the selected router's figures at the top. Records the run in an "
            "event log. With two models also RouteLLM's PGR, APGR and CPT."
        ),
    )
    add = parser.add_argument
    add(
        "--dataset",
        metavar="FILE",
        help="RouteLLM responses CSV (or its directory), or a JSONL file (docs/datasets.md), "
        "split into a train and a test part",
    )
    add("--train", metavar="FILE", help="the prompts to fit on, instead of a split --dataset")
    add("--test", metavar="FILE", help="the prompts to test on, with --train")
    add(
        "--answer-format",
        default="number",
        metavar="F",
        help="how answers are extracted and compared: number (default), choice, text or "
        "json:FIELD (a dotted path in a JSON reply)",
    )
    add(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="P",
        help="the cascade's acceptance threshold: a cheaper rung's answer is kept when the "
        f"learned probability that it is right reaches P (default: {DEFAULT_THRESHOLD:g})",
    )
    add("--format", metavar="FORMAT", help="routellm-csv or jsonl (default: from the file name)")
    add(
        "--strategy",
        metavar="S",
        help=f"the selected strategy, one of: {', '.join(STRATEGIES)}. The last two are "
        "baselines: a uniform draw, and prompts longer than the train part's median to the "
        "strong model",
    )
    add(
        "--ensemble",
        metavar="M",
        help="the ensemble's method; implies --strategy ensemble. One of: "
        f"{', '.join(EnsembleMethod)} (default: majority_vote)",
    )
    add(
        "--split",
        default="50:50",
        metavar="TRAIN:TEST",
        help="relative sizes of the train and test parts (default: 50:50)",
    )
    add(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the split and of the random baseline (default: 0)",
    )
    add(
        "--prices",
        nargs="+",
        action="extend",
        default=[],
        metavar="MODEL=IN/OUT",
        help="USD per 1M input/output tokens; defaults: "
        + ", ".join(f"{model}={price}" for model, price in DEFAULT_PRICES.items()),
    )
    add(
        "--scorer",
        default=ScorerKind.REFERENCE.value,
        metavar="SCORER",
        help="reference: the answer, extracted as --answer-format says, against the gold "
        "(default); "
        "recorded: the dataset's own correctness flags",
    )
    add(
        "--plot",
        metavar="FILE",
        help="draw accuracy against cost for every router and the frontier, as a PNG",
    )
    add("--json", action="store_true", help="print one JSON object instead of the table")
    add("--db", default=DEFAULT_DB, metavar="PATH",
        help=f"the event log to record the run in (default: {DEFAULT_DB})")  # fmt: skip


def _one_of(kind: type[StrEnum], text: str, option: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise EvaluationError(f"{option}: no {text!r}; one of {choices}") from None


def parse_split(text: str) -> tuple[int, int]:
    """ "70:30" as (70, 30): two whole numbers, not both zero."""
    train, colon, test = text.partition(":")
    if not (colon and train.isdigit() and test.isdigit()) or int(train) + int(test) == 0:
        raise EvaluationError(f"--split: {text!r} is not TRAIN:TEST, e.g. 50:50")
    return int(train), int(test)


def parse_price(text: str) -> tuple[str, Price]:
    """ "MODEL=IN/OUT" as the model and its price; the name may hold "/" but not "="."""
    model, equals, amounts = text.rpartition("=")
    given, slash, taken = amounts.partition("/")
    try:
        price = Price(float(given), float(taken))
    except ValueError:
        price = None
    if not (model and equals and slash and price and _fair(price)):
        raise EvaluationError(f"--prices: {text!r} is not MODEL=IN/OUT, e.g. gpt-4=30/60")
    return model, price


def _fair(price: Price) -> bool:
    return all(
        0.0 <= p < float("inf") for p in (price.input_usd_per_mtok, price.output_usd_per_mtok)
    )


def settings_from(options: argparse.Namespace) -> Settings:
    """The command line's settings, each value checked."""
    strategy = options.strategy
    if options.ensemble is not None:
        strategy = strategy or Strategy.ENSEMBLE.value
        if strategy != Strategy.ENSEMBLE:
            raise EvaluationError(f"--ensemble goes with --strategy ensemble, not {strategy}")
    if strategy not in STRATEGIES:
        given = " is required" if strategy is None else f": no {strategy!r}"
        raise EvaluationError(f"--strategy{given}; one of {', '.join(STRATEGIES)}")
    if not 0.0 <= options.threshold <= 1.0:
        raise EvaluationError(f"--threshold: {options.threshold:g} is not within [0, 1]")
    return Settings(
        dataset=None if options.dataset is None else Path(options.dataset),
        train=None if options.train is None else Path(options.train),
        test=None if options.test is None else Path(options.test),
        answer_format=parse_answer_format(options.answer_format),
        threshold=options.threshold,
        strategy=strategy,
        ensemble=_one_of(EnsembleMethod, options.ensemble or "majority_vote", "--ensemble"),
        format=None
        if options.format is None
        else _one_of(DatasetFormat, options.format, "--format"),
        split=parse_split(options.split),
        seed=options.seed,
        prices=dict(parse_price(text) for text in options.prices),
        scorer=_one_of(ScorerKind, options.scorer, "--scorer"),
    )


def command(options: argparse.Namespace) -> int:
    """Run `atom replay evaluate`: 0 when done, 2 on bad input (one line on stderr)."""
    try:
        settings = settings_from(options)
        prepared = prepare(settings, load(settings))
        if options.plot and importlib.util.find_spec("matplotlib") is None:
            raise EvaluationError("--plot needs matplotlib: pip install matplotlib")
        with ProgressBar("evaluating") as progress:
            evaluation, evaluation_id = run(prepared, options.db, progress)
    except (EvaluationError, DatasetError) as exc:
        print(f"atom replay evaluate: {exc}", file=sys.stderr)
        return 2
    if options.plot:
        plot(evaluation, Path(options.plot))
    if options.json:
        report = {**evaluation.to_dict(), "evaluation_id": evaluation_id, "db": options.db}
        print(orjson.dumps(report).decode())
    else:
        print(table(evaluation, evaluation_id, options.db))
    return 0
