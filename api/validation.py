"""Request bodies checked against the JSON schemas that routes declare (the subset they use).

Supported keywords: type, properties, required, additionalProperties, minProperties,
maxProperties, items, minItems, maxItems, enum, minLength, maxLength, minimum, maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final

from .errors import BadRequest

Schema = Mapping[str, Any]

_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is(value: Any, name: str) -> bool:
    # bool is an int to Python but not to JSON.
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    # As in JSON Schema, 2.0 is an integer: handlers take int() of what they read.
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _fail(path: str, message: str) -> BadRequest:
    return BadRequest(f"{path or 'body'}: {message}", field=path or None)


def validate(schema: Schema, value: Any, path: str = "") -> None:
    """Raise BadRequest naming the first field of `value` that `schema` refuses."""
    expected = schema.get("type")
    if expected is not None:
        names = [expected] if isinstance(expected, str) else list(expected)
        if not any(_is(value, name) for name in names):
            raise _fail(path, f"expected {' or '.join(names)}")
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        options = ", ".join(repr(option) for option in schema["enum"])
        raise _fail(path, f"must be one of {options}")
    if isinstance(value, str):
        _check_string(schema, value, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, path)
    elif isinstance(value, list):
        _check_array(schema, value, path)
    elif isinstance(value, dict):
        _check_object(schema, value, path)


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _check_string(schema: Schema, value: str, path: str) -> None:
    if len(value) < schema.get("minLength", 0):
        raise _fail(path, f"must be at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise _fail(path, f"must be at most {schema['maxLength']} characters")


def _check_number(schema: Schema, value: float, path: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise _fail(path, f"must be at least {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise _fail(path, f"must be at most {schema['maximum']}")


def _check_array(schema: Schema, value: list[Any], path: str) -> None:
    if len(value) < schema.get("minItems", 0):
        raise _fail(path, f"must have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise _fail(path, f"must have at most {schema['maxItems']} items")
    items = schema.get("items")
    if items is not None:
        for index, item in enumerate(value):
            validate(items, item, _join(path, index))


def _check_object(schema: Schema, value: dict[str, Any], path: str) -> None:
    for name in schema.get("required", ()):
        if name not in value:
            raise _fail(_join(path, name), "required")
    if len(value) < schema.get("minProperties", 0):
        raise _fail(path, f"must have at least {schema['minProperties']} fields")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise _fail(path, f"must have at most {schema['maxProperties']} fields")
    properties: Mapping[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            validate(properties[name], item, _join(path, name))
        elif extra is False:
            raise _fail(_join(path, name), "unknown field")
        elif isinstance(extra, Mapping):
            validate(extra, item, _join(path, name))


Check = Callable[[Any], bool]

_TYPE_CHECKS: Final[dict[str, Check]] = {name: partial(_is, name=name) for name in _TYPES}
_COMPILED: dict[int, tuple[Schema, Callable[[Any], None]]] = {}


def validator(schema: Schema) -> Callable[[Any], None]:
    """`validate` against one schema, compiled once: a fast yes/no check first, and only when
    that says no, `validate` itself, for its error naming the field."""
    known = _COMPILED.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    check = compile_schema(schema)

    def run(value: Any) -> None:
        if not check(value):
            validate(schema, value)

    # The schema is kept with its validator, so that its id is never reused for another.
    _COMPILED[id(schema)] = (schema, run)
    return run


def compile_schema(schema: Schema) -> Check:
    """A check of `schema` as closures: true exactly when `validate` would pass the value."""
    expected = schema.get("type")
    names = [] if expected is None else [expected] if isinstance(expected, str) else expected
    types = [_TYPE_CHECKS[name] for name in names]
    single = types[0] if len(types) == 1 else None
    enum = list(schema["enum"]) if "enum" in schema else None
    min_length, max_length = schema.get("minLength", 0), schema.get("maxLength")
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    min_items, max_items = schema.get("minItems", 0), schema.get("maxItems")
    items = None if schema.get("items") is None else compile_schema(schema["items"])
    required = tuple(schema.get("required", ()))
    min_properties, max_properties = schema.get("minProperties", 0), schema.get("maxProperties")
    properties = {name: compile_schema(s) for name, s in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    extra_check = compile_schema(extra) if isinstance(extra, Mapping) else None

    def check_object(value: dict[str, Any]) -> bool:
        if any(name not in value for name in required):
            return False
        count = len(value)
        if count < min_properties or (max_properties is not None and count > max_properties):
            return False
        for name, item in value.items():
            field = properties.get(name)
            if field is not None:
                if not field(item):
                    return False
            elif extra is False or (extra_check is not None and not extra_check(item)):
                return False
        return True

    def check(value: Any) -> bool:
        if single is not None:
            if not single(value):
                return False
        elif types and not any(t(value) for t in types):
            return False
        if enum is not None and not any(_same(value, option) for option in enum):
            return False
        if isinstance(value, str):
            return len(value) >= min_length and (max_length is None or len(value) <= max_length)
        if isinstance(value, bool):
            return True
        if isinstance(value, int | float):
            return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
        if isinstance(value, list):
            if len(value) < min_items or (max_items is not None and len(value) > max_items):
                return False
            return items is None or all(items(item) for item in value)
        if isinstance(value, dict):
            return check_object(value)
        return True

    return check
