"""The compiled check of a schema says yes exactly when `validate` does; its errors are
`validate`'s own."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.errors import BadRequest
from api.routes._bodies import ORCHESTRATE, PROCESS
from api.routes.openai_compat import CHAT
from api.validation import Schema, compile_schema, validate, validator
from tests.api.test_validation import SCHEMA

NAMES = [
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "stop",
    "n",
    "max_tokens",
    "temperature",
    "stream",
    "prompt",
    "ensemble",
    "constraints",
    "method",
    "models",
    "image_url",
    "url",
    "name",
    "count",
    "ratio",
    "mode",
    "tags",
    "meta",
    "maybe",
    "x",
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5) | st.floats(-3, 5) | st.text(max_size=6)
    | st.sampled_from(["user", "system", "text", "a", "b", "atom:cost_first"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(NAMES), inner, max_size=5),
    max_leaves=25,
)  # fmt: skip


def passes(schema: Schema, value: Any) -> bool:
    try:
        validate(schema, value)
    except BadRequest:
        return False
    return True


@settings(max_examples=1500)
@given(JSON)
def test_the_compiled_check_agrees_with_validate(value: Any) -> None:
    for schema in (SCHEMA, CHAT, PROCESS, ORCHESTRATE):
        assert compile_schema(schema)(value) == passes(schema, value)
        if isinstance(value, dict):
            # Near-valid bodies, so that the deeper fields are reached too.
            message = {"role": "user", "content": value.get("content", "hi")}
            body = {**value, "model": "m", "messages": [message]}
            assert compile_schema(schema)(body) == passes(schema, body)


def test_a_validator_raises_the_error_validate_raises() -> None:
    check = validator(SCHEMA)
    check({"name": "a", "tags": ["x"]})
    with pytest.raises(BadRequest) as refused:
        check({"name": "a", "tags": ["x", 1]})
    assert (refused.value.message, refused.value.field) == ("tags[1]: expected string", "tags[1]")
    assert validator(SCHEMA) is check
