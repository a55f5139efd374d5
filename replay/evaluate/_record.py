"""The record of a run: EvaluationStarted, one EvaluationDecided per prompt, EvaluationCompleted."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

from atom_actors.cost import to_usd
from atom_actors.datasets import ROUTELLM_RESPONSES
from eventstore import NO_STREAM, NewEvent, open_store

from ._dataset import Case, Prepared
from ._figures import Evaluation, Progress, evaluate, quiet
from ._routers import Outcome
from ._settings import ACTOR


def _sha256(path: Path) -> str:
    file = path / ROUTELLM_RESPONSES if path.is_dir() else path
    return hashlib.sha256(file.read_bytes()).hexdigest()


def run(prepared: Prepared, db: str, progress: Progress = quiet) -> tuple[Evaluation, str]:
    """Evaluate, recording the run in the event log at `db`; returns it and its id.

    EvaluationStarted is committed before the work; the EvaluationDecided events (one per test
    prompt, for the selected router) and EvaluationCompleted follow in one atomic batch.
    """
    settings = prepared.settings
    evaluation_id = str(uuid.uuid4())
    stream = f"evaluation-{evaluation_id}"
    metadata = {"correlation_id": evaluation_id, "actor": ACTOR}
    started = {
        "evaluation_id": evaluation_id,
        "settings": prepared.settings.to_dict(),
        "dataset_sha256": {
            str(path): _sha256(path)
            for path in (settings.dataset, settings.train, settings.test)
            if path is not None
        },
        "models": list(prepared.ranked),
        "train_size": len(prepared.train),
        "test_size": len(prepared.test),
    }
    with open_store(db) as store:
        store.append(stream, [NewEvent("EvaluationStarted", started, metadata)], NO_STREAM)
        evaluation = evaluate(prepared, progress)
        decided = [
            NewEvent("EvaluationDecided", _decided(evaluation, position, case, outcome), metadata)
            for position, (case, outcome) in enumerate(
                zip(prepared.test, evaluation.selected.outcomes, strict=True), start=1
            )
        ]
        figures = {"evaluation_id": evaluation_id, **evaluation.to_dict()}
        completed = NewEvent("EvaluationCompleted", figures, metadata)
        store.append(stream, [*decided, completed], 0)
    return evaluation, evaluation_id


def _decided(evaluation: Evaluation, position: int, case: Case, outcome: Outcome) -> dict[str, Any]:
    return {
        "position": position,
        "prompt_sha256": hashlib.sha256(case.prompt.encode()).hexdigest(),
        "router": evaluation.selected.name,
        "models": list(outcome.models),
        "score": outcome.score,
        "correct": outcome.score == 1.0,
        "cost_pico": outcome.cost_pico,
        "cost_usd": to_usd(outcome.cost_pico),
        **outcome.detail,
    }
