"""A fake OpenAI Chat Completions upstream: `python -m tests.fakes.openai_server --port N`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.faults import Behaviour
from tests.fakes.server import BadRequest, Call, FakeServer, Frames, sse
from tests.fakes.text import Completion, Ending, count_prompt_tokens, logprob

_FINISH_REASONS = {Ending.END: "stop", Ending.STOP_SEQUENCE: "stop", Ending.MAX_TOKENS: "length"}
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
    """POST /v1/chat/completions (JSON or SSE) and GET /v1/models, as api.openai.com speaks them."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.generate),
            web.get("/v1/models", self._list_models),
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
            if message["role"] == "user":
                prompt = " ".join(message_texts)
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
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
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
                    "message": {"role": "assistant", "content": completion.text, "refusal": None},
                    "logprobs": _logprobs(completion.tokens) if call.logprobs else None,
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
            chunk({"content": t}, None, _logprobs((t,)) if call.logprobs else None)
            for t in completion.tokens
        ]
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

    async def _list_models(self, request: web.Request) -> web.Response:
        self.remember(request, None)
        names = sorted({"fake-gpt", *self.models})
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "atom-fake"} for n in names]
        return web.Response(
            body=orjson.dumps({"object": "list", "data": data}),
            headers={"Content-Type": "application/json"},
        )


def _usage(call: Call, completion: Completion, behaviour: Behaviour) -> dict[str, Any]:
    completion_tokens = len(completion.tokens)
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": call.prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": behaviour.cached_prompt_tokens},
    }


def _logprobs(tokens: tuple[str, ...]) -> dict[str, Any]:
    content = [
        {"token": t, "logprob": logprob(t), "bytes": list(t.encode()), "top_logprobs": []}
        for t in tokens
    ]
    return {"content": content, "refusal": None}


async def _serve(port: int, reply: str | None) -> None:
    server = FakeOpenAI(default=Behaviour(reply=reply), record=False, port=port)
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
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.reply))


if __name__ == "__main__":
    main()
