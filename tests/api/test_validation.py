"""Body validation names the first field the schema refuses."""

from __future__ import annotations

from typing import Any

import pytest

from api.errors import BadRequest
from api.validation import validate

SCHEMA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5},
        "count": {"type": "integer", "minimum": 1, "maximum": 3},
        "ratio": {"type": "number"},
        "mode": {"enum": ["a", "b"]},
        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
        "meta": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "integer"}},
        "maybe": {"type": ["string", "null"]},
    },
}


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ({}, "name", "name: required"),
        ({"name": ""}, "name", "name: must be at least 1 characters"),
        ({"name": "toolong"}, "name", "name: must be at most 5 characters"),
        ({"name": "a", "count": True}, "count", "count: expected integer"),
        ({"name": "a", "count": 1.5}, "count", "count: expected integer"),
        ({"name": "a", "count": 4.0}, "count", "count: must be at most 3"),
        ({"name": "a", "count": 4}, "count", "count: must be at most 3"),
        ({"name": "a", "ratio": "1"}, "ratio", "ratio: expected number"),
        ({"name": "a", "mode": "c"}, "mode", "mode: must be one of 'a', 'b'"),
        ({"name": "a", "tags": ["x", 1]}, "tags[1]", "tags[1]: expected string"),
        ({"name": "a", "tags": ["x", "y", "z"]}, "tags", "tags: must have at most 2 items"),
        ({"name": "a", "meta": {"k": "v"}}, "meta.k", "meta.k: expected integer"),
        ({"name": "a", "meta": {"k": 1, "j": 2}}, "meta", "meta: must have at most 1 fields"),
        ({"name": "a", "maybe": 3}, "maybe", "maybe: expected string or null"),
        ({"name": "a", "other": 1}, "other", "other: unknown field"),
        ([], None, "body: expected object"),
    ],
)
def test_the_first_refused_field_is_named(value: Any, field: str | None, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        validate(SCHEMA, value)
    assert (refused.value.field, refused.value.message) == (field, message)


def test_valid_values_pass() -> None:
    validate(SCHEMA, {"name": "a", "count": 2, "ratio": 1, "mode": "b", "maybe": None})
    validate(SCHEMA, {"name": "a", "count": 2.0})
    validate(SCHEMA, {"name": "abcde", "tags": [], "meta": {"k": -1}, "ratio": 0.5})
    validate({"enum": [1]}, 1.0)
    with pytest.raises(BadRequest):
        validate({"enum": [1]}, True)
