"""`atom replay stream`: play a recorded answer back token by token, with its original timing."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from atom_actors.events import request_stream
from eventstore import RecordedEvent, open_reader


class StreamError(ValueError):
    """No such request, one without an answer, or a bad --speed."""


@dataclass(frozen=True, slots=True)
class Playback:
    """The tokens of the call that answered, each with its ms since that call started."""

    request_id: str
    model: str
    call_id: str | None
    member: str | None
    """The ensemble member whose answer was chosen, if an ensemble answered."""
    cached_from: str | None
    """The request whose answer the cache gave (its tokens came at once, untimed)."""
    tokens: tuple[tuple[str, float], ...]

    def describe(self) -> str:
        """One line saying what is played."""
        if self.cached_from is not None:
            return (
                f"request {self.request_id}: {self.model}'s answer to request "
                f"{self.cached_from}, from the cache (sent at once)"
            )
        member = f", ensemble member {self.member}" if self.member else ""
        span = self.tokens[-1][1] if self.tokens else 0.0
        return (
            f"request {self.request_id}: {self.model}{member} (call {self.call_id}), "
            f"{len(self.tokens)} tokens over {span:.1f} ms"
        )


def _chosen(events: Sequence[RecordedEvent], answer: dict[str, Any]) -> tuple[str, str | None]:
    """The model and member whose text the request answered with."""
    for event in events:
        if event.type == "EnsembleCombined":
            member = event.data["result"].get("chosen")
            model = next(m["model"] for m in event.data["members"] if m["member"] == member)
            return model, member
    return answer["model"], None


def _tokens(events: Sequence[RecordedEvent], call_id: str) -> tuple[tuple[str, float], ...]:
    found = []
    for event in events:
        if event.type == "TokensStreamed" and event.data["call_id"] == call_id:
            seq = event.data["seq"]
            found += [(seq + i, d[0], d[1]) for i, d in enumerate(event.data["deltas"])]
    return tuple((text, ms) for _, text, ms in sorted(found))


def playback_of(events: Sequence[RecordedEvent], request_id: str) -> Playback:
    """What the client of this request was sent, from its stream's events."""
    if not events:
        raise StreamError(f"no request {request_id!r} in the log")
    ended = next((e for e in events if e.type in ("RequestCompleted", "RequestFailed")), None)
    if ended is None or ended.type == "RequestFailed":
        why = "it is unfinished" if ended is None else f"it failed: {ended.data['message']}"
        raise StreamError(f"request {request_id} has no answer to play: {why}")
    answer = ended.data
    hit = next((e for e in events if e.type == "CacheHit"), None)
    if hit is not None:
        return Playback(
            request_id,
            answer["model"],
            None,
            None,
            hit.data["source_request_id"],
            ((answer["text"], 0.0),),
        )
    model, member = _chosen(events, answer)
    # Calls carry no member label: the member's call is the one of its model with its text.
    call = next(
        (
            e.data
            for e in events
            if e.type == "ModelCallCompleted"
            and e.data["model"] == model
            and e.data["text"] == answer["text"]
        ),
        None,
    )
    if call is None:
        raise StreamError(f"request {request_id}: no call of {model} gave its answer")
    return Playback(
        request_id, model, call["call_id"], member, None, _tokens(events, call["call_id"])
    )


def play(
    tokens: Sequence[tuple[str, float]], speed: float, emit: Callable[[str, float], None]
) -> None:
    """Emit each (text, ms) at its offset divided by `speed` from now; speed 0 does not wait."""
    start = time.monotonic()
    for text, ms in tokens:
        if speed > 0:
            # Aimed at the start, not the previous token, so that waits never add up to drift.
            delay = start + ms / 1000 / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        emit(text, ms)


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise StreamError(f"--speed {text!r}: not a number 0 or above")
    return value


def add_parser(commands: Any) -> None:
    """Add `stream` to `atom replay`'s subcommands (the argparse subparsers action)."""
    parser = commands.add_parser(
        "stream",
        help="play a recorded answer back with its original timing",
        description=(
            "Write the tokens of the call that answered the request to stdout as the client "
            "saw them come, waiting between them as long as the recording did (divided by "
            "--speed). For an ensemble, the chosen member's tokens; for a cached answer, its "
            "text at once. What is played is said on stderr."
        ),
    )
    parser.add_argument("--db", default="./atom.db", help="the event log (default: ./atom.db)")
    parser.add_argument("request_id", metavar="REQUEST_ID", help="the request's id")
    parser.add_argument(
        "--speed",
        default="1",
        metavar="X",
        help="play X times as fast (default: 1); 0 does not wait",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='one JSON object a token: {"model", "member", "offset_ms", "text"}',
    )


def command(options: argparse.Namespace) -> int:
    """Run `atom replay stream`: 0 once played, 2 on bad input or nothing to play."""
    try:
        speed = _speed(options.speed)
        with open_reader(options.db) as reader:
            events = reader.read_stream(request_stream(options.request_id))
        playback = playback_of(events, options.request_id)
    except StreamError as exc:
        print(f"atom replay stream: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout

    def emit(text: str, ms: float) -> None:
        if options.json:
            token = {
                "model": playback.model,
                "member": playback.member,
                "offset_ms": ms,
                "text": text,
            }
            out.write(orjson.dumps(token).decode() + "\n")
        else:
            out.write(text)
        out.flush()

    print(playback.describe(), file=sys.stderr)
    play(playback.tokens, speed, emit)
    if out.isatty() and not options.json:
        out.write("\n")
    return 0
