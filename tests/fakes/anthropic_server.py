"""A fake Anthropic Messages upstream, as strict as api.anthropic.com about what it accepts."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.fakes.faults import Behaviour
from tests.fakes.server import BadRequest, Call, FakeServer, Frames, sse
from tests.fakes.text import Completion, Ending, count_prompt_tokens

_STOP_REASONS = {
    Ending.END: "end_turn",
    Ending.STOP_SEQUENCE: "stop_sequence",
    Ending.MAX_TOKENS: "max_tokens",
}
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
        for index, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                raise BadRequest(f"messages.{index}.role: Input should be 'user' or 'assistant'")
            if role == previous:
                raise BadRequest("messages: roles must alternate between 'user' and 'assistant'")
            previous = role
            message_texts, message_images = _content(message.get("content"), index)
            texts.extend(message_texts)
            images += message_images
            if role == "user":
                prompt = " ".join(message_texts)
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
        )

    def answer(self, call: Call, completion: Completion, behaviour: Behaviour) -> Mapping[str, Any]:
        return {
            **self._message(call),
            "content": [{"type": "text", "text": completion.text}],
            "stop_reason": _STOP_REASONS[completion.ending],
            "stop_sequence": completion.stop_sequence,
            "usage": {**_input_usage(call, behaviour), "output_tokens": len(completion.tokens)},
        }

    def frames(self, call: Call, completion: Completion, behaviour: Behaviour) -> Frames:
        start = {
            **self._message(call),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**_input_usage(call, behaviour), "output_tokens": 1},
        }
        head = (
            sse({"type": "message_start", "message": start}, "message_start")
            + sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            )
            + sse({"type": "ping"}, "ping")
        )
        tokens = [
            sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": t},
                },
                "content_block_delta",
            )
            for t in completion.tokens
        ]
        stop = {
            "stop_reason": _STOP_REASONS[completion.ending],
            "stop_sequence": completion.stop_sequence,
        }
        tail = (
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            + sse(
                {
                    "type": "message_delta",
                    "delta": stop,
                    "usage": {"output_tokens": len(completion.tokens)},
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


def _content(content: Any, index: int) -> tuple[list[str], int]:
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
        else:
            raise BadRequest(f"messages.{index}.content: invalid content block {block!r}")
    return texts, images


def _valid_source(source: Any) -> bool:
    if not isinstance(source, dict):
        return False
    if source.get("type") == "base64":
        return source.get("media_type") in _MEDIA_TYPES and isinstance(source.get("data"), str)
    return source.get("type") == "url" and isinstance(source.get("url"), str)
