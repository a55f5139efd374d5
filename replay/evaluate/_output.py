"""Output: the readable table and the plot."""

from __future__ import annotations

from pathlib import Path

from atom_actors.cost import to_usd

from ._figures import Evaluation
from ._settings import Price, ScorerKind


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table(evaluation: Evaluation, evaluation_id: str, db: str) -> str:
    """The readable report: the context, one line per router, and what the columns mean."""
    settings = evaluation.settings
    prices = {spec.name: Price(spec.input_usd_per_mtok, spec.output_usd_per_mtok)
              for spec in evaluation.catalog}  # fmt: skip
    models = ", ".join(
        f"{model} ({prices[model]}, {_percent(evaluation.row(f'model:{model}').accuracy)})"
        for model in evaluation.ranked
    )
    scorer = (
        "reference: the final number against the gold answer"
        if settings.scorer is ScorerKind.REFERENCE
        else "recorded: the dataset's own correctness flags"
    )
    if evaluation.agreement is not None:
        scorer += f"; agrees with the dataset's flags on {_percent(evaluation.agreement)}"
    width = max(len(row.name) for row in evaluation.rows)
    lines = [
        f"dataset  {settings.dataset}: fit on {evaluation.train_size} prompts, tested on"
        f" {evaluation.test_size} (split {settings.split[0]}:{settings.split[1]},"
        f" seed {settings.seed})",
        f"models   weakest first on the train part (USD per 1M tokens in/out, test accuracy):"
        f" {models}",
        f"scorer   {scorer}",
        f"tokens   {evaluation.tokens_estimated} of {evaluation.answers} answers' token counts"
        " estimated as ceil(characters / 4)",
        "",
        f"  {'router':<{width}}  accuracy  cost USD  strong     PGR   APGR   CPT50   CPT80",
    ]
    for row in evaluation.rows:
        mark = "*" if row.name == settings.selected else " "
        pgr = "-" if row.pgr is None else f"{row.pgr:.3f}"
        apgr = "-" if row.apgr is None else f"{row.apgr:.3f}"
        lines.append(
            f"{mark} {row.name:<{width}}  {_percent(row.accuracy):>8}"
            f" {to_usd(row.cost_pico):>9.4f} {_percent(row.strong_share):>7} {pgr:>7}"
            f" {apgr:>6} {_percent(row.cpt(0.5)):>7} {_percent(row.cpt(0.8)):>7}"
        )
    lines += [
        "",
        "* selected. strong: share of calls to the strong model. APGR, CPT50/80: the curve"
        " of a threshold on quality_first's",
        "  predicted gain of the strong model (its knob), on random's draw, on prompt_length's"
        " length.",
        f"recorded as evaluation {evaluation_id} in {db}",
    ]
    return "\n".join(lines)


def plot(evaluation: Evaluation, path: Path) -> None:
    """Accuracy against the strong share: the swept routers' curves, the strategies' points."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 5))
    for row in evaluation.rows:
        if row.curve is not None:
            shares = [point.strong_share for point in row.curve.points]
            accuracies = [point.accuracy for point in row.curve.points]
            axes.plot(shares, accuracies, label=f"{row.name} (APGR {row.curve.apgr():.3f})")
        elif row.strong_share is not None and not row.name.startswith("ensemble:"):
            axes.plot(row.strong_share, row.accuracy, "o", label=row.name)
    axes.set_xlabel(f"share of calls to the strong model, {evaluation.ranked[-1]}")
    axes.set_ylabel(f"accuracy on the {evaluation.test_size} test prompts")
    axes.set_title(f"Routing on {evaluation.settings.dataset.name}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot.close(figure)
