"""`atom replay trace`: one request's whole story, in the order the log recorded it.

The story itself is `atom_actors.trace` (GET /api/advanced-ai/requests/{id} serves the same);
this module renders it for a terminal and runs the command.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from atom_actors.trace import Trace, TraceError, build, load
from eventstore import open_reader

__all__ = ["Trace", "TraceError", "add_parser", "build", "command", "load", "render"]

_EXCERPT: Final = 80


# Human output.


def _usd(amount: float | None) -> str:
    if amount is None:
        return "-"
    # Ten decimals show every pico-dollar amount a call can cost, without an exponent.
    return "$" + (f"{amount:.10f}".rstrip("0").rstrip(".") or "0")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _quote(text: str, limit: int | None = None) -> str:
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return orjson.dumps(text).decode()


def _excerpt(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(identifier: str) -> str:
    # Ids are time-ordered (UUID version 7): those made together share their first digits,
    # and differ in their last.
    return identifier[-8:]


def _received(d: dict[str, Any], _: Trace) -> list[str]:
    who = ", ".join(
        f"{label} {d[key]}"
        for label, key in (("key", "api_key_id"), ("tenant", "tenant"))
        if d.get(key)
    )
    target = f"model {d['model']}" if d.get("model") else f"strategy {d.get('strategy')}"
    lines = [
        f"received on {d.get('endpoint')} from {who or 'no key'}: {d.get('capability')}, {target}"
        + (", streamed" if d.get("stream") else "")
    ]
    asked = [m.get("content") for m in d.get("messages", []) if m.get("role") == "user"]
    if asked and isinstance(asked[-1], str):
        lines.append(f"  asked {_quote(asked[-1], _EXCERPT)}")
    params = d.get("params") or {}
    if params.get("tools"):
        names = ", ".join(t["function"]["name"] for t in params["tools"])
        choice = params.get("tool_choice") or "auto"
        if isinstance(choice, dict):
            choice = f"only {choice['function']['name']}"
        lines.append(f"  offered tools {names} (tool_choice {choice})")
    results = [m for m in d.get("messages", []) if m.get("role") == "tool"]
    if results:
        lines.append(f"  with {_count(len(results), 'tool result')}")
    if d.get("expected") is not None:
        lines.append(f"  expects {_quote(d['expected'])} ({d.get('answer_format', 'text')})")
    return lines


def _route(d: dict[str, Any], _: Trace) -> list[str]:
    # Reasons open with their strategy's name, which the line has already given.
    reason = d.get("reason", "").removeprefix(f"{d['strategy']}: ")
    lines = [f"route {d['strategy']} chose {d.get('chosen') or 'nothing'}: {reason}"]
    for c in d.get("candidates", []):
        lines.append(
            f"  candidate {c['model']}: score {c['score']:.6g}, quality {c['quality']:.3g}, "
            f"expected {_usd(c.get('expected_cost_usd'))}, "
            f"reserves {_usd(c.get('reservation_usd'))}"
        )
    lines += [f"  excluded {x['model']}: {x['reason']}" for x in d.get("excluded", [])]
    if d.get("ensemble"):
        plan = d["ensemble"]
        lines.append(f"  ensemble {plan['method']} of {', '.join(plan['members'])}")
    for i, rung in enumerate((d.get("cascade") or {}).get("rungs", []), start=1):
        lines.append(
            f"  rung {i}: {' + '.join(rung['models'])}, reserves {_usd(rung['reservation_usd'])}"
        )
    return lines


def _cascade(d: dict[str, Any], _: Trace) -> list[str]:
    rung = f"rung {d['step'] + 1}"
    if d["action"] == "call":
        head = f"cascade calls {rung} ({' + '.join(d['models'])}): {d['reason']}"
    elif d["action"] == "accept":
        kept = "nothing" if d.get("answer") is None else _quote(d["answer"])
        head = f"cascade keeps {rung}'s answer {kept} from {d.get('speaker')}: {d['reason']}"
    else:
        head = f"cascade stops: {d['reason']}"
    lines = [head]
    for reply in d.get("replies", []):
        said = reply["error"] or ("no answer" if reply["answer"] is None else reply["answer"])
        lines.append(f"  {reply['member']} answered {_quote(said)}")
    lines += [f"  check {v['check']} {_verdict(v['passed'])}: {v['reason']}" for v in d["verdicts"]]
    if d.get("replies"):
        lines.append(f"  the rung cost {_usd(d.get('cost_usd'))}")
    return lines


def _verdict(passed: bool | None) -> str:
    return {True: "passed", False: "failed", None: "abstained"}[passed]


def _reserved(d: dict[str, Any], trace: Trace) -> list[str]:
    state = next(r.state for r in trace.reservations if r.reservation_id == d["reservation_id"])
    note = "" if state == "settled" else f" ({state.upper()})"
    return [
        f"budget reserved {_usd(d['amount_usd'])} for {d['model']} in {', '.join(d['scopes'])}"
        f" (reservation {_short(d['reservation_id'])}){note}"
    ]


# How each settlement rule set the cost (atom_actors.cost.SettleRule), for people.
_RULES = {
    "usage": "the usage reported",
    "counted": "no usage reported: the prompt's bound and {completion} tokens counted",
    "cut": "broken off: the prompt's bound and {completion} tokens streamed",
    "none": "nothing was output",
}


def _settled(d: dict[str, Any], _: Trace) -> list[str]:
    rule = _RULES.get(d.get("rule", "usage"), d.get("rule", ""))
    return [
        f"budget settled {_usd(d['actual_usd'])} of {_usd(d['reserved_usd'])}"
        f" by {rule.format(completion=d.get('completion_tokens'))}"
        f" (reservation {_short(d['reservation_id'])})"
    ]


def _rejected(d: dict[str, Any], _: Trace) -> list[str]:
    return [f"budget rejected in {d['scope']}: {_usd(d['headroom_usd'])} left"]


def _started(d: dict[str, Any], _: Trace) -> list[str]:
    return [f"call {d['model']} attempt {d['attempt']} started (call {_short(d['call_id'])})"]


def _token_lines(call_id: str, trace: Trace) -> list[str]:
    tokens = trace.tokens.get(call_id)
    if tokens is None:
        return ["  no tokens streamed"]
    lines = [
        f"  {_count(tokens.count, 'token')} streamed: the first at {tokens.first_ms:.1f} ms, "
        f"then over {tokens.duration_ms:.1f} ms"
    ]
    lines += [f"    {ms:9.1f} ms  {_quote(text)}" for text, ms in tokens.each or ()]
    return lines


def _completed_call(d: dict[str, Any], trace: Trace) -> list[str]:
    return [
        f"call {d['model']} attempt {d['attempt']} completed in {d['latency_ms']:.1f} ms: "
        f"{d['prompt_tokens']} + {d['completion_tokens']} tokens, {_usd(d['cost_usd'])}, "
        f"{d['finish_reason']} (call {_short(d['call_id'])})",
        *_token_lines(d["call_id"], trace),
        *(
            [f"  said {_quote(d['text'], _EXCERPT)}"]
            if d["text"] or not d.get("tool_calls")
            else []
        ),
        *_call_lines(d.get("tool_calls")),
    ]


def _call_lines(calls: list[dict[str, Any]] | None) -> list[str]:
    """The tools an answer calls: `called name(arguments)`, one line each."""
    return [
        f"  called {c['function']['name']}({_excerpt(c['function']['arguments'], _EXCERPT)}) "
        f"(id {c['id']})"
        for c in calls or ()
    ]


def _failed_call(d: dict[str, Any], trace: Trace) -> list[str]:
    status = f"HTTP {d['status']}, " if d.get("status") else ""
    retry = "retryable" if d.get("retryable") else "not retryable"
    lines = [
        f"call {d['model']} attempt {d['attempt']} failed after {d['latency_ms']:.1f} ms: "
        f"{d['kind']} ({status}{retry}): {d['message']} (call {_short(d['call_id'])})"
    ]
    if d["call_id"] in trace.tokens:
        lines += _token_lines(d["call_id"], trace)
    return lines


def _ensemble(d: dict[str, Any], _: Trace) -> list[str]:
    r = d["result"]
    lines = [
        f"ensemble {d['method']}: {r.get('chosen') or 'no member'} speaks for answer "
        f"{_quote(str(r.get('normalized')))}, agreement {r.get('agreement', 0):.2f}, "
        f"confidence {r.get('confidence', 0):.2f}, {_count(r.get('voters', 0), 'voter')}"
    ]
    scorer = d.get("scorer")
    if scorer:
        scores = ", ".join(f"{m} {v:.3g}" for m, v in scorer["scores"].items())
        lines.append(
            f"  chosen by {scorer['scorer']}"
            + (f" ({scores})" if scores else "")
            + f": {scorer['reason']}"
        )
    for m in d["members"]:
        if m.get("error"):
            lines.append(f"  {m['member']} failed: {m['error']}")
        else:
            vote = "nothing" if m.get("vote") is None else _quote(m["vote"])
            basis = f" ({m['weight_basis']})" if m.get("weight_basis") else ""
            lines.append(
                f"  {m['member']} voted {vote}, weight {m.get('weight')}{basis}, "
                f"{_usd(m.get('cost_usd'))}"
            )
    return lines


def _score(d: dict[str, Any], _: Trace) -> list[str]:
    detail = f": {d['detail']}" if d.get("detail") else ""
    return [
        f"score {d['scorer']} v{d['scorer_version']} gave {d['score']:g} to {d.get('model')} "
        f"({d['subject_kind']} {_short(d['subject'])}){detail}"
    ]


def _cache(d: dict[str, Any], _: Trace) -> list[str]:
    return [f"cache hit: the answer of request {d['source_request_id']}"]


def _completed(d: dict[str, Any], _: Trace) -> list[str]:
    how = (
        "from the cache"
        if d.get("cached")
        else (
            f"{_count(d.get('attempts', 1), 'attempt')}, "
            f"{_count(d.get('fallbacks', 0), 'fallback')}"
            + (f", {_count(d['escalations'], 'escalation')}" if d.get("escalations") else "")
        )
    )
    return [
        f"completed by {d['model']} in {d['latency_ms']:.1f} ms: {_usd(d['cost_usd'])}, "
        f"{d['prompt_tokens']} + {d['completion_tokens']} tokens, {how}",
        *([f"  answer {_quote(d['text'])}"] if d["text"] or not d.get("tool_calls") else []),
        *_call_lines(d.get("tool_calls")),
    ]


def _failed(d: dict[str, Any], _: Trace) -> list[str]:
    return [
        f"failed: {d['kind']} (HTTP {d['status']}) after {d.get('latency_ms', 0):.1f} ms: "
        f"{d['message']}"
    ]


def _other(d: dict[str, Any], _: Trace) -> list[str]:
    return [orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode()]


_RENDER: Final[dict[str, Callable[[dict[str, Any], Trace], list[str]]]] = {
    "RequestReceived": _received,
    "RouteDecided": _route,
    "BudgetReserved": _reserved,
    "BudgetSettled": _settled,
    "BudgetRejected": _rejected,
    "ModelCallStarted": _started,
    "ModelCallCompleted": _completed_call,
    "ModelCallFailed": _failed_call,
    "EnsembleCombined": _ensemble,
    "CascadeStepped": _cascade,
    "ScoreRecorded": _score,
    "CacheHit": _cache,
    "RequestCompleted": _completed,
    "RequestFailed": _failed,
}


def render(trace: Trace) -> str:
    """The trace for a terminal: one block per step, its offset from the request's receipt."""
    first = trace.steps[0]
    lines = [f"request {trace.request_id}: {trace.outcome}, received {first.at}"]
    for step in trace.steps:
        head, *rest = _RENDER.get(step.type, _other)(step.data, trace)
        lines.append(f"{step.offset_ms:>10.1f} ms  #{step.position:<6} {head}")
        lines += [" " * 26 + line for line in rest]
    for r in trace.reservations:
        if r.state != "settled":
            expiry = datetime.fromtimestamp(r.expires_at, UTC).isoformat(timespec="seconds")
            tense = "expired" if r.state == "expired" else "expires"
            lines.append(
                f"{r.state}: reservation {r.reservation_id} of {_usd(r.reserved_usd)} for "
                f"{r.model} was never settled; it {tense} at {expiry}"
            )
    for call_id in trace.unfinished_calls:
        lines.append(f"unfinished: call {call_id} has no outcome on record")
        lines += _token_lines(call_id, trace)
    if trace.outcome == "unfinished":
        lines.append("unfinished: the request has no RequestCompleted or RequestFailed")
    return "\n".join(lines)


# The command line.


def add_parser(commands: Any) -> None:
    """Add `trace` to `atom replay`'s subcommands (the argparse subparsers action)."""
    parser = commands.add_parser(
        "trace",
        help="one request's whole story, in order",
        description=(
            "Who asked, the route considered and chosen, budget reservations and their "
            "settlement, every call and attempt with its tokens, cost, scores, the ensemble's "
            "vote, the cascade's moves with their checks, and the final answer or failure, "
            "each at its time from the request's "
            "receipt. A reservation never settled (its process crashed) is shown as unsettled, "
            "or expired once past its expiry."
        ),
    )
    parser.add_argument("--db", default="./atom.db", help="the event log (default: ./atom.db)")
    parser.add_argument("request_id", metavar="REQUEST_ID", help="the request's id")
    parser.add_argument("--tokens", action="store_true", help="list every token with its time")
    parser.add_argument("--json", action="store_true", help="print the trace as one JSON object")


def command(options: argparse.Namespace) -> int:
    """Run `atom replay trace`: 0 when the request is found, 2 when not."""
    with open_reader(options.db) as reader:
        try:
            trace = load(reader, options.request_id, now=time.time(), each_token=options.tokens)
        except TraceError as exc:
            print(f"atom replay trace: {exc}", file=sys.stderr)
            return 2
    print(orjson.dumps(trace).decode() if options.json else render(trace))
    return 0
