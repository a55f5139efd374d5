"""The request bodies of the model routes: their JSON schemas, and how they become requests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.cascade import DEFAULT_THRESHOLD, Acceptance, schema_error
from atom_actors.catalog import CAPABILITIES
from atom_actors.providers import CallParams, Tool, ToolChoice
from atom_actors.request import ProcessRequest
from atom_actors.snapshot import CascadeSpec, EnsembleMethod, EnsembleSpec, Strategy

from ..errors import BadRequest

STRATEGIES: Final = [s.value for s in Strategy]
METHODS: Final = [m.value for m in EnsembleMethod]

_CONTENT_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["text", "image_url"]},
        "text": {"type": "string"},
        "image_url": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string", "minLength": 1}},
        },
    },
}

_TOOL_CALL = {
    "type": "object",
    "required": ["id", "type", "function"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "type": {"enum": ["function"]},
        "function": {
            "type": "object",
            "required": ["name", "arguments"],
            "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
        },
    },
}

MESSAGES: Final = {
    "type": "array",
    "minItems": 1,
    "maxItems": 1000,
    "items": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"enum": ["system", "user", "assistant", "developer", "tool"]},
            "content": {
                "type": ["string", "array", "null"],
                "maxLength": 1_000_000,
                "items": _CONTENT_PART,
            },
            "name": {"type": "string"},
            # An assistant's calls, and the call a tool message answers.
            "tool_calls": {"type": "array", "maxItems": 128, "items": _TOOL_CALL},
            "tool_call_id": {"type": "string", "minLength": 1},
        },
    },
}

TOOLS: Final = {
    "type": "array",
    "maxItems": 128,
    "items": {
        "type": "object",
        "required": ["type", "function"],
        "properties": {
            "type": {"enum": ["function"]},
            "function": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 64},
                    "description": {"type": "string"},
                    "parameters": {"type": "object"},
                    "strict": {"type": ["boolean", "null"]},
                },
            },
        },
    },
}

ATOM_OPTIONS: Final = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "drop_params": {
            "type": "boolean",
            "description": "leave out the parameters a model's provider cannot honour (the "
            "answer names them) instead of refusing it; also the header X-Atom-Drop-Params: "
            "true",
        }
    },
    "description": "ATOM's own options, beside the provider's parameters",
}
DROP_HEADER: Final = "X-Atom-Drop-Params"

PARAMS: Final[dict[str, Any]] = {
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "stop": {
        "type": ["string", "array"],
        "maxItems": 4,
        "items": {"type": "string", "minLength": 1},
        "minLength": 1,
    },
    "seed": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    "logprobs": {"type": "boolean"},
    "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "logit_bias": {
        "type": "object",
        "maxProperties": 300,
        "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
    },
    "user": {"type": "string", "maxLength": 256},
    "atom": ATOM_OPTIONS,
    "tools": TOOLS,
    "tool_choice": {
        "type": ["string", "object"],
        "description": '"auto", "none", "required", or {"type": "function", "function": '
        '{"name": ...}}',
    },
    "parallel_tool_calls": {"type": "boolean"},
    "response_format": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"enum": ["text", "json_object", "json_schema"]},
            "json_schema": {
                "type": "object",
                "required": ["schema"],
                "properties": {"name": {"type": "string"}, "schema": {"type": "object"}},
            },
        },
    },
}

ENSEMBLE: Final = {
    "type": "object",
    "properties": {
        "method": {"enum": METHODS},
        "models": {"type": "array", "maxItems": 16, "items": {"type": "string", "minLength": 1}},
        "samples": {"type": "integer", "minimum": 1, "maximum": 16},
        "size": {"type": "integer", "minimum": 1, "maximum": 16},
    },
}

_PROBABILITY: Final = {"type": "number", "minimum": 0, "maximum": 1}
_RUNG_SIZE: Final = {"type": "integer", "minimum": 1, "maximum": 16}


def _check(properties: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "description": description,
    }


CASCADE: Final = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "first": {**_RUNG_SIZE, "description": "the cheapest models asked together at rung 1"},
        "samples": {**_RUNG_SIZE, "description": "or samples of the cheapest one at rung 1"},
        "steps": {**_RUNG_SIZE, "description": "at most this many rungs"},
        "checks": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "agreement": _check(
                    {"min_share": {**_PROBABILITY, "description": "above 0; 1 by default"}},
                    "the rung's replies give one answer",
                ),
                "validity": _check(
                    {"schema": {"type": "object"}},
                    "the reply holds an answer of answer_format (and its JSON meets schema)",
                ),
                "confidence": _check(
                    {"min_probability": {**_PROBABILITY, "description": "required"}},
                    "exp(mean token logprob) reaches min_probability",
                ),
                "learned": _check(
                    {
                        "threshold": {
                            **_PROBABILITY,
                            "description": f"{DEFAULT_THRESHOLD} by default",
                        }
                    },
                    "the learned probability that the answer is right reaches threshold",
                ),
            },
            "description": "the checks a rung's answer must pass to be kept, each named with "
            "its settings ({} for the defaults); validity and learned when absent",
        },
    },
    "description": "with strategy cascade: the ladder and its acceptance checks",
}

# What a request for an answer may ask of a model: embeddings answer /v1/embeddings only.
ANSWERING: Final = sorted(CAPABILITIES - {"embeddings"})

CONSTRAINTS: Final = {
    "type": "object",
    "properties": {
        "max_cost_usd": {"type": "number", "minimum": 0, "maximum": 1_000_000},
        "min_quality": {"type": "number", "minimum": 0, "maximum": 1},
        "deadline_ms": {"type": "number", "minimum": 1, "maximum": 3_600_000},
        "capability": {"enum": ANSWERING},
    },
}

_COMMON: Final[dict[str, Any]] = {
    "messages": MESSAGES,
    "prompt": {"type": "string", "minLength": 1, "maxLength": 1_000_000},
    "model": {"type": "string", "minLength": 1},
    "capability": {"enum": ANSWERING},
    "strategy": {"enum": STRATEGIES},
    "stream": {"type": "boolean"},
    "cache": {"type": "boolean", "description": "false bypasses the answer cache"},
    "expected": {"type": "string", "description": "the reference answer, for scoring"},
    "answer_format": {"enum": [k.value for k in AnswerKind]},
    "answer_field": {"type": "string", "minLength": 1},
    "allow": {"type": "array", "items": {"type": "string"}},
    "deny": {"type": "array", "items": {"type": "string"}},
    "cascade": CASCADE,
    **PARAMS,
}

# Unknown fields are refused: a misspelt `max_token` must not be silently ignored.
PROCESS: Final = {
    "type": "object",
    "additionalProperties": False,
    "properties": {**_COMMON, "constraints": CONSTRAINTS},
    "description": "`messages` or `prompt`; `model` names one model, else the router picks "
    "by `capability` and `strategy` (quality_first by default).",
}

ORCHESTRATE: Final = {
    "type": "object",
    "additionalProperties": False,
    "properties": {**_COMMON, "ensemble": ENSEMBLE, "constraints": CONSTRAINTS},
    "description": "`strategy` is one of the seven; `ensemble` fans the request out to several "
    "models (or `samples` of one) and combines their answers with `method`; `cascade` (with "
    "strategy cascade) sets the ladder and the checks that keep a cheaper rung's answer.",
}


def messages_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chat messages of a body: `messages`, else `prompt` as one user message."""
    if "messages" in body:
        messages = [dict(m) for m in body["messages"]]
        for index, message in enumerate(messages):
            _check_message(message, f"messages[{index}]")
        return messages
    if "prompt" in body:
        return [{"role": "user", "content": body["prompt"]}]
    raise BadRequest("give `messages` or `prompt`", field="messages")


def _check_message(message: Mapping[str, Any], path: str) -> None:
    """What the schema cannot say: content is required but for an assistant's tool calls,
    a tool message answers a call, and only an assistant calls."""
    role = message["role"]
    if role == "tool" and "tool_call_id" not in message:
        raise BadRequest(f"{path}.tool_call_id: required", field=f"{path}.tool_call_id")
    if message.get("tool_calls") and role != "assistant":
        raise BadRequest(
            f"{path}.tool_calls: only an assistant calls tools", field=f"{path}.tool_calls"
        )
    if message.get("content") is None and not (role == "assistant" and message.get("tool_calls")):
        raise BadRequest(f"{path}.content: required", field=f"{path}.content")


def params_of(body: Mapping[str, Any]) -> CallParams:
    stop = body.get("stop", ())
    fmt = body.get("response_format")
    if fmt is not None and fmt["type"] == "json_schema" and "json_schema" not in fmt:
        raise BadRequest("response_format.json_schema is required", field="response_format")
    tools = tools_of(body)
    if "top_logprobs" in body and not body.get("logprobs"):
        raise BadRequest("top_logprobs goes with logprobs: true", field="top_logprobs")
    return CallParams(
        max_tokens=body.get("max_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        seed=body.get("seed"),
        logprobs=body.get("logprobs", False),
        top_logprobs=body.get("top_logprobs"),
        presence_penalty=body.get("presence_penalty"),
        frequency_penalty=body.get("frequency_penalty"),
        logit_bias=body.get("logit_bias") or None,
        user=body.get("user"),
        response_format=None if fmt is None or fmt["type"] == "text" else fmt,
        tools=tools,
        tool_choice=tool_choice_of(body, tools),
        parallel_tool_calls=body.get("parallel_tool_calls"),
    )


def tools_of(body: Mapping[str, Any]) -> tuple[Tool, ...]:
    """The tools a body offers (schema-checked already), each name once."""
    tools = tuple(Tool.from_openai(tool) for tool in body.get("tools", ()))
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if tool.name in seen:
            field = f"tools[{index}].function.name"
            raise BadRequest(f"{field}: {tool.name!r} is offered twice", field=field)
        seen.add(tool.name)
    return tools


def tool_choice_of(body: Mapping[str, Any], tools: tuple[Tool, ...]) -> ToolChoice | None:
    if "tool_choice" not in body:
        if "parallel_tool_calls" in body and not tools:
            raise BadRequest(
                "parallel_tool_calls goes with tools, and only with them",
                field="parallel_tool_calls",
            )
        return None
    try:
        choice = ToolChoice.from_openai(body["tool_choice"])
    except ValueError as exc:
        raise BadRequest(f"tool_choice: {exc}", field="tool_choice") from None
    if not tools:
        raise BadRequest("tool_choice goes with tools, and only with them", field="tool_choice")
    if choice.mode == "function" and choice.name not in {tool.name for tool in tools}:
        raise BadRequest(
            f"tool_choice: no tool named {choice.name!r} is offered", field="tool_choice"
        )
    return choice


def drop_params(body: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """Whether the request allows dropping what a model cannot honour: `"atom":
    {"drop_params": true}` in its body, or the header."""
    if body.get("atom", {}).get("drop_params"):
        return True
    return headers.get(DROP_HEADER, "").strip().lower() in ("1", "true", "yes")


def answer_format_of(body: Mapping[str, Any]) -> AnswerFormat:
    kind = AnswerKind(body.get("answer_format", "text"))
    field = body.get("answer_field")
    if (kind is AnswerKind.JSON) != (field is not None):
        raise BadRequest(
            "answer_field goes with answer_format 'json', and only with it", field="answer_field"
        )
    return AnswerFormat(kind, field)


def ensemble_of(body: Mapping[str, Any]) -> EnsembleSpec | None:
    spec = body.get("ensemble")
    if spec is None:
        return None
    return EnsembleSpec(
        EnsembleMethod(spec.get("method", "majority_vote")),
        tuple(spec.get("models", ())),
        spec.get("samples", 1),
        spec.get("size", 3),
    )


def cascade_of(body: Mapping[str, Any]) -> tuple[CascadeSpec | None, Acceptance | None]:
    """A body's cascade ladder and checks; None for what it leaves to the defaults."""
    given = body.get("cascade")
    if given is None:
        return None, None
    if body.get("strategy") != Strategy.CASCADE.value or "model" in body or "ensemble" in body:
        raise BadRequest(
            "cascade goes with strategy 'cascade', without a model or an ensemble",
            field="cascade",
        )
    if given.get("first", 1) > 1 and given.get("samples", 1) > 1:
        raise BadRequest(
            "a cascade starts with several models (first) or several samples, not both",
            field="cascade.samples",
        )
    spec = CascadeSpec(given.get("first", 1), given.get("samples", 1), given.get("steps"))
    checks = given.get("checks")
    if checks is None:
        return spec, None
    agreement = checks.get("agreement")
    if agreement is not None and agreement.get("min_share", 1.0) == 0:
        raise BadRequest(
            "cascade.checks.agreement.min_share: must be above 0",
            field="cascade.checks.agreement.min_share",
        )
    confidence = checks.get("confidence")
    if confidence is not None and "min_probability" not in confidence:
        raise BadRequest(
            "cascade.checks.confidence.min_probability: required",
            field="cascade.checks.confidence.min_probability",
        )
    validity, learned = checks.get("validity"), checks.get("learned")
    schema = None if validity is None else validity.get("schema")
    problem = None if schema is None else schema_error(schema)
    if problem is not None:
        raise BadRequest(
            f"cascade.checks.validity.schema: {problem}", field="cascade.checks.validity.schema"
        )
    return spec, Acceptance(
        agreement=None if agreement is None else agreement.get("min_share", 1.0),
        validity=validity is not None,
        schema=schema,
        confidence=None if confidence is None else confidence["min_probability"],
        learned=None if learned is None else learned.get("threshold", DEFAULT_THRESHOLD),
    )


def process_request(body: Mapping[str, Any], endpoint: str) -> ProcessRequest:
    """The gateway request a body describes (validated against its schema already)."""
    constraints = body.get("constraints", {})
    allow = body.get("allow")
    cascade, acceptance = cascade_of(body)
    return ProcessRequest(
        messages=messages_of(body),
        params=params_of(body),
        model=body.get("model"),
        capability=constraints.get("capability", body.get("capability", "text_generation")),
        strategy=Strategy(body.get("strategy", "quality_first")),
        ensemble=ensemble_of(body),
        cascade=cascade,
        acceptance=acceptance,
        allow=None if allow is None else frozenset(allow),
        deny=frozenset(body.get("deny", ())),
        min_quality=constraints.get("min_quality"),
        max_cost_usd=constraints.get("max_cost_usd"),
        deadline_ms=constraints.get("deadline_ms"),
        expected=body.get("expected"),
        answer_format=answer_format_of(body),
        use_cache=body.get("cache", True),
        endpoint=endpoint,
        stream=body.get("stream", False),
    )
