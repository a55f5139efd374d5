from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atom_actors.answers import (
    AnswerFormat,
    AnswerKind,
    extract_choice,
    extract_json_field,
    extract_number,
    normalize_text,
    similarity,
)

words = st.text(alphabet="abcdefghij", min_size=1, max_size=6)


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
        ("#### 1,800", "1800"),
        ("It costs $18.00 in total.", "18"),
        ("18.0", "18"),
        ("We get 3 - 8 = -5, so the answer is -5.", "-5"),
        ("#### 18 (after 3 steps)", "18"),
        ("Between 3-5 days", "5"),
        ("0.50 of it", "0.5"),
    ],
)
def test_numbers_are_extracted_and_compared_by_value(text: str, same_as: str) -> None:
    assert extract_number(text) is not None
    assert extract_number(text) == extract_number(same_as)


def test_the_gsm8k_marker_wins_over_later_numbers() -> None:
    assert extract_number("#### 42\nChecked in 3 steps, 7 seconds.") == extract_number("42")


def test_the_last_number_is_taken_without_a_marker() -> None:
    assert extract_number("First 12, then 15, finally 19.") == extract_number("19")


@pytest.mark.parametrize("text", ["no digits at all", "#### unknown", "H2O and v3 and x86"])
def test_no_number_gives_none(text: str) -> None:
    assert extract_number(text) is None


def test_thousands_separators_only_group_by_three() -> None:
    assert extract_number("1,234,567") == extract_number("1234567")
    assert extract_number("pick 1,2") == extract_number("2")


@given(st.integers(-(10**9), 10**9))
def test_every_spelling_of_an_integer_is_the_same_answer(n: int) -> None:
    spellings = [str(n), f"{n}.0", f"{n}.00", f"#### {n:,}", f"The total is {n}."]
    if n >= 0:
        spellings.append(f"${n:,}.00")
    assert len({extract_number(s) for s in spellings}) == 1


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("Answer: (B)", "B"),
        ("The answer is C.", "C"),
        ("I rule out (a) and (d). The answer is option E", "E"),
        ("Options: (A) 3 (B) 4 (C) 5. Answer: B", "B"),
        ("after some thought, (d)", "D"),
        ("**A**", "A"),
        ("B", "B"),
    ],
)
def test_choice_letters(text: str, letter: str) -> None:
    assert extract_choice(text) == letter


@pytest.mark.parametrize("text", ["The answer is a good one", "Nothing to choose", "F"])
def test_no_choice_gives_none(text: str) -> None:
    assert extract_choice(text) is None


def test_json_fields_by_dotted_path() -> None:
    reply = '{"result": {"answer": 18.0, "steps": ["a", "b"]}, "ok": true}'
    assert extract_json_field(reply, "result.answer") == extract_number("18")
    assert extract_json_field(reply, "result.steps.1") == "b"
    assert extract_json_field(reply, "ok") == "true"
    assert extract_json_field(reply, "result.missing") is None
    assert extract_json_field(reply, "result.steps.9") is None


def test_json_is_found_in_a_code_fence_or_among_prose() -> None:
    fenced = 'Here you are:\n```json\n{"city": " Paris "}\n```'
    prose = 'The result is {"city": "Paris"} as requested.'
    assert extract_json_field(fenced, "city") == extract_json_field(prose, "city") == "Paris"


def test_a_reply_that_is_not_json_has_no_field() -> None:
    assert extract_json_field("Paris, I think.", "city") is None


def test_objects_in_json_compare_regardless_of_key_order() -> None:
    one = extract_json_field('{"a": {"x": 1, "y": 2}}', "a")
    other = extract_json_field('{"a": {"y": 2, "x": 1}}', "a")
    assert one == other is not None


def test_normalisation_ignores_case_whitespace_and_punctuation() -> None:
    assert normalize_text("  The  Eiffel Tower, in PARIS! ") == normalize_text(
        "the eiffel tower in paris"
    )
    assert normalize_text("end.Start") == normalize_text("end start")
    assert normalize_text("...") == ""


@given(st.text(max_size=40))
def test_a_text_is_identical_to_itself(text: str) -> None:
    assert similarity(text, text) == 1.0


@given(st.text(max_size=40), st.text(max_size=40))
def test_similarity_is_symmetric_and_bounded(a: str, b: str) -> None:
    assert similarity(a, b) == similarity(b, a)
    assert 0.0 <= similarity(a, b) <= 1.0


@given(st.sets(words, min_size=1, max_size=5), st.sets(words, min_size=1, max_size=5))
def test_texts_without_a_common_word_score_zero(left: set[str], right: set[str]) -> None:
    right -= left
    if right:
        assert similarity(" ".join(left), " ".join(right).upper()) == 0.0


def test_similarity_grows_with_shared_words() -> None:
    base = "the capital of france is paris"
    assert similarity(base, "Paris is the capital of France.") == 1.0
    assert similarity(base, "the capital of france is lyon") > similarity(base, "lyon is big")
    assert similarity("", "something") == 0.0


def test_a_json_format_needs_a_field() -> None:
    with pytest.raises(ValueError):
        AnswerFormat(AnswerKind.JSON)
    with pytest.raises(ValueError):
        AnswerFormat(AnswerKind.NUMBER, field="answer")


def test_formats_compare_exactly_except_free_text() -> None:
    number = AnswerFormat(AnswerKind.NUMBER)
    assert number.similarity("18", "18") == 1.0
    assert number.similarity("18", "19") == 0.0
    text = AnswerFormat()
    assert 0.0 < text.similarity("paris is big", "paris is small") < 1.0
    assert text.extract(" ?! ") is None
