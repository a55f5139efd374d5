"""The cascade: ask the cheapest rung first, accept its answer when the checks pass, else climb.

A pure step, `decide(ladder, policy, prompt, attempts)`, looks at the answers so far and says
what to do next: call a rung, or accept an answer. The loop that makes the calls is thin and
lives in the shell: `run_cascade` here for recorded answers (offline evaluation), the gateway's
own loop online (docs/architecture.md, "The cascade"). Both take every decision from `decide`.

Acceptance checks, each a function of one rung's answers (`RungView`) to a `Verdict`:

- `agreement(min_share)`: the rung's extracted answers agree (the most common one is given by at
  least `min_share` of the rung's replies); abstains with a single reply.
- `validity(fmt, schema)`: the reply holds an answer of the expected format (a number, a choice,
  a JSON field); with a schema, the reply's JSON meets it (`meets_schema`).
- `confidence(min_probability)`: exp(mean token logprob) of the speaking reply; abstains where
  the provider gave no logprobs.
- `learned(model, threshold)`: the acceptance model's probability that the answer is right
  (`acceptance.py`), trained from scored history.

A policy combines them (`Policy`): the rung's answer is accepted when no check fails and at
least one passes; a check that abstains neither vouches nor vetoes. At the top of the ladder
the answer is taken whatever the checks say: there is nothing stronger to ask. `Acceptance`
names the checks a request asks for, and builds the policy online and offline alike.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from atom_actors.answers import AnswerFormat, parse_json

DEFAULT_THRESHOLD: Final = 0.76
"""The learned check's threshold when none is given: on the shared GSM8K recordings, the least
threshold at which the cascade matched the strong model's accuracy, found inside the train half
of each of 5 split seeds (fitted on one half of it, swept on the other, both ways): the median
of those ten, 0.76 (they ranged 0.74-0.78). See docs/architecture.md, "The cascade"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One reply the cascade has: the rung (0 first) that asked, the model, and what it said."""

    step: int
    model: str
    text: str
    mean_logprob: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RungView:
    """A rung's replies as the checks see them, with the answer that speaks for the rung.

    `answer` is the most common extracted answer (None when no reply holds one); `speaker` the
    first reply that gives it; `share` the fraction of the rung's replies behind it.
    """

    prompt: str
    fmt: AnswerFormat
    step: int
    attempts: tuple[Attempt, ...]
    answer: str | None
    speaker: Attempt | None
    share: float
    extracted: tuple[str | None, ...]


def view_of(prompt: str, fmt: AnswerFormat, step: int, attempts: Sequence[Attempt]) -> RungView:
    """Extract each reply's answer and find the one that speaks for the rung."""
    mine = tuple(a for a in attempts if a.step == step)
    extracted = tuple(None if a.error is not None else fmt.extract(a.text) for a in mine)
    votes = Counter(x for x in extracted if x is not None)
    if not votes:
        return RungView(
            prompt=prompt,
            fmt=fmt,
            step=step,
            attempts=mine,
            answer=None,
            speaker=None,
            share=0.0,
            extracted=extracted,
        )
    # The most votes; among equals the answer given first, so the rung's order settles it.
    top = max(votes.values())
    answer = next(x for x in extracted if x is not None and votes[x] == top)
    speaker = mine[extracted.index(answer)]
    return RungView(
        prompt=prompt,
        fmt=fmt,
        step=step,
        attempts=mine,
        answer=answer,
        speaker=speaker,
        share=top / len(mine),
        extracted=extracted,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """A check's judgement: passed, failed, or None when it cannot tell; its measure; why."""

    check: str
    passed: bool | None
    value: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "passed": self.passed,
            "value": self.value,
            "reason": self.reason,
        }


Check = Callable[[RungView], Verdict]


def agreement(min_share: float = 1.0) -> Check:
    """Pass when `min_share` of the rung's replies (two or more) give its answer."""
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")

    def check(rung: RungView) -> Verdict:
        if len(rung.attempts) < 2:
            return Verdict("agreement", None, None, "one reply: nothing to agree with")
        passed = rung.answer is not None and rung.share >= min_share
        said = f"{rung.share:.2f} of {len(rung.attempts)} replies agree"
        return Verdict("agreement", passed, rung.share, f"{said} (needs {min_share:g})")

    return check


def validity(fmt: AnswerFormat, schema: Mapping[str, Any] | None = None) -> Check:
    """Pass when the speaking reply holds an answer of `fmt` (and its JSON meets `schema`)."""

    def check(rung: RungView) -> Verdict:
        if rung.answer is None or rung.speaker is None:
            return Verdict("validity", False, 0.0, fmt.describe_missing())
        if schema is not None:
            problem = schema_problem(parse_json(rung.speaker.text), schema)
            if problem is not None:
                return Verdict("validity", False, 0.0, f"schema: {problem}")
        return Verdict("validity", True, 1.0, f"a valid {fmt.kind.value} answer")

    return check


def confidence(min_probability: float) -> Check:
    """Pass when exp(mean token logprob) of the speaking reply reaches `min_probability`."""

    def check(rung: RungView) -> Verdict:
        speaker = rung.speaker
        if speaker is None or speaker.mean_logprob is None:
            return Verdict("confidence", None, None, "no logprobs")
        value = math.exp(speaker.mean_logprob)
        passed = value >= min_probability
        return Verdict("confidence", passed, value, f"{value:.3f} (needs {min_probability:g})")

    return check


class AcceptanceScorer(Protocol):
    def probability(self, rung: RungView) -> float:
        """The probability that the rung's answer is right."""
        ...


def learned(model: AcceptanceScorer, threshold: float) -> Check:
    """Pass when the acceptance model's probability that the answer is right reaches `threshold`."""

    def check(rung: RungView) -> Verdict:
        if rung.answer is None:
            return Verdict("learned", False, 0.0, "no answer to score")
        value = model.probability(rung)
        passed = value >= threshold
        return Verdict("learned", passed, value, f"{value:.3f} (needs {threshold:g})")

    return check


def unfitted(threshold: float) -> Check:
    """The learned check before any acceptance model is fitted: it fails, so that the cascade
    climbs rather than keep an answer that nothing has learnt to trust."""

    def check(rung: RungView) -> Verdict:
        return Verdict(
            "learned", False, None, f"no acceptance model yet, none scored (needs {threshold:g})"
        )

    return check


@dataclass(frozen=True, slots=True)
class Policy:
    """The checks a rung's answer must pass, and the format answers are extracted in."""

    fmt: AnswerFormat
    checks: tuple[Check, ...] = field(default_factory=tuple)

    def judge(self, rung: RungView) -> tuple[bool, tuple[Verdict, ...]]:
        """Accepted when no check fails and one passes; every check's verdict, in order."""
        verdicts = tuple(check(rung) for check in self.checks)
        passed = [v.passed for v in verdicts if v.passed is not None]
        return bool(passed) and all(passed), verdicts


@dataclass(frozen=True, slots=True, kw_only=True)
class Acceptance:
    """The checks a request's cascade applies, each with its setting; None leaves one out.

    By default a rung's answer is kept when it holds an answer of the format and the learned
    score reaches DEFAULT_THRESHOLD.
    """

    agreement: float | None = None
    validity: bool = True
    schema: Mapping[str, Any] | None = None
    confidence: float | None = None
    learned: float | None = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if self.agreement is not None and not 0.0 < self.agreement <= 1.0:
            raise ValueError(f"agreement: min_share must be in (0, 1], got {self.agreement}")
        for name, value in (("confidence", self.confidence), ("learned", self.learned)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {value}")
        if self.schema is not None and not self.validity:
            raise ValueError("validity: a schema needs the validity check")
        if not self.checks:
            raise ValueError("a cascade needs at least one acceptance check")

    @property
    def checks(self) -> tuple[str, ...]:
        """The names of the checks asked for, in the order the policy applies them."""
        asked = {
            "agreement": self.agreement is not None,
            "validity": self.validity,
            "confidence": self.confidence is not None,
            "learned": self.learned is not None,
        }
        return tuple(name for name, on in asked.items() if on)

    def policy(self, fmt: AnswerFormat, model: AcceptanceScorer | None) -> Policy:
        """The policy of these checks; `model` is the learned score (None: not fitted yet)."""
        checks: list[Check] = []
        if self.agreement is not None:
            checks.append(agreement(self.agreement))
        if self.validity:
            checks.append(validity(fmt, self.schema))
        if self.confidence is not None:
            checks.append(confidence(self.confidence))
        if self.learned is not None:
            checks.append(unfitted(self.learned) if model is None else learned(model, self.learned))
        return Policy(fmt, tuple(checks))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, for the record of the request."""
        return {
            "agreement": self.agreement,
            "validity": self.validity,
            "schema": None if self.schema is None else dict(self.schema),
            "confidence": self.confidence,
            "learned": self.learned,
        }


class Action(StrEnum):
    CALL = "call"
    ACCEPT = "accept"


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What the cascade does next: call rung `step`'s models, or accept an answer.

    On accept, `answer` is the canonical answer and `speaker` the reply that gives it (None when
    even the top rung gave no answer); `verdicts` are the checks on the rung just judged.
    """

    action: Action
    step: int
    models: tuple[str, ...] = ()
    answer: str | None = None
    speaker: Attempt | None = None
    verdicts: tuple[Verdict, ...] = ()
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, for the record of each step."""
        return {
            "action": self.action.value,
            "step": self.step,
            "models": list(self.models),
            "answer": self.answer,
            "speaker": self.speaker.model if self.speaker else None,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "reason": self.reason,
        }


def decide(
    ladder: Sequence[Sequence[str]], policy: Policy, prompt: str, attempts: Sequence[Attempt]
) -> Step:
    """The next move given every reply so far: call the first rung, accept, or climb one rung.

    `ladder` lists each rung's models (RouteDecision.cascade's rungs). Only the last rung asked
    is judged: a climb means the rungs below it were not trusted.
    """
    if not ladder:
        raise ValueError("a cascade needs at least one rung")
    if not attempts:
        return Step(action=Action.CALL, step=0, models=tuple(ladder[0]), reason="start")
    step = max(a.step for a in attempts)
    if step >= len(ladder):
        raise ValueError(f"an attempt names rung {step}, the ladder has {len(ladder)}")
    rung = view_of(prompt, policy.fmt, step, attempts)
    accepted, verdicts = policy.judge(rung)
    top = step == len(ladder) - 1
    if accepted or top:
        why = (
            _because(verdicts, accepted)
            if accepted
            else "top of the ladder, " + _because(verdicts, accepted)
        )
        return Step(
            action=Action.ACCEPT,
            step=step,
            answer=rung.answer,
            speaker=rung.speaker,
            verdicts=verdicts,
            reason=why,
        )
    return Step(
        action=Action.CALL,
        step=step + 1,
        models=tuple(ladder[step + 1]),
        verdicts=verdicts,
        reason="escalate: " + _because(verdicts, accepted),
    )


def _because(verdicts: Sequence[Verdict], accepted: bool) -> str:
    if not verdicts:
        return "no check"
    failed = [v for v in verdicts if v.passed is False]
    shown = verdicts if accepted or not failed else failed
    return "; ".join(f"{v.check} {_word(v.passed)}: {v.reason}" for v in shown)


def _word(passed: bool | None) -> str:
    return {True: "passed", False: "failed", None: "abstained"}[passed]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """A finished cascade: the accepted step, and every reply and step on the way."""

    accepted: Step
    attempts: tuple[Attempt, ...]
    steps: tuple[Step, ...]


Ask = Callable[[int, tuple[str, ...]], Sequence[Attempt]]


def run_cascade(ladder: Sequence[Sequence[str]], policy: Policy, prompt: str, ask: Ask) -> Outcome:
    """The thin loop: ask what `decide` says to ask until it accepts.

    `ask(step, models)` returns that rung's replies (recorded ones offline).
    """
    attempts: list[Attempt] = []
    steps: list[Step] = []
    while True:
        step = decide(ladder, policy, prompt, attempts)
        steps.append(step)
        if step.action is Action.ACCEPT:
            return Outcome(accepted=step, attempts=tuple(attempts), steps=tuple(steps))
        attempts.extend(ask(step.step, step.models))


_JSON_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_problem(value: object, schema: Mapping[str, Any], where: str = "$") -> str | None:
    """Why `value` does not meet a JSON Schema, or None when it does.

    The subset a structured answer needs: type, enum, required, properties, items.
    """
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if not any(_JSON_TYPES[k](value) for k in kinds):
            return f"{where} is not {' or '.join(kinds)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} is not one of {schema['enum']}"
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where}.{key} is missing"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problem = schema_problem(value[key], sub, f"{where}.{key}")
                if problem:
                    return problem
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problem = schema_problem(item, schema["items"], f"{where}[{i}]")
            if problem:
                return problem
    return None


def schema_error(schema: Mapping[str, Any], where: str = "$") -> str | None:
    """Why `schema` is not one `schema_problem` can check (an unknown type, a malformed keyword),
    or None when it is."""
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else kind
        if not isinstance(kinds, list) or not all(k in _JSON_TYPES for k in kinds):
            return f"{where}.type: must name JSON types ({', '.join(_JSON_TYPES)})"
    if "enum" in schema and not isinstance(schema["enum"], list):
        return f"{where}.enum: must be an array"
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
        return f"{where}.required: must be an array of names"
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return f"{where}.properties: must be an object"
    nested = [(f"{where}.properties.{k}", v) for k, v in properties.items()]
    if "items" in schema:
        nested.append((f"{where}.items", schema["items"]))
    for path, sub in nested:
        if not isinstance(sub, dict):
            return f"{path}: must be a schema (an object)"
        problem = schema_error(sub, path)
        if problem:
            return problem
    return None
