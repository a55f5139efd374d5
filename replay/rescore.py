"""`atom replay rescore`: score past answers with a scorer, appending ScoreRecorded events.

An answer is a ModelCallCompleted of a request the gateway received. Answers the scorer's
version has scored already are left alone, and each new score's event id is derived from
the scorer, its version and the call, so running the same rescore twice adds nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.catalog import ModelSpec, unavailable_reason
from atom_actors.config import ConfigError, load_config
from atom_actors.cost import from_usd, prompt_size, to_usd
from atom_actors.events import ScoreRecorded, request_stream
from atom_actors.scorers import JudgeScorer, ScoreInput, Scorer, ScoreUnavailable, get_scorer
from eventstore import (
    BufferedStream,
    EventStore,
    LogReader,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    fold,
    open_store,
)

from . import _timepoint
from ._progress import ProgressBar

_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://atom.invalid/replay/rescore")
_ACTOR: Final = "atom replay rescore"
_BATCH: Final = 500
JUDGE_MAX_TOKENS: Final = 256
"""Room for the judge's reasoning and its closing `Score: N` line."""
DEFAULT_JUDGE_BUDGET_USD: Final = 1.0

Progress = Callable[[int, int], None]


class RescoreError(ValueError):
    """Bad input: an unknown scorer, a bad --where, a judge model that cannot be called."""


@dataclass(frozen=True, slots=True)
class Request:
    """What scorers and filters need of a RequestReceived (and its ensemble's consensus)."""

    endpoint: str
    capability: str | None
    strategy: str | None
    tenant: str | None
    question: str
    expected: str | None
    answer_format: str
    fmt: AnswerFormat | None
    """None when the recorded format cannot be read."""
    consensus: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """One call's completed answer, with its request."""

    request_id: str
    call_id: str
    event_id: str
    model: str
    text: str
    request: Request


_WHERE: Final[Mapping[str, Callable[[Answer], str | None]]] = {
    "model": lambda a: a.model,
    "capability": lambda a: a.request.capability,
    "strategy": lambda a: a.request.strategy,
    "tenant": lambda a: a.request.tenant,
    "endpoint": lambda a: a.request.endpoint,
    "type": lambda a: a.request.answer_format,
}
WHERE_HELP: Final = (
    "comma-separated KEY=VALUE terms, KEY one of " + ", ".join(_WHERE) + " (type: the answer "
    "format, text, number, choice or json); an answer matches when every key has one of its "
    "values, e.g. model=gpt-4,model=claude-3-opus,type=number"
)


@dataclass(frozen=True, slots=True)
class Where:
    """A filter on answers: each key's accepted values."""

    terms: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Where:
        terms: dict[str, set[str]] = {}
        for term in filter(None, (t.strip() for t in text.split(","))):
            key, equals, value = term.partition("=")
            key, value = key.strip(), value.strip()
            if not equals or not value:
                raise RescoreError(f"--where: {term!r} is not KEY=VALUE")
            if key not in _WHERE:
                raise RescoreError(f"--where: no key {key!r}; one of {', '.join(_WHERE)}")
            terms.setdefault(key, set()).add(value)
        return cls({key: frozenset(values) for key, values in terms.items()})

    def matches(self, answer: Answer) -> bool:
        return all(_WHERE[key](answer) in values for key, values in self.terms.items())


@dataclass(frozen=True, slots=True)
class Plan:
    """The answers to score, and those left out."""

    answers: tuple[Answer, ...]
    found: int
    already_scored: int
    filtered_out: int


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return "\n".join(text for text in parts if isinstance(text, str))
    return ""


def _question(messages: Iterable[Mapping[str, Any]]) -> str:
    """The last user message's text: what the answer answers."""
    asked = [m.get("content") for m in messages if m.get("role") == "user"]
    return _text(asked[-1]) if asked else ""


def _request(data: Mapping[str, Any]) -> Request:
    kind = data.get("answer_format", "text")
    try:
        fmt: AnswerFormat | None = AnswerFormat(AnswerKind(kind), data.get("answer_field"))
    except ValueError:
        fmt = None
    return Request(
        data.get("endpoint", ""),
        data.get("capability"),
        data.get("strategy"),
        data.get("tenant"),
        _question(data.get("messages", [])),
        data.get("expected"),
        kind,
        fmt,
    )


def plan(reader: LogReader, scorer: Scorer, since: int, where: Where, progress: Progress) -> Plan:
    """Read the whole log once: the answers from `since` on that match and lack this score."""
    requests: dict[str, Request] = {}
    completed: list[RecordedEvent] = []
    scored: set[str] = set()
    head = reader.head()
    after = 0
    while page := reader.read_page(after):
        for event in page:
            kind, data = event.type, event.data
            if kind == "RequestReceived":
                requests[data["request_id"]] = _request(data)
            elif kind == "EnsembleCombined" and data["request_id"] in requests:
                request = requests[data["request_id"]]
                requests[data["request_id"]] = replace(
                    request, consensus=data["result"].get("answer")
                )
            elif kind == "ModelCallCompleted" and event.position >= since:
                completed.append(event)
            elif (
                kind == "ScoreRecorded"
                and data["scorer"] == scorer.id
                and data["scorer_version"] == scorer.version
            ):
                scored.add(data["subject"])
        after = page[-1].position
        progress(after, head)
    answers = [
        Answer(
            e.data["request_id"],
            e.data["call_id"],
            e.event_id,
            e.data["model"],
            e.data["text"],
            requests[e.data["request_id"]],
        )
        for e in completed
        # A call without a received request (a judge's own call) is not an answer.
        if e.data["request_id"] in requests
    ]
    matching = [a for a in answers if where.matches(a)]
    new = tuple(a for a in matching if a.call_id not in scored)
    return Plan(new, len(answers), len(matching) - len(new), len(answers) - len(matching))


def score_input(answer: Answer) -> ScoreInput:
    """What a scorer is given of an answer; raises ScoreUnavailable when its format is unknown."""
    request = answer.request
    if request.fmt is None:
        raise ScoreUnavailable(f"unreadable answer format {request.answer_format!r}")
    return ScoreInput(
        answer.text,
        request.question,
        request.fmt,
        request.expected,
        request.consensus,
    )


def score_event(scorer: Scorer, answer: Answer, score: float, detail: str = "") -> NewEvent:
    """The ScoreRecorded of an answer, with an event id that is the same on every run."""
    event = ScoreRecorded(
        request_id=answer.request_id,
        subject=answer.call_id,
        subject_kind="call",
        model=answer.model,
        capability=answer.request.capability,
        scorer=scorer.id,
        scorer_version=scorer.version,
        score=round(score, 6),
        detail=detail,
    ).new(correlation_id=answer.request_id, causation_id=answer.event_id, actor=_ACTOR)
    key = f"{scorer.id}\n{scorer.version}\n{answer.call_id}"
    return replace(event, event_id=str(uuid.uuid5(_NAMESPACE, key)))


@dataclass(slots=True)
class Tally:
    """What a run did, as it goes."""

    scores: list[float] = field(default_factory=list)
    unscorable: Counter[str] = field(default_factory=Counter)


def _parts(scored: Sequence[tuple[Answer, NewEvent]]) -> list[StreamAppend]:
    """Scores as one atomic batch, each in its request's stream."""
    by_stream: dict[str, list[NewEvent]] = {}
    for answer, event in scored:
        by_stream.setdefault(request_stream(answer.request_id), []).append(event)
    return [StreamAppend(stream, events) for stream, events in by_stream.items()]


def score_locally(
    store: EventStore, scorer: Scorer, answers: Sequence[Answer], progress: Progress
) -> Tally:
    """Score answers with a scorer that needs no model call, appending in atomic batches."""
    tally = Tally()
    batch: list[tuple[Answer, NewEvent]] = []
    for done, answer in enumerate(answers, start=1):
        try:
            score = scorer.score(score_input(answer))
        except ScoreUnavailable as exc:
            tally.unscorable[str(exc)] += 1
        else:
            tally.scores.append(score)
            batch.append((answer, score_event(scorer, answer, score)))
        if len(batch) >= _BATCH or (batch and done == len(answers)):
            store.append_batch(_parts(batch))
            batch = []
        progress(done, len(answers))
    return tally


@dataclass(slots=True)
class JudgeRun:
    """The judge's calls, all in the stream of request `request_id`."""

    model: str
    request_id: str
    budget_usd: float
    calls: int = 0
    failed: int = 0
    spent_pico: int = 0
    left_by_budget: int = 0


async def judge(
    store: EventStore,
    spec: ModelSpec,
    answers: Sequence[Answer],
    budget_pico: int,
    progress: Progress,
) -> tuple[Tally, JudgeRun]:
    """Ask the judge model to grade each answer, one call at a time, while the budget lasts.

    Each call is paid like a gateway's: reserved (in the global scope, and within this run's
    budget) before it is made, and settled after it, all in the run's request stream. A call is
    made only when its reservation, the most it can cost, still fits; each score is appended as
    soon as it is known.
    """
    # Only the judge calls a model: the rest of `atom replay` never loads the actors or aiohttp.
    from atom_actors.budget import BudgetBook, BudgetExceeded
    from atom_actors.budgeted import BudgetedCaller
    from atom_actors.calls import CallFailed
    from atom_actors.principal import Principal
    from atom_actors.projections import Budgets
    from atom_actors.providers import CallParams
    from atom_actors.request import ProcessRequest, RequestContext
    from atom_actors.system import ActorSystem

    scorer = JudgeScorer()
    run = JudgeRun(spec.name, f"rescore-{uuid.uuid4()}", to_usd(budget_pico))
    tally = Tally()
    params = CallParams(max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)
    tool = Principal.tool(_ACTOR)
    budgets = fold(Budgets(), (e for e in store.read_all() if e.type in Budgets.types))
    book = BudgetBook(lambda: budgets, lambda: 0)
    system = ActorSystem(store, [spec])
    system.start(asyncio.get_running_loop())
    calls = BudgetedCaller(system.caller, book, {spec.name: spec})
    try:
        for done, answer in enumerate(answers):
            progress(done, len(answers))
            try:
                messages = scorer.prompt(score_input(answer))
            except ScoreUnavailable as exc:
                tally.unscorable[str(exc)] += 1
                continue
            ctx = RequestContext(
                request_id=run.request_id,
                req=ProcessRequest(messages, params, spec.name, endpoint="rescore"),
                principal=tool,
                prompt=prompt_size(messages),
                log=BufferedStream(store, request_stream(run.request_id)),
                metadata={
                    "correlation_id": run.request_id,
                    "causation_id": answer.event_id,
                    "tenancy": tool.tenancy,
                    "actor": _ACTOR,
                },
            )
            ceiling = calls.reservation(spec.name, ctx.prompt, params.max_tokens)
            if run.spent_pico + ceiling > budget_pico:
                run.left_by_budget = len(answers) - done
                break
            try:
                result = await calls.call(ctx, spec.name)
            except BudgetExceeded:
                run.left_by_budget = len(answers) - done
                break
            except CallFailed as exc:
                run.calls += 1
                run.failed += 1
                tally.unscorable[f"judge call failed: {exc.kind}"] += 1
                continue
            finally:
                await ctx.log.commit()
                run.spent_pico += ctx.spend.cost_pico
            run.calls += 1
            try:
                score = scorer.parse(result.text)
            except ScoreUnavailable as exc:
                tally.unscorable[str(exc)] += 1
                continue
            tally.scores.append(score)
            detail = f"judged by {spec.name} in call {result.call_id}"
            event = score_event(scorer, answer, score, detail)
            await asyncio.wrap_future(store.append_batch_future(_parts([(answer, event)])))
    finally:
        await system.aclose()
    return tally, run


# The command line.


def _scorer(scorer_id: str) -> Scorer:
    try:
        return get_scorer(scorer_id)
    except KeyError as exc:
        raise RescoreError(f"--scorer: {exc.args[0]}") from None


def judge_spec(model: str | None, config: str | None) -> ModelSpec:
    """The judge model's catalog entry, which must be callable now."""
    if model is None:
        raise RescoreError("--scorer judge needs --judge-model NAME")
    try:
        specs = {spec.name: spec for spec in load_config(config).models}
    except ConfigError as exc:
        raise RescoreError(f"--config: {exc}") from None
    spec = specs.get(model)
    if spec is None:
        raise RescoreError(f"--judge-model: no model {model!r}; there are {', '.join(specs)}")
    reason = unavailable_reason(spec)
    if reason is not None:
        raise RescoreError(f"--judge-model {model}: unavailable: {reason}")
    return spec


def _budget(text: str) -> int:
    try:
        amount = from_usd(float(text))
    except ValueError:
        amount = -1
    if amount < 0:
        raise RescoreError(f"--budget-usd {text!r}: not an amount of 0 or more")
    return amount


def add_parser(commands: Any) -> None:
    """Add `rescore` to `atom replay`'s subcommands (the argparse subparsers action)."""
    parser = commands.add_parser(
        "rescore",
        help="score past answers with a scorer, appending ScoreRecorded events",
        description=(
            "Run a scorer over the answers (completed calls) of received requests, with each "
            "request's expected answer and format, and append a ScoreRecorded for each, under "
            "the scorer's id and version. Answers that version scored already are skipped, so "
            "a second run adds nothing; answers it cannot score (no expected answer, say) are "
            "counted and skipped. The judge scorer calls --judge-model through ATOM's model "
            "actors, recording its calls in the log, and stops before its spend would pass "
            "--budget-usd. Exit 0 when done, 1 when the judge left answers unjudged (budget "
            "reached, calls failed), 2 on bad input."
        ),
    )
    add = parser.add_argument
    add("--db", default="./atom.db", help="the event log (default: ./atom.db)")
    add(
        "--scorer",
        required=True,
        metavar="ID",
        help="reference, agreement (with its ensemble's answer), judge or feedback",
    )
    add("--since", metavar="POS|TIME", help=f"only answers from here on: {_timepoint.HELP}")
    add("--where", default="", metavar="FILTER", help=WHERE_HELP)
    add("--judge-model", metavar="NAME", help="the model that judges (with --scorer judge)")
    add(
        "--config",
        metavar="FILE",
        help="the configuration naming the judge model (default: the embedded catalog)",
    )
    add(
        "--budget-usd",
        default=str(DEFAULT_JUDGE_BUDGET_USD),
        metavar="X",
        help=f"most the judge may spend (default: {DEFAULT_JUDGE_BUDGET_USD:g})",
    )
    add("--json", action="store_true", help="print the outcome as one JSON object")


def _report(
    scorer: Scorer, since: int, found: Plan, tally: Tally, run: JudgeRun | None
) -> dict[str, Any]:
    mean = round(sum(tally.scores) / len(tally.scores), 6) if tally.scores else None
    return {
        "scorer": scorer.id,
        "version": scorer.version,
        "since": since,
        "answers": found.found,
        "scored": len(tally.scores),
        "mean_score": mean,
        "already_scored": found.already_scored,
        "filtered_out": found.filtered_out,
        "unscorable": dict(tally.unscorable.most_common()),
        "judge": None
        if run is None
        else {
            "model": run.model,
            "request_id": run.request_id,
            "calls": run.calls,
            "failed": run.failed,
            "spent_usd": to_usd(run.spent_pico),
            "budget_usd": run.budget_usd,
            "left_by_budget": run.left_by_budget,
        },
    }


def render(report: Mapping[str, Any]) -> str:
    mean = "" if report["mean_score"] is None else f" (mean {report['mean_score']:.3f})"
    lines = [
        f"rescore {report['scorer']} v{report['version']} over {report['answers']} answers from "
        f"position {report['since']}: {report['scored']} scored{mean}, "
        f"{report['already_scored']} already scored, {sum(report['unscorable'].values())} "
        f"unscorable, {report['filtered_out']} filtered out"
    ]
    lines += [f"  unscorable: {reason} ({n})" for reason, n in report["unscorable"].items()]
    run = report["judge"]
    if run is not None:
        lines.append(
            f"  judge {run['model']}: {run['calls']} calls ({run['failed']} failed), "
            f"${run['spent_usd']:.6f} of ${run['budget_usd']:g} spent; its calls are request "
            f"{run['request_id']}"
        )
        if run["left_by_budget"]:
            lines.append(f"  stopped by the budget: {run['left_by_budget']} answers left")
    return "\n".join(lines)


def command(options: argparse.Namespace) -> int:
    """Run `atom replay rescore`: 0 when done, 1 when the judge left answers, 2 on bad input."""
    try:
        scorer = _scorer(options.scorer)
        where = Where.parse(options.where)
        point = _timepoint.parse(options.since) if options.since else 1
        spec, budget = None, 0
        if scorer.id == "judge":
            spec, budget = (
                judge_spec(options.judge_model, options.config),
                _budget(options.budget_usd),
            )
        elif options.judge_model or options.config:
            raise RescoreError("--judge-model and --config go with --scorer judge")
    except (RescoreError, _timepoint.BadTimepoint) as exc:
        print(f"atom replay rescore: {exc}", file=sys.stderr)
        return 2
    run = None
    with open_store(options.db, create=False) as store:
        since = _timepoint.first_from(store, point)
        with ProgressBar("reading") as progress:
            found = plan(store, scorer, since, where, progress)
        with ProgressBar("scoring") as progress:
            if spec is None:
                tally = score_locally(store, scorer, found.answers, progress)
            else:
                tally, run = asyncio.run(judge(store, spec, found.answers, budget, progress))
    report = _report(scorer, since, found, tally, run)
    print(orjson.dumps(report).decode() if options.json else render(report))
    return 1 if run is not None and (run.left_by_budget or run.failed) else 0
