"""The command line of `atom replay evaluate`."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

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
)


def add_parser(commands: Any) -> None:
    """Add `evaluate` to `atom replay`'s subcommands (the argparse subparsers action)."""
    parser = commands.add_parser(
        "evaluate",
        help="evaluate routing strategies and ensembles on recorded answers",
        description=(
            "Learn per-prompt quality from the train part of a recorded dataset, then route "
            "each test prompt with ATOM's strategies, its five ensemble methods over every "
            "model, and two baselines, answering from the recorded answers (no network). "
            "Prints a table of every router with the selected one marked, or with --json one "
            "JSON object with the selected one's figures at the top; records the run in an "
            "event log. With two models it reports RouteLLM's PGR, and APGR and CPT of the "
            "curves traced by a threshold on quality_first's predicted gain of the strong "
            "model, on random's draw and on prompt_length's length."
        ),
    )
    add = parser.add_argument
    add(
        "--dataset",
        required=True,
        metavar="FILE",
        help="RouteLLM responses CSV (or its directory), or a JSONL file",
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
        help="reference: the final number against the gold answer (default); "
        "recorded: the dataset's own correctness flags",
    )
    add(
        "--plot",
        metavar="FILE",
        help="write accuracy against the strong model's share of calls as a PNG (two models)",
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
    return Settings(
        dataset=Path(options.dataset),
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
        if options.plot and len(prepared.ranked) != 2:
            raise EvaluationError("--plot needs a dataset of two models")
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
