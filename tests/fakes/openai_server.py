"""A fake OpenAI Chat Completions upstream: `python -m tests.fakes.openai_server --port N`."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import math
import re
import struct
import time
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.faults import Behaviour
from tests.fakes.server import BadRequest, Bill, Call, FakeServer, Frames, sse
from tests.fakes.text import (
    Completion,
    Ending,
    ToolOffer,
    count_prompt_tokens,
    logprob,
    tokenize,
)

_FINISH_REASONS = {
    Ending.END: "stop",
    Ending.STOP_SEQUENCE: "stop",
    Ending.MAX_TOKENS: "length",
    Ending.TOOL_CALLS: "tool_calls",
}
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_FINGERPRINT = "fp_fake"


class FakeOpenAI(FakeServer):
    """POST /v1/chat/completions (JSON or SSE), POST /v1/embeddings and GET /v1/models, as
    api.openai.com speaks them."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._ids = itertools.count(1)
        self._call_ids = (f"call_fake{n}" for n in itertools.count(1))

    def tool_call_ids(self) -> Iterator[str]:
        return self._call_ids

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.generate),
            web.get("/v1/models", self._list_models),
            web.post("/v1/embeddings", self._embeddings),
        ]

    def authorized(self, request: web.Request) -> bool:
        if self.api_key is None:
            return True
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def parse(self, request: web.Request, body: Any) -> Call:
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array")
        texts: list[str] = []
        images = 0
        prompt = ""
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                raise BadRequest(f"Invalid message: {message!r}")
            content = message.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            message_texts = [p["text"] for p in parts or () if p.get("type") == "text"]
            images += sum(1 for p in parts or () if p.get("type") == "image_url")
            texts.extend(message_texts)
            texts.extend(c["function"]["arguments"] for c in message.get("tool_calls") or ())
            if message["role"] in ("user", "tool"):
                prompt = " ".join(message_texts)
        _check_tool_messages(messages)
        tools = _tool_offer(body)
        if tools is not None:
            texts.append(orjson.dumps(body["tools"]).decode())
        stop = body.get("stop") or ()
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        return Call(
            model=model,
            stream=bool(body.get("stream")),
            prompt=prompt,
            prompt_tokens=count_prompt_tokens(texts, len(messages), images),
            max_tokens=max_tokens,
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            logprobs=bool(body.get("logprobs")),
            top_logprobs=int(body.get("top_logprobs") or 0),
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
            tools=tools,
            after_result=messages[-1].get("role") == "tool",
        )

    def answer(self, call: Call, completion: Completion, behaviour: Behaviour) -> Mapping[str, Any]:
        return {
            "id": self._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "system_fingerprint": _FINGERPRINT,
            "choices": [
                {
                    "index": 0,
                    "message": _message(completion),
                    "logprobs": _logprobs(completion.tokens, call.top_logprobs)
                    if call.logprobs
                    else None,
                    "finish_reason": _FINISH_REASONS[completion.ending],
                }
            ],
            "usage": _usage(call, completion, behaviour),
        }

    def frames(self, call: Call, completion: Completion, behaviour: Behaviour) -> Frames:
        head: dict[str, Any] = {
            "id": self._next_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.model,
            "system_fingerprint": _FINGERPRINT,
        }
        if call.include_usage:
            head["usage"] = None

        def chunk(delta: Mapping[str, Any], finish: str | None, logprobs: Any = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            return sse({**head, "choices": [choice]})

        tokens = [
            chunk(
                {"content": t}, None, _logprobs((t,), call.top_logprobs) if call.logprobs else None
            )
            for t in completion.tokens
        ]
        for index, made in enumerate(completion.calls):
            # A call's first chunk names it, with empty arguments; the pieces follow.
            function = {"name": made.name, "arguments": ""}
            first = {"index": index, "id": made.id, "type": "function", "function": function}
            tokens.append(chunk({"tool_calls": [first]}, None))
            tokens.extend(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, None)
                for piece in made.pieces
            )
        tail = chunk({}, _FINISH_REASONS[completion.ending])
        if call.include_usage and behaviour.reports_usage:
            tail += sse({**head, "choices": [], "usage": _usage(call, completion, behaviour)})
        return Frames(
            head=chunk({"role": "assistant", "content": "", "refusal": None}, None),
            tokens=tokens,
            tail=tail + b"data: [DONE]\n\n",
        )

    def error_body(self, status: int, message: str) -> Mapping[str, Any]:
        kind, code = _ERROR_TYPES.get(status, ("server_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def error_frame(self, status: int) -> bytes:
        return sse(
            self.error_body(status, "The server had an error while processing your request.")
        )

    def _next_id(self) -> str:
        return f"chatcmpl-fake{next(self._ids)}"

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/embeddings: a deterministic unit vector per input, floats or base64."""
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        self.remember(request, body)
        if not self.authorized(request):
            return self.error(401, "Invalid authentication credentials.")
        try:
            model, inputs, size, encoding = _embedding_call(body)
        except BadRequest as refused:
            return self.error(refused.status, refused.message)
        fault = self._claim(model)
        if fault is not None:
            return await self._fail_before_headers(request, fault)
        tokens = sum(len(i) if isinstance(i, list) else len(tokenize(i)) for i in inputs)
        self.bills.append(Bill(model, " ".join(map(str, inputs)), tokens, 0, True))
        data = [
            {
                "object": "embedding",
                "index": n,
                "embedding": _encode(fake_vector(i, size), encoding),
            }
            for n, i in enumerate(inputs)
        ]
        answer = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.Response(body=orjson.dumps(answer), headers={"Content-Type": "application/json"})

    async def _list_models(self, request: web.Request) -> web.Response:
        self.remember(request, None)
        names = sorted({"fake-gpt", *self.models})
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "atom-fake"} for n in names]
        return web.Response(
            body=orjson.dumps({"object": "list", "data": data}),
            headers={"Content-Type": "application/json"},
        )


# The size of the fake's vectors, unless a request asks for fewer (`dimensions`).
EMBEDDING_SIZE = 16


def fake_vector(given: str | list[int], size: int = EMBEDDING_SIZE) -> list[float]:
    """The fake's embedding of an input: deterministic, of length one, as OpenAI's are."""
    seed = hashlib.sha256(orjson.dumps(given)).digest()
    raw = [b - 127.5 for b in (seed * 4)[:size]]
    norm = math.sqrt(math.fsum(x * x for x in raw))
    return [x / norm for x in raw]


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _embedding_call(body: Any) -> tuple[str, list[str | list[int]], int, str]:
    """What an embeddings body asks for, or BadRequest as OpenAI words its refusal."""
    if not isinstance(body, dict):
        raise BadRequest("The request body is not valid JSON.")
    model, given = body.get("model"), body.get("input")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter")
    if isinstance(given, str) or (
        isinstance(given, list) and given and all(isinstance(t, int) for t in given)
    ):
        inputs: list[Any] = [given]
    elif isinstance(given, list) and given and len(given) <= 2048:
        inputs = given
    else:
        raise BadRequest("'input' must be a string, an array of strings or of token arrays")
    if any(i in ("", []) or not isinstance(i, (str, list)) for i in inputs):
        raise BadRequest("'$.input' is invalid: an input is empty or not text nor tokens")
    size = body.get("dimensions", EMBEDDING_SIZE)
    if not isinstance(size, int) or not 1 <= size <= EMBEDDING_SIZE:
        raise BadRequest(f"dimensions must be between 1 and {EMBEDDING_SIZE}")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadRequest("encoding_format must be float or base64")
    return model, inputs, size, encoding


def _message(completion: Completion) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.text or (None if completion.calls else ""),
        "refusal": None,
    }
    if completion.calls:
        message["tool_calls"] = [
            {
                "id": made.id,
                "type": "function",
                "function": {"name": made.name, "arguments": made.arguments},
            }
            for made in completion.calls
        ]
    return message


def _tool_offer(body: Mapping[str, Any]) -> ToolOffer | None:
    """The request's tools and tool_choice, refused as the API refuses them."""
    tools = body.get("tools")
    if tools is None:
        for name in ("tool_choice", "parallel_tool_calls"):
            if name in body:
                raise BadRequest(f"'{name}' is only allowed when 'tools' are specified.")
        return None
    names: list[str] = []
    for index, tool in enumerate(tools if isinstance(tools, list) else [None]):
        function = tool.get("function") if isinstance(tool, dict) else None
        found = function.get("name") if isinstance(function, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            found = None
        if not isinstance(found, str):
            raise BadRequest(f"Invalid 'tools[{index}]': expected a function tool.")
        name = found
        if not _FUNCTION_NAME.fullmatch(name):
            raise BadRequest(f"Invalid 'tools[{index}].function.name': string does not match "
                             "pattern. Expected a string that matches the pattern "
                             "'^[a-zA-Z0-9_-]+$'.")  # fmt: skip
        names.append(name)
    choice = body.get("tool_choice", "auto")
    forced = None
    if isinstance(choice, dict):
        forced = (choice.get("function") or {}).get("name")
        if choice.get("type") != "function" or forced not in names:
            raise BadRequest(f"Invalid value for 'tool_choice': {choice!r}.")
        choice = "function"
    elif choice not in ("auto", "none", "required"):
        raise BadRequest(f"Invalid value for 'tool_choice': {choice!r}.")
    parallel = body.get("parallel_tool_calls", True)
    return ToolOffer(tuple(names), choice, forced, parallel)


def _check_tool_messages(messages: list[Any]) -> None:
    """Every tool message answers a call of the assistant message before it, and every call
    is answered before the conversation goes on, as the API insists."""
    waiting: set[str] = set()
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            if message.get("tool_call_id") not in waiting:
                raise BadRequest(
                    f"Invalid parameter: messages with role 'tool' must be a response to a "
                    f"preceeding message with 'tool_calls' (messages[{index}])."
                )
            waiting.discard(message["tool_call_id"])
            continue
        _all_answered(waiting)
        for tool_call in message.get("tool_calls") or ():
            waiting.add(tool_call["id"])
    _all_answered(waiting)


def _all_answered(waiting: set[str]) -> None:
    if waiting:
        raise BadRequest(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            f"responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(sorted(waiting))}"
        )


def _usage(call: Call, completion: Completion, behaviour: Behaviour) -> dict[str, Any]:
    completion_tokens = completion.output_tokens
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": call.prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": behaviour.cached_prompt_tokens},
    }


def _logprobs(tokens: tuple[str, ...], top: int = 0) -> dict[str, Any]:
    """Each token with its log-probability, and `top` likeliest ones: itself first, then less
    likely spellings of it."""

    def entry(token: str, value: float) -> dict[str, Any]:
        return {"token": token, "logprob": value, "bytes": list(token.encode())}

    content = [
        {
            **entry(t, logprob(t)),
            "top_logprobs": [entry(t + "~" * i, logprob(t) - i) for i in range(top)],
        }
        for t in tokens
    ]
    return {"content": content, "refusal": None}


async def _serve(port: int, behaviour: Behaviour) -> None:
    server = FakeOpenAI(default=behaviour, record=False, port=port)
    await server.start()
    print(server.base_url, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--reply", help="a fixed reply; default echoes the prompt")
    parser.add_argument(
        "--tokens-per-second", type=float, help="stream paced like a model (default: at once)"
    )
    parser.add_argument(
        "--first-token-delay", type=float, default=0.0, help="seconds before the first token"
    )
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop")
    args = parser.parse_args()
    behaviour = Behaviour(
        reply=args.reply,
        tokens_per_second=args.tokens_per_second,
        first_token_delay=args.first_token_delay,
    )
    serve = _serve(args.port, behaviour)
    with contextlib.suppress(KeyboardInterrupt):
        if args.uvloop:
            import uvloop

            uvloop.run(serve)
        else:
            asyncio.run(serve)


if __name__ == "__main__":
    main()
