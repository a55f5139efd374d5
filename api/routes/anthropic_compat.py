"""Anthropic-compatible routes: the Messages API in front of every configured model.

`model` is a configured model or a router alias, as on the OpenAI route, so an Anthropic
client can be answered by an OpenAI-format or local model, and the reverse. The request is
translated to the gateway's (OpenAI-shaped) messages and parameters; the answer, its usage and
its stop reason back to Anthropic's shapes. Errors answer in Anthropic's shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

import orjson
from aiohttp import web

from atom_actors.calls import call_prompt_size
from atom_actors.providers import (
    CallParams,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    tool_call_deltas,
)
from atom_actors.providers._messages import to_openai, tool_choice_to_openai, tools_to_openai
from atom_actors.request import GatewayError, ProcessRequest, ProcessResult

from ..auth import Role
from ..errors import BadRequest, NotFound, Shape, anthropic_error_body
from ..routing import BODY, PRINCIPAL, Route, json_response
from ._bodies import ATOM_OPTIONS, drop_params
from ._gateway import GATEWAY_ERRORS, failure, gateway_of, remember
from ._outbox import SSE_HEADERS, Outbox
from .openai_compat import PREFIX, dropped, dropped_header, target

_TEXT_BLOCK = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"enum": ["text"]}, "text": {"type": "string"}},
}
_BLOCK = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["text", "image", "tool_use", "tool_result"]},
        "text": {"type": "string"},
        "source": {"type": "object"},
        "id": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
        "input": {"type": "object"},
        "tool_use_id": {"type": "string", "minLength": 1},
        "content": {"type": ["string", "array"]},
        "is_error": {"type": "boolean"},
    },
}
_MESSAGES = {
    "type": "array",
    "minItems": 1,
    "maxItems": 1000,
    "items": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": ["user", "assistant"]},
            "content": {
                "type": ["string", "array"],
                "maxLength": 1_000_000,
                "minItems": 1,
                "items": _BLOCK,
            },
        },
    },
}
_TOOLS = {
    "type": "array",
    "maxItems": 128,
    "items": {
        "type": "object",
        "required": ["name", "input_schema"],
        "properties": {
            "type": {"enum": ["custom"]},
            "name": {"type": "string", "minLength": 1, "maxLength": 64},
            "description": {"type": "string"},
            "input_schema": {"type": "object"},
        },
    },
}
_TOOL_CHOICE = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["auto", "any", "tool", "none"]},
        "name": {"type": "string", "minLength": 1},
        "disable_parallel_tool_use": {"type": "boolean"},
    },
}
_PROMPT: Final[dict[str, Any]] = {
    "model": {"type": "string", "minLength": 1},
    "messages": _MESSAGES,
    "system": {"type": ["string", "array"], "items": _TEXT_BLOCK},
    "tools": _TOOLS,
    "tool_choice": _TOOL_CHOICE,
}

# Unknown fields are refused by name: a parameter this gateway does not speak (thinking,
# service_tier, ...) is never silently ignored.
MESSAGES_BODY: Final = {
    "type": "object",
    "required": ["model", "max_tokens", "messages"],
    "additionalProperties": False,
    "properties": {
        **_PROMPT,
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "stop_sequences": {
            "type": "array",
            "maxItems": 4,
            "items": {"type": "string", "minLength": 1},
        },
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 1_000},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"user_id": {"type": ["string", "null"], "maxLength": 256}},
        },
        "stream": {"type": "boolean"},
        "atom": ATOM_OPTIONS,
    },
}
COUNT_BODY: Final = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": False,
    "properties": _PROMPT,
}
MESSAGE: Final = {
    "type": "object",
    "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
    "properties": {
        "id": {"type": "string"},
        "type": {"enum": ["message"]},
        "role": {"enum": ["assistant"]},
        "model": {"type": "string"},
        "content": {"type": "array", "items": {"type": "object"}},
        "stop_reason": {"type": ["string", "null"]},
        "stop_sequence": {"type": ["string", "null"]},
        "usage": {"type": "object"},
    },
}
COUNT: Final = {
    "type": "object",
    "required": ["input_tokens"],
    "properties": {"input_tokens": {"type": "integer"}},
}

# The gateway's finish reasons (OpenAI's) as Anthropic's stop reasons.
STOP_REASONS: Final = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def _prompt_of(body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], CallParams]:
    """The gateway's messages, and the tool parameters, of an Anthropic body."""
    try:
        messages = to_openai(body.get("system"), body["messages"])
    except ValueError as exc:
        raise BadRequest(f"messages: {exc}", field="messages") from None
    try:
        tools = tools_to_openai(body.get("tools", ()))
    except ValueError as exc:
        raise BadRequest(f"tools: {exc}", field="tools") from None
    choice: ToolChoice | None = None
    parallel = None
    if "tool_choice" in body:
        if body["tool_choice"]["type"] == "tool" and "name" not in body["tool_choice"]:
            raise BadRequest("tool_choice.name: required for type tool", field="tool_choice.name")
        choice, parallel = tool_choice_to_openai(body["tool_choice"])
        if choice.mode == "function" and choice.name not in {tool.name for tool in tools}:
            field = "tool_choice.name"
            raise BadRequest(f"{field}: no tool named {choice.name!r} is offered", field=field)
        if not tools:
            raise BadRequest("tool_choice goes with tools, and only with them", field="tool_choice")
    return messages, CallParams(tools=tools, tool_choice=choice, parallel_tool_calls=parallel)


def messages_request(body: Mapping[str, Any]) -> ProcessRequest:
    """The gateway request of an Anthropic Messages body."""
    messages, tools = _prompt_of(body)
    stop = tuple(body.get("stop_sequences", ()))
    params = CallParams(
        max_tokens=body["max_tokens"],
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        top_k=body.get("top_k"),
        stop=stop,
        user=(body.get("metadata") or {}).get("user_id"),
        tools=tools.tools,
        tool_choice=tools.tool_choice,
        parallel_tool_calls=tools.parallel_tool_calls,
    )
    return ProcessRequest(
        messages=messages,
        params=params,
        endpoint="v1/messages",
        stream=body.get("stream", False),
        **target(body["model"]),
    )


def stop_reason(result: ProcessResult) -> str:
    if result.finish_reason == "stop" and result.stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(result.finish_reason, "end_turn")


def _usage(result: ProcessResult) -> dict[str, int]:
    return {"input_tokens": result.prompt_tokens, "output_tokens": result.completion_tokens}


def _input(call: ToolCall) -> dict[str, Any]:
    """A call's arguments as Anthropic's input object; arguments that are not a JSON object
    (a model may write broken JSON) are kept whole under "arguments"."""
    try:
        value = call.parsed_arguments()
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"arguments": call.arguments}


def _tool_use(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call)}


def message(result: ProcessResult, asked: str) -> dict[str, Any]:
    """The answer in Anthropic's shape: a text block (unless it only calls tools), then one
    tool_use block per call."""
    content: list[dict[str, Any]] = []
    if result.text or not result.tool_calls:
        content.append({"type": "text", "text": result.text})
    content.extend(_tool_use(call) for call in result.tool_calls)
    return {
        "id": f"msg_{result.request_id}",
        "type": "message",
        "role": "assistant",
        "model": asked if asked.startswith(PREFIX) else result.model,
        "content": content,
        "stop_reason": stop_reason(result),
        "stop_sequence": result.stop_sequence,
        "usage": _usage(result),
        **dropped(result),
    }


def _event(kind: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class _Events:
    """Anthropic's stream of events for one answer, from its text and tool-call pieces as they
    come: message_start, then per content block its start, deltas and stop, then
    message_delta (the stop reason and the usage) and message_stop; ping after the first
    block opens."""

    def __init__(self, message_id: str, model: str, input_tokens: int) -> None:
        self._message_id = message_id
        self._model = model
        self._input_tokens = input_tokens
        self._index = -1
        self._open: str | None = None
        self.started = False

    def text(self, text: str) -> bytes:
        out = self._start() if not self.started else b""
        if self._open != "text":
            out += self._block({"type": "text", "text": ""}, "text")
        delta = {"type": "text_delta", "text": text}
        return out + self._delta(delta)

    def tool_call(self, piece: ToolCallDelta) -> bytes:
        out = self._start() if not self.started else b""
        if piece.id is not None or self._open != "tool_use":
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": piece.id,
                "name": piece.name,
                "input": {},
            }
            out += self._block(block, "tool_use")
        if piece.arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": piece.arguments})
        return out

    def whole(self, result: ProcessResult) -> bytes:
        """The events of an answer that did not stream piece by piece (an ensemble's)."""
        out = self._start()
        if result.text or not result.tool_calls:
            out += self.text(result.text)
        for piece in tool_call_deltas(result.tool_calls):
            out += self.tool_call(piece)
        return out

    def end(self, result: ProcessResult) -> bytes:
        out = self._close()
        delta = {"stop_reason": stop_reason(result), "stop_sequence": result.stop_sequence}
        out += _event("message_delta", {"type": "message_delta", "delta": delta,
                                         "usage": _usage(result), **dropped(result)})  # fmt: skip
        return out + _event("message_stop", {"type": "message_stop"})

    def _start(self) -> bytes:
        self.started = True
        start: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The gateway's estimate: message_delta carries the provider's count at the end.
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": start})

    def _block(self, block: Mapping[str, Any], kind: str) -> bytes:
        out = self._close()
        self._index += 1
        self._open = kind
        out += _event(
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )
        return out + (_event("ping", {"type": "ping"}) if self._index == 0 else b"")

    def _delta(self, delta: Mapping[str, Any]) -> bytes:
        data = {"type": "content_block_delta", "index": self._index, "delta": delta}
        return _event("content_block_delta", data)

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._index})


async def create_message(request: web.Request) -> web.StreamResponse:
    body = request[BODY]
    gateway = gateway_of(request)
    req = messages_request(body)
    if drop_params(body, request.headers):
        req = replace(req, drop_params=True)
    if req.model is not None and req.model not in gateway.actors.specs:
        raise NotFound(f"no model named {req.model!r}")
    if not req.stream:
        try:
            result = await gateway.process(req, request[PRINCIPAL])
        except GatewayError as exc:
            raise failure(request, exc) from None
        remember(request, result)
        return json_response(message(result, body["model"]), headers=dropped_header(result))
    return await _stream(request, req, body["model"])


async def _stream(request: web.Request, req: ProcessRequest, model: str) -> web.StreamResponse:
    gateway = gateway_of(request)
    request_id = str(uuid.uuid4())
    estimate = call_prompt_size(req.messages, req.params).estimate
    events = _Events(f"msg_{request_id}", model, estimate)
    # Opened with the first event: a request refused before any token gets its own status.
    outbox = Outbox(request, SSE_HEADERS)

    def on_token(_member: str, text: str, _ms: float) -> None:
        outbox.put(events.text(text))

    def on_tool_call(_member: str, piece: ToolCallDelta, _ms: float) -> None:
        outbox.put(events.tool_call(piece))

    # An ensemble's or a cascade's answer is known only once its calls are in: it goes whole.
    single = not req.combines
    producing = gateway.process(
        req,
        request[PRINCIPAL],
        on_token if single else None,
        request_id,
        on_tool_call if single and req.params.tools else None,
    )
    response = outbox.response
    try:
        result = await outbox.serve(producing)
    except GatewayError as exc:
        error = failure(request, exc)
        if not response.prepared:
            raise error from None
        data = anthropic_error_body(error.anthropic_type, error.message, error.details())
        await response.write(b"event: error\ndata: " + data + b"\n\n")
        await response.write_eof()
        return response
    remember(request, result)
    if not response.prepared:
        await response.prepare(request)
        await response.write(events.whole(result))
    # Sent after the request's events are committed: nothing is answered off the record.
    await response.write(events.end(result))
    await response.write_eof()
    return response


async def count_tokens(request: web.Request) -> web.Response:
    """The gateway's own count of a prompt's tokens: its estimate, as routing uses it."""
    body = request[BODY]
    gateway = gateway_of(request)
    model = target(body["model"]).get("model")
    if model is not None and model not in gateway.actors.specs:
        raise NotFound(f"no model named {model!r}")
    messages, params = _prompt_of(body)
    return json_response({"input_tokens": call_prompt_size(messages, params).estimate})


ROUTES: Final = (
    Route(
        "POST",
        "/v1/messages",
        create_message,
        role=Role.USER,
        summary="Anthropic-compatible Messages API (streamed or not)",
        description=__doc__ or "",
        body=MESSAGES_BODY,
        response=MESSAGE,
        errors=GATEWAY_ERRORS,
        streams=True,
        tag="anthropic",
        error_shape=Shape.ANTHROPIC,
    ),
    Route(
        "POST",
        "/v1/messages/count_tokens",
        count_tokens,
        role=Role.USER,
        summary="Anthropic-compatible token count of a prompt (the gateway's own estimate)",
        body=COUNT_BODY,
        response=COUNT,
        errors=(404, 503),
        tag="anthropic",
        error_shape=Shape.ANTHROPIC,
    ),
)
