"""Routing on the shared GSM8K recordings over 5 split seeds, through `atom replay evaluate`'s code.

For each seed (a 50:50 split; everything learnt on the train half): quality_first's APGR,
CPT(50%) and CPT(80%); the cascade's cost at the strong model's accuracy (a share of the strong
model's cost, null when it never gets there) and its APGR; the best accuracy any configuration
reaches at no more than the strong model's cost. Then the online overhead of each decision,
timing the pure functions a request would run: the cascade's `decide` on a recorded reply, and
the learned router's prediction plus `route()`; and the cascade's overhead in the gateway
itself, per request beyond its calls, with its refit and its projection's fold
(bench/_cascade_online.py). With --experiments, the learned routers tried side by side
(bench/_router_experiments.py), with Gemma embeddings from the disk cache.

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from _cascade_online import online_figures

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.cascade import Attempt, Policy, decide, learned
from atom_actors.datasets import RecordedItem, load_routellm
from atom_actors.prompt_quality import ScoredPrompt, fit_prompt_quality
from atom_actors.snapshot import Strategy
from atom_actors.strategies import route
from replay.evaluate import Settings, evaluate, load, prepare
from replay.evaluate._routers import (
    _attempts,
    _request,
    fit_cascade,
    global_snapshot,
    ladder_of,
    snapshot_of,
)

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "routellm-gsm8k"
SEEDS = (0, 1, 2, 3, 4)
NUMBER = AnswerFormat(AnswerKind.NUMBER)


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.fmean(known), 4) if known else None


def per_seed(seed: int) -> dict[str, Any]:
    settings = Settings(dataset=GSM8K / "gsm8k_responses.csv", strategy="cascade", seed=seed)
    evaluation = evaluate(prepare(settings, load(settings)))
    learned_router = evaluation.row("quality_first")
    cascade = evaluation.row("cascade")
    within = evaluation.within
    return {
        "seed": seed,
        "apgr": learned_router.apgr,
        "cpt50": learned_router.cpt(0.5),
        "cpt80": learned_router.cpt(0.8),
        "cascade_apgr": cascade.apgr,
        "cascade_cpt50": cascade.cpt(0.5),
        "cascade_cost_at_strong_parity": cascade.parity_share,
        "cascade_at_default": {
            "threshold": settings.threshold,
            "accuracy": cascade.accuracy,
            "cost_share": cascade.cost_pico / evaluation.best.cost_pico,
        },
        "learned_router_cost_at_strong_parity": learned_router.parity_share,
        "best_accuracy_at_strong_cost": None if within is None else within.accuracy,
        "best_at_strong_cost": None if within is None else within.name,
        "strong_accuracy": evaluation.best.accuracy,
        "frontier": [
            (c.name, round(c.accuracy, 4), round(c.cost_pico / evaluation.best.cost_pico, 4))
            for c in evaluation.frontier
        ],
    }


def _median_us(call: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - started)
    return round(statistics.median(samples) / 1000, 1)


def overheads(repeat: int = 2000) -> dict[str, float]:
    """Microseconds per request of each online decision, the median over `repeat` calls."""
    settings = Settings(dataset=GSM8K / "gsm8k_responses.csv", strategy="cascade", seed=0)
    prepared = prepare(settings, load(settings))
    train, test = prepared.train, prepared.test
    snapshot = global_snapshot(prepared.catalog, train)
    acceptance = fit_cascade(train, snapshot, NUMBER)
    assert acceptance is not None
    case = test[0]
    _, ladder = ladder_of(snapshot, case)
    policy = Policy(NUMBER, (learned(acceptance, settings.threshold),))
    replies: list[Attempt] = _attempts(case, 0, ladder[0])
    quality = fit_prompt_quality([ScoredPrompt(c.prompt, c.scores) for c in train])

    def learned_route() -> object:
        snap = snapshot_of(prepared.catalog, quality.predict(case.prompt))
        return route(snap, _request(case, Strategy.QUALITY_FIRST))

    def cascade_decision() -> object:
        return decide(ladder, policy, case.prompt, replies)

    def cascade_route() -> object:
        return route(snapshot, _request(case, Strategy.CASCADE))

    started = time.perf_counter()
    fit_cascade(train, snapshot, NUMBER)
    fit_s = time.perf_counter() - started
    return {
        "cascade_decision_us": _median_us(cascade_decision, repeat),
        "cascade_route_us": _median_us(cascade_route, repeat),
        "learned_router_us": _median_us(learned_route, repeat // 4),
        "acceptance_fit_s": round(fit_s, 3),
    }


def experiments(embed_threads: int) -> dict[str, Any]:
    """The learned routers side by side, each over the 5 seeds."""
    import _gemma_embeddings as gemma
    import _router_experiments as ex
    import numpy as np

    from atom_actors.providers.llamacpp import default_model_path

    dataset = load_routellm(GSM8K)
    weak, strong = dataset.models
    golds = {i.prompt: NUMBER.extract(i.gold or "") for i in dataset.items}

    def score(item: RecordedItem, model: str) -> float:
        return 1.0 if NUMBER.extract(item.answers[model].text) == golds[item.prompt] else 0.0

    started = time.perf_counter()
    vectors, spent = gemma.embed(
        [i.prompt for i in dataset.items], default_model_path(), embed_threads
    )
    table = {i.prompt: v for i, v in zip(dataset.items, vectors, strict=True)}

    def embed(texts: Sequence[str]) -> Any:
        return np.array([table[t] for t in texts], dtype=np.float64)

    gemma_features = ex.embedded(embed)
    grid = [
        (f"k={k},prior={p}", ex.tfidf_knn(k, p)) for k in (20, 40, 80) for p in (5.0, 20.0, 80.0)
    ]
    candidates: list[tuple[str, ex.Predictor]] = [
        ("length+tfidf_knn (ATOM today)", ex.tfidf_knn()),
        ("length+tfidf_knn, k and prior by train CV", ex.cross_validated(grid)),
        ("hand features, calibrated logistic difference", ex.calibrated_difference(ex.hand, 10.0)),
        ("hand-feature line + tfidf knn residuals", ex.features_knn(ex.hand, ex.tfidf, l2=100.0)),
        ("tfidf, calibrated logistic difference", ex.calibrated_difference(ex.tfidf, 3.0)),
        ("tfidf, preference (RouteLLM MF, two models)", ex.preference(ex.tfidf, 3.0)),
        ("gemma, length+knn residuals", ex.neighbours(embed)),
        ("gemma, calibrated logistic difference", ex.calibrated_difference(gemma_features, 100.0)),
        ("gemma, preference (RouteLLM MF, two models)", ex.preference(gemma_features, 100.0)),
        ("gemma, (cluster, model) rates, 16 clusters", ex.clusters(embed)),
        (
            "rank blend: tfidf_knn + gemma logistic",
            ex.rank_average(ex.tfidf_knn(), ex.calibrated_difference(gemma_features, 100.0)),
        ),
    ]
    results = {}
    for name, predictor in candidates:
        result = ex.measure(name, predictor, dataset, SEEDS, weak, strong, score)
        results[name] = result.to_dict()
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    return {
        "results": results,
        "gemma_embed_seconds_spent": round(spent, 1),
        "gemma_embed_seconds_each": round(spent / max(1, len(dataset.items)), 3) if spent else None,
        "experiments_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", action="store_true", help="also the learned routers tried")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads for embeddings")
    parser.add_argument(
        "--requests", type=int, default=1000, help="each kind of request timed in the gateway"
    )
    options = parser.parse_args()
    started = time.perf_counter()
    seeds = []
    for seed in SEEDS:
        seeds.append(per_seed(seed))
        print(orjson.dumps(seeds[-1]).decode(), file=sys.stderr, flush=True)
    apgrs = [s["apgr"] for s in seeds]

    def mean(key: str, inner: str | None = None) -> float | None:
        return _mean([s[key] if inner is None else s[key][inner] for s in seeds])

    figures: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores,"
        f" Python {platform.python_version()}",
        "seeds": list(SEEDS),
        "apgr_mean": _mean(apgrs),
        "apgr_min": round(min(apgrs), 4),
        "apgr_per_seed": [round(a, 4) for a in apgrs],
        "cpt50_mean": mean("cpt50"),
        "cpt80_mean": mean("cpt80"),
        "cascade_cost_at_strong_parity": mean("cascade_cost_at_strong_parity"),
        "cascade_parity_reached": sum(
            s["cascade_cost_at_strong_parity"] is not None for s in seeds
        ),
        "best_accuracy_at_strong_cost": mean("best_accuracy_at_strong_cost"),
        "strong_accuracy_mean": mean("strong_accuracy"),
        "cascade_apgr_mean": mean("cascade_apgr"),
        "cascade_apgr_per_seed": [round(s["cascade_apgr"], 4) for s in seeds],
        "cascade_cpt50_mean": mean("cascade_cpt50"),
        "cascade_default_accuracy_mean": mean("cascade_at_default", "accuracy"),
        "cascade_default_cost_share_mean": mean("cascade_at_default", "cost_share"),
        "learned_router_cost_at_strong_parity": _mean(
            [s["learned_router_cost_at_strong_parity"] for s in seeds]
        ),
        **overheads(),
        **online_figures(options.requests),
    }
    if options.experiments:
        figures["experiments"] = experiments(options.threads)
    figures["bench_s"] = round(time.perf_counter() - started, 1)
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
