"""Output: the readable table and the plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from atom_actors.answers import AnswerKind
from atom_actors.cost import to_usd

from ._figures import Config, Evaluation
from ._settings import Price, ScorerKind, format_name

_WHAT = {
    AnswerKind.NUMBER: "the final number",
    AnswerKind.CHOICE: "the choice letter",
    AnswerKind.TEXT: "the normalised text",
}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _scorer(evaluation: Evaluation) -> str:
    settings = evaluation.settings
    if settings.scorer is ScorerKind.RECORDED:
        scorer = "recorded: the dataset's own correctness flags"
    else:
        fmt = settings.answer_format
        what = _WHAT.get(fmt.kind) or f"the JSON field {fmt.field}"
        scorer = (
            f"reference: {what} against the gold answer ({format_name(settings.answer_format)})"
        )
    if evaluation.agreement is not None:
        scorer += f"; agrees with the dataset's flags on {_percent(evaluation.agreement)}"
    return scorer


def _config(config: Config | None, best: Config) -> str:
    if config is None:
        return "none"
    share = f", {_percent(config.cost_pico / best.cost_pico)} of its cost" if best.cost_pico else ""
    return (
        f"{config.name}: {_percent(config.accuracy)} for {to_usd(config.cost_pico):.4f} USD{share}"
    )


# The table shows this many points of the frontier, evenly spaced; --json gives them all.
_SHOWN = 8


def _frontier(edge: Sequence[Config]) -> str:
    shown = sorted({round(i * (len(edge) - 1) / (_SHOWN - 1)) for i in range(_SHOWN)})
    points = "; ".join(
        f"{edge[i].name} {_percent(edge[i].accuracy)} {to_usd(edge[i].cost_pico):.4f}"
        for i in shown
    )
    return points if len(shown) == len(edge) else f"{points} ({len(shown)} of {len(edge)} points)"


def table(evaluation: Evaluation, evaluation_id: str, db: str) -> str:
    """The readable report: the context, one line per router, and what the columns mean."""
    settings = evaluation.settings
    prices = {
        spec.name: Price(spec.input_usd_per_mtok, spec.output_usd_per_mtok)
        for spec in evaluation.catalog
    }
    models = ", ".join(
        f"{model} ({prices[model]}, {_percent(evaluation.row(f'model:{model}').accuracy)})"
        for model in evaluation.ranked
    )
    two = len(evaluation.ranked) == 2
    split = (
        f" (split {settings.split[0]}:{settings.split[1]}, seed {settings.seed})"
        if settings.dataset is not None
        else ""
    )
    width = max(len(row.name) for row in evaluation.rows)
    tokens = (
        f"tokens   {evaluation.tokens_estimated} of {evaluation.answers} answers' token counts"
        " estimated as ceil(characters / 4)"
    )
    if evaluation.recorded_costs:
        tokens += f"; {evaluation.recorded_costs} answers carry their recorded cost"
    head = f"  {'router':<{width}}  accuracy  cost USD   cost%  parity  best@cost"
    if two:
        head += "  strong     PGR   APGR   CPT50   CPT80"
    lines = [
        f"dataset  {settings.source}: fit on {evaluation.train_size} prompts, tested on"
        f" {evaluation.test_size}{split}",
        f"models   weakest first on the train part (USD per 1M tokens in/out, test accuracy):"
        f" {models}",
        f"scorer   {_scorer(evaluation)}",
        tokens,
        "",
        head,
    ]
    best = evaluation.best
    for row in evaluation.rows:
        mark = "*" if row.name == settings.selected else " "
        share = row.cost_pico / best.cost_pico if best.cost_pico else None
        within = None if row.within is None else row.within.accuracy
        line = (
            f"{mark} {row.name:<{width}}  {_percent(row.accuracy):>8}"
            f" {to_usd(row.cost_pico):>9.4f} {_percent(share):>7} {_percent(row.parity_share):>7}"
            f" {_percent(within):>10}"
        )
        if two:
            pgr = "-" if row.pgr is None else f"{row.pgr:.3f}"
            apgr = "-" if row.apgr is None else f"{row.apgr:.3f}"
            line += (
                f" {_percent(row.strong_share):>7} {pgr:>7} {apgr:>6}"
                f" {_percent(row.cpt(0.5)):>7} {_percent(row.cpt(0.8)):>7}"
            )
        lines.append(line)
    lines += [
        "",
        f"best single model  {_config(best, best)}",
        f"parity             {_config(evaluation.parity, best)}",
        f"best at its cost   {_config(evaluation.within, best)}",
        f"frontier           {_frontier(evaluation.frontier)}",
        "",
        "* selected. cost%: of the best single model's cost. parity: the cheapest setting of the"
        " router at least as accurate",
        "  as the best single model, as a share of its cost; best@cost: the router's best"
        " accuracy at no more than that cost.",
        f"  Swept: quality_first's price on cost, the cascade's acceptance threshold (default"
        f" {settings.threshold:g}).",
    ]
    if two:
        lines.append(
            "  strong: share of prompts the strong model answered. APGR, CPT50/80: the curve of a"
            " threshold on quality_first's predicted gain of the strong model, the cascade's"
            " acceptance score, random's draw, prompt_length's length."
        )
    lines.append(f"recorded as evaluation {evaluation_id} in {db}")
    return "\n".join(lines)


def plot(evaluation: Evaluation, path: Path) -> None:
    """Accuracy against cost: every router (a line along its knob), and the frontier."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 5.5))
    # Up to 20 routers, each in a colour of its own.
    palette = pyplot.get_cmap("tab20")
    axes.set_prop_cycle(color=[palette(i) for i in range(20)])
    for row in evaluation.rows:
        costs = [to_usd(c.cost_pico) for c in row.configs]
        accuracies = [c.accuracy for c in row.configs]
        label = row.name if row.apgr is None else f"{row.name} (APGR {row.apgr:.3f})"
        if len(row.configs) > 1:
            order = sorted(range(1, len(costs)), key=lambda i: costs[i])
            line = axes.plot([costs[i] for i in order], [accuracies[i] for i in order], label=label)
            axes.plot(costs[0], accuracies[0], "o", color=line[0].get_color())
        else:
            axes.plot(costs[0], accuracies[0], "o", label=label)
    edge = evaluation.frontier
    axes.step(
        [to_usd(c.cost_pico) for c in edge],
        [c.accuracy for c in edge],
        where="post",
        color="black",
        linewidth=1.0,
        linestyle="--",
        label="frontier",
    )
    axes.set_xlabel(f"cost of the {evaluation.test_size} test prompts, USD")
    axes.set_ylabel("accuracy")
    axes.set_title(f"Routing on {evaluation.settings.source}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="x-small", ncol=2)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot.close(figure)
