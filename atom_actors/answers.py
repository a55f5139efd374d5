"""Final answers: extract a number, a choice or a JSON field; normalise free text; compare them.

Every extractor returns a canonical string, so two answers agree exactly when their canonical
forms are equal ("$1,800.00" and "1800" are both "1800"), or None when there is no answer.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

# A number not glued to a word ("H2O", "v3") or to another number's decimal point; thousands
# separators only in groups of three, so "1,234" is one number and "1,2" two.
_NUMBER = re.compile(r"(?<![\w.])-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)")
_CHOICE_AFTER_CUE = re.compile(
    r"(?i:answer)\s*(?i:is)?\s*:?\s*(?i:option\s*)?\(?([A-E])\)?(?![A-Za-z])"
)
_CHOICE_IN_PARENS = re.compile(r"\(([A-Ea-e])\)")
_CHOICE_ALONE = re.compile(r"\W*([A-E])\W*")
_CODE_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def canonical_number(raw: str) -> str | None:
    """A number as one spelling: no "$" or commas, no trailing zeros ("18.0" -> "18")."""
    try:
        value = Decimal(raw.replace(",", "").replace("$", ""))
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def extract_number(text: str) -> str | None:
    """GSM8K style: the first number after the last "####", else the last number in the text."""
    marker = text.rfind("####")
    if marker >= 0:
        found = _NUMBER.search(text, marker + 4)
        return canonical_number(found.group()) if found else None
    numbers = _NUMBER.findall(text)
    return canonical_number(numbers[-1]) if numbers else None


def extract_choice(text: str) -> str | None:
    """A choice letter A-E: after "answer" ("Answer: (B)"), else the last "(b)", else a lone "B"."""
    for pattern in (_CHOICE_AFTER_CUE, _CHOICE_IN_PARENS):
        found = pattern.findall(text)
        if found:
            return str(found[-1]).upper()
    alone = _CHOICE_ALONE.fullmatch(text)
    return alone.group(1) if alone else None


def extract_json_field(text: str, field: str) -> str | None:
    """The field at a dotted path ("result.answer") of a JSON reply, in canonical JSON."""
    value = parse_json(text)
    for key in field.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return canonical_number(repr(value))
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def parse_json(text: str) -> object:
    """The reply as JSON: as it stands, else inside a code fence, else its outermost braces."""
    attempts = [text]
    fenced = _CODE_FENCE.search(text)
    if fenced:
        attempts.append(fenced.group(1))
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        attempts.append(text[start : end + 1])
    for attempt in attempts:
        try:
            return json.loads(attempt)
        except ValueError:
            continue
    return None


def normalize_text(text: str) -> str:
    """Case-folded, punctuation turned to spaces, whitespace collapsed (after NFKC)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    spaced = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in folded)
    return " ".join(spaced.split())


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' sets of normalised words, in [0, 1].

    Identical texts score 1.0 (two empty texts too), texts with no word in common 0.0.
    """
    left, right = set(normalize_text(a).split()), set(normalize_text(b).split())
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


class AnswerKind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    CHOICE = "choice"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class AnswerFormat:
    """What kind of answer a task expects, hence how it is extracted and compared."""

    kind: AnswerKind = AnswerKind.TEXT
    field: str | None = None

    def __post_init__(self) -> None:
        if (self.kind is AnswerKind.JSON) != (self.field is not None):
            raise ValueError("a JSON answer needs a field, and only a JSON answer takes one")

    def extract(self, text: str) -> str | None:
        """The canonical answer in `text`, or None when it holds none."""
        match self.kind:
            case AnswerKind.NUMBER:
                return extract_number(text)
            case AnswerKind.CHOICE:
                return extract_choice(text)
            case AnswerKind.JSON:
                return extract_json_field(text, self.field or "")
            case _:
                return normalize_text(text) or None

    def similarity(self, a: str, b: str) -> float:
        """How alike two canonical answers are: word Jaccard for text, equality otherwise."""
        if self.kind is AnswerKind.TEXT:
            return similarity(a, b)
        return 1.0 if a == b else 0.0

    def describe_missing(self) -> str:
        """Why a reply was left out when it held no answer of this kind."""
        match self.kind:
            case AnswerKind.NUMBER:
                return "no number found"
            case AnswerKind.CHOICE:
                return "no choice letter found"
            case AnswerKind.JSON:
                return f"no JSON field {self.field!r}"
            case _:
                return "empty answer"


FREE_TEXT: Final = AnswerFormat()
