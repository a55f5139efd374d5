"""A fake Anthropic Messages upstream, as strict as api.anthropic.com about what it accepts."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.faults import Behaviour
from tests.fakes.server import BadRequest, Call, FakeServer, Frames, sse
from tests.fakes.text import Completion, Ending, MadeCall, ToolOffer, count_prompt_tokens

_STOP_REASONS = {
    Ending.END: "end_turn",
    Ending.STOP_SEQUENCE: "stop_sequence",
    Ending.MAX_TOKENS: "max_tokens",
    Ending.TOOL_CALLS: "tool_use",
}
_CHOICES = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


class FakeAnthropic(FakeServer):
    """POST /v1/messages (JSON or SSE); refuses what the real API refuses, e.g. unmerged turns."""

    malformed_frame = b"event: content_block_delta\ndata: {not json\n\n"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._ids = itertools.count(1)
        self._call_ids = (f"toolu_fake{n}" for n in itertools.count(1))

    def tool_call_ids(self) -> Iterator[str]:
        return self._call_ids

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self.generate)]

    def authorized(self, request: web.Request) -> bool:
        # The API takes an x-api-key header; recent SDKs send the same key as a bearer token.
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        key = request.headers.get("x-api-key") or bearer
        return bool(key) and (self.api_key is None or key == self.api_key)

    def parse(self, request: web.Request, body: Any) -> Call:
        if "anthropic-version" not in request.headers:
            raise BadRequest("anthropic-version: header is required")
        model, max_tokens, messages = (
            body.get("model"),
            body.get("max_tokens"),
            body.get("messages"),
        )
        if not isinstance(model, str) or not model:
            raise BadRequest("model: Field required")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise BadRequest("max_tokens: Field required")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: at least one message is required")
        texts = _system_texts(body.get("system"))
        images = 0
        prompt = ""
        previous = None
        calls: set[str] = set()
        for index, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                raise BadRequest(f"messages.{index}.role: Input should be 'user' or 'assistant'")
            if role == previous:
                raise BadRequest("messages: roles must alternate between 'user' and 'assistant'")
            previous = role
            content = message.get("content")
            message_texts, message_images = _content(content, index, role)
            texts.extend(message_texts)
            images += message_images
            calls = _check_tool_pairs(content, index, role, calls)
            if role == "user":
                prompt = " ".join(message_texts)
        if calls:
            raise BadRequest(
                "messages: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(sorted(calls))}"
            )
        tools = _tool_offer(body)
        if tools is not None:
            texts.append(orjson.dumps(body["tools"]).decode())
        last = messages[-1].get("content")
        after_result = isinstance(last, list) and any(
            block.get("type") == "tool_result" for block in last
        )
        stop = body.get("stop_sequences") or []
        if not all(isinstance(s, str) for s in stop):
            raise BadRequest("stop_sequences: Input should be a list of strings")
        return Call(
            model=model,
            stream=bool(body.get("stream")),
            prompt=prompt,
            prompt_tokens=count_prompt_tokens(texts, len(messages), images),
            max_tokens=max_tokens,
            stop=tuple(stop),
            tools=tools,
            after_result=after_result,
        )

    def answer(self, call: Call, completion: Completion, behaviour: Behaviour) -> Mapping[str, Any]:
        # A text block, unless the answer only calls tools.
        texted = bool(completion.tokens) or not completion.calls
        content = [{"type": "text", "text": completion.text}] if texted else []
        content.extend(_tool_use(made, orjson.loads(made.arguments)) for made in completion.calls)
        return {
            **self._message(call),
            "content": content,
            "stop_reason": _STOP_REASONS[completion.ending],
            "stop_sequence": completion.stop_sequence,
            "usage": {**_input_usage(call, behaviour), "output_tokens": completion.output_tokens},
        }

    def frames(self, call: Call, completion: Completion, behaviour: Behaviour) -> Frames:
        start = {
            **self._message(call),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**_input_usage(call, behaviour), "output_tokens": 1},
        }
        # A text block opens the answer, unless it only calls tools.
        texted = bool(completion.tokens) or not completion.calls
        head = sse({"type": "message_start", "message": start}, "message_start")
        if texted:
            head += _block_start(0, {"type": "text", "text": ""})
        head += sse({"type": "ping"}, "ping")
        tokens = [_block_delta(0, {"type": "text_delta", "text": t}) for t in completion.tokens]
        for index, made in enumerate(completion.calls, start=int(texted)):
            # Each call's block starts with empty input, and the input streams in pieces.
            opening = _block_stop(index - 1) if index else b""
            tokens.append(
                opening
                + _block_start(index, _tool_use(made, {}))
                + _block_delta(index, {"type": "input_json_delta", "partial_json": ""})
            )
            # A call without arguments streams no input at all, only the empty piece above.
            pieces = made.pieces if made.arguments != "{}" else ()
            tokens.extend(
                _block_delta(index, {"type": "input_json_delta", "partial_json": piece})
                for piece in pieces
            )
        stop = {
            "stop_reason": _STOP_REASONS[completion.ending],
            "stop_sequence": completion.stop_sequence,
        }
        last_block = len(completion.calls) + int(texted) - 1
        tail = (
            _block_stop(last_block)
            + sse(
                {
                    "type": "message_delta",
                    "delta": stop,
                    "usage": {"output_tokens": completion.output_tokens},
                },
                "message_delta",
            )
            + sse({"type": "message_stop"}, "message_stop")
        )
        return Frames(head=head, tokens=tokens, tail=tail)

    def error_body(self, status: int, message: str) -> Mapping[str, Any]:
        kind = _ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def error_frame(self, status: int) -> bytes:
        return sse(self.error_body(status, "Overloaded"), "error")

    def _message(self, call: Call) -> dict[str, Any]:
        return {
            "id": f"msg_fake{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
        }


def _block_start(index: int, block: Mapping[str, Any]) -> bytes:
    return sse(
        {"type": "content_block_start", "index": index, "content_block": block},
        "content_block_start",
    )


def _block_delta(index: int, delta: Mapping[str, Any]) -> bytes:
    return sse(
        {"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"
    )


def _block_stop(index: int) -> bytes:
    return sse({"type": "content_block_stop", "index": index}, "content_block_stop")


def _tool_use(made: MadeCall, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": made.id, "name": made.name, "input": arguments}


def _tool_offer(body: Mapping[str, Any]) -> ToolOffer | None:
    """The request's tools and tool_choice, refused as the API refuses them."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None:
        if choice is not None:
            raise BadRequest("tool_choice: may only be specified while providing tools")
        return None
    names = []
    for index, tool in enumerate(tools if isinstance(tools, list) else [None]):
        schema = tool.get("input_schema") if isinstance(tool, dict) else None
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise BadRequest(f"tools.{index}.input_schema: Field required, of type 'object'")
        if not isinstance(tool.get("name"), str):
            raise BadRequest(f"tools.{index}.name: Field required")
        names.append(tool["name"])
    if choice is None:
        return ToolOffer(tuple(names))
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in _CHOICES:
        raise BadRequest("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    forced = choice.get("name") if kind == "tool" else None
    if kind == "tool" and forced not in names:
        raise BadRequest(f"tool_choice.name: no tool named {forced!r}")
    parallel = not choice.get("disable_parallel_tool_use", False)
    return ToolOffer(tuple(names), _CHOICES[kind], forced, parallel)


def _check_tool_pairs(content: Any, index: int, role: str, waiting: set[str]) -> set[str]:
    """Each tool_use is answered by a tool_result in the next user turn, first in it; returns
    the calls this turn leaves waiting."""
    blocks = content if isinstance(content, list) else []
    if role == "assistant":
        return {block["id"] for block in blocks if block.get("type") == "tool_use"}
    results = [block for block in blocks if block.get("type") == "tool_result"]
    kinds = [block.get("type") for block in blocks]
    if results and kinds[: len(results)] != ["tool_result"] * len(results):
        raise BadRequest(
            f"messages.{index}: tool_result blocks must come first in the user message"
        )
    answered = {block["tool_use_id"] for block in results}
    if unknown := answered - waiting:
        raise BadRequest(
            f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` "
            f"blocks: {', '.join(sorted(unknown))}. Each `tool_result` block must have a "
            "corresponding `tool_use` block in the previous message."
        )
    if waiting - answered:
        raise BadRequest(
            "messages: `tool_use` ids were found without `tool_result` blocks immediately "
            f"after: {', '.join(sorted(waiting - answered))}"
        )
    return set()


def _input_usage(call: Call, behaviour: Behaviour) -> dict[str, int]:
    """Anthropic counts cached prompt tokens apart from input_tokens."""
    return {
        "input_tokens": call.prompt_tokens - behaviour.cached_prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": behaviour.cached_prompt_tokens,
    }


def _system_texts(system: Any) -> list[str]:
    if system is None:
        return []
    if isinstance(system, str):
        return [system]
    if isinstance(system, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in system
    ):
        return [b["text"] for b in system]
    raise BadRequest("system: Input should be a valid string or a list of text blocks")


def _content(content: Any, index: int, role: str) -> tuple[list[str], int]:
    """The texts and the number of images of a message's content, checked as the API does."""
    if isinstance(content, str):
        return [content], 0
    if not isinstance(content, list):
        raise BadRequest(f"messages.{index}.content: Input should be a string or a list")
    texts, images = [], 0
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "image" and _valid_source(block.get("source")):
            images += 1
        elif kind == "tool_use" and role == "assistant" and _valid_tool_use(block):
            texts.append(orjson.dumps(block["input"]).decode())
        elif kind == "tool_result" and role == "user" and isinstance(block.get("tool_use_id"), str):
            result_texts, result_images = _content(block.get("content", ""), index, "user")
            texts.extend(result_texts)
            images += result_images
        else:
            raise BadRequest(f"messages.{index}.content: invalid content block {block!r}")
    return texts, images


def _valid_tool_use(block: Mapping[str, Any]) -> bool:
    return (
        isinstance(block.get("id"), str)
        and isinstance(block.get("name"), str)
        and isinstance(block.get("input"), dict)
    )


def _valid_source(source: Any) -> bool:
    if not isinstance(source, dict):
        return False
    if source.get("type") == "base64":
        return source.get("media_type") in _MEDIA_TYPES and isinstance(source.get("data"), str)
    return source.get("type") == "url" and isinstance(source.get("url"), str)
