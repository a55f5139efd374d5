"""OpenAI Chat Completions, streamed over aiohttp; any server speaking the format will do."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from atom_actors.providers._base import (
    CallParams,
    Delta,
    Event,
    Finish,
    Message,
    ToolCallDelta,
    Usage,
    embedding_inputs,
)
from atom_actors.providers._errors import ErrorKind, ProviderError
from atom_actors.providers._http import (
    DEFAULT_TIMEOUTS,
    CallClock,
    ServerSentEvent,
    SSEEndpoint,
    Timeouts,
    deltas_of,
    event_json,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_ERROR_KINDS = {
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "invalid_api_key": ErrorKind.AUTH,
    "rate_limit_exceeded": ErrorKind.RATE_LIMITED,
    "server_error": ErrorKind.UPSTREAM_ERROR,
}


class OpenAIProvider:
    """A model behind an OpenAI-compatible `/chat/completions` endpoint."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        name: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        max_connections: int = 100,
    ) -> None:
        self.name = name or model
        self.model = model
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._embeddings_url = f"{base_url.rstrip('/')}/embeddings"
        self._endpoint = SSEEndpoint(
            f"{base_url.rstrip('/')}/chat/completions",
            headers=headers,
            timeouts=timeouts,
            max_connections=max_connections,
        )

    async def stream(
        self, messages: Sequence[Message], params: CallParams
    ) -> AsyncGenerator[Event, None]:
        """Yield the completion's deltas, then its Finish."""
        clock = CallClock(self._endpoint.timeouts)
        if params.embed:
            yield await self._embed(messages, params, clock)
            return
        answer = _Answer([] if params.tools else None)
        body = request_body(self.model, messages, params)

        def take(event: ServerSentEvent) -> Delta | None:
            return None if _is_done(event) else answer.take(event_json(event))

        events = self._endpoint.events(body, clock, _is_done)
        items = deltas_of(events, take, clock, answer.tool_calls)
        async with aclosing(events), aclosing(items):
            async for item in items:
                yield item
        yield answer.finish()

    async def _embed(
        self, messages: Sequence[Message], params: CallParams, clock: CallClock
    ) -> Finish:
        """The inputs' vectors from the upstream's `/embeddings`, as floats."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": embedding_inputs(messages),
            "encoding_format": "float",
        }
        if params.dimensions is not None:
            body["dimensions"] = params.dimensions
        if params.user is not None:
            body["user"] = params.user
        answer = await self._endpoint.fetch_json(self._embeddings_url, body, clock)
        try:
            rows = sorted(answer["data"], key=lambda row: row["index"])
            vectors = tuple([float(x) for x in row["embedding"]] for row in rows)
            usage = Usage(int(answer["usage"]["prompt_tokens"]), 0)
        except (KeyError, TypeError, ValueError) as exc:
            message = f"an embeddings answer without {exc}: {str(answer)[:200]}"
            raise ProviderError(ErrorKind.UPSTREAM_ERROR, message) from exc
        if len(vectors) != len(body["input"]):
            message = f"{len(vectors)} vectors for {len(body['input'])} inputs"
            raise ProviderError(ErrorKind.UPSTREAM_ERROR, message)
        return Finish(usage, "stop", embeddings=vectors)

    async def aclose(self) -> None:
        await self._endpoint.aclose()


def _is_done(event: ServerSentEvent) -> bool:
    return event.data == b"[DONE]"


def request_body(model: str, messages: Sequence[Message], params: CallParams) -> dict[str, Any]:
    """The streaming request for a call, with only the parameters that were set."""
    body: dict[str, Any] = {
        "model": model,
        "messages": list(messages),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop"] = params.stop
    if params.seed is not None:
        body["seed"] = params.seed
    if params.logprobs:
        body["logprobs"] = True
    if params.top_logprobs is not None:
        body["top_logprobs"] = params.top_logprobs
    if params.presence_penalty is not None:
        body["presence_penalty"] = params.presence_penalty
    if params.frequency_penalty is not None:
        body["frequency_penalty"] = params.frequency_penalty
    if params.logit_bias:
        body["logit_bias"] = dict(params.logit_bias)
    if params.user is not None:
        body["user"] = params.user
    if params.response_format is not None:
        body["response_format"] = params.response_format
    if params.tools:
        body["tools"] = [tool.to_openai() for tool in params.tools]
    if params.tool_choice is not None:
        body["tool_choice"] = params.tool_choice.to_openai()
    if params.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = params.parallel_tool_calls
    return body


class _Answer:
    """What the chunks of one streamed completion add up to."""

    __slots__ = (
        "_entries",
        "_finish_reason",
        "_id",
        "_logprob_count",
        "_logprob_sum",
        "_raw_usage",
        "_usage",
        "tool_calls",
    )

    def __init__(self, tool_calls: list[ToolCallDelta] | None = None) -> None:
        # Where the tool-call pieces read go, for a call that offers tools.
        self.tool_calls = tool_calls
        self._id: str | None = None
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._raw_usage: Mapping[str, Any] | None = None
        self._logprob_sum = 0.0
        self._logprob_count = 0
        self._entries: list[Mapping[str, Any]] = []

    def take(self, chunk: Any) -> Delta | None:
        """Account for one chunk; return its text, if it has any."""
        try:
            return self._take(chunk)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            message = f"an unexpected chunk: {str(chunk)[:200]}"
            raise ProviderError(ErrorKind.UPSTREAM_ERROR, message) from exc

    def _take(self, chunk: Mapping[str, Any]) -> Delta | None:
        if "error" in chunk:
            raise _stream_error(chunk["error"])
        self._id = chunk.get("id", self._id)
        if usage := chunk.get("usage"):
            self._usage = Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"]))
            self._raw_usage = usage
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        self._finish_reason = choice.get("finish_reason") or self._finish_reason
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if not text:
            if self.tool_calls is not None and (calls := delta.get("tool_calls")):
                self.tool_calls.extend(_tool_call_delta(call) for call in calls)
            return None
        tokens = (choice.get("logprobs") or {}).get("content")
        if not tokens:
            # OpenAI streams one token a chunk.
            return Delta(text, tokens=1)
        logprob = math.fsum(token["logprob"] for token in tokens)
        self._logprob_sum += logprob
        self._logprob_count += len(tokens)
        self._entries.extend(tokens)
        return Delta(text, logprob, len(tokens), tuple(tokens))

    def finish(self) -> Finish:
        if self._finish_reason is None:
            raise ProviderError(
                ErrorKind.UPSTREAM_ERROR, "the stream ended without a finish_reason"
            )
        # Some compatible servers ignore include_usage: the caller then counts (usage None).
        mean = self._logprob_sum / self._logprob_count if self._logprob_count else None
        raw = {"id": self._id, "finish_reason": self._finish_reason, "usage": self._raw_usage}
        return Finish(self._usage, self._finish_reason, mean, raw, tuple(self._entries))


def _tool_call_delta(call: Mapping[str, Any]) -> ToolCallDelta:
    function = call.get("function") or {}
    return ToolCallDelta(
        int(call["index"]), call.get("id"), function.get("name"), function.get("arguments") or ""
    )


def _stream_error(error: Any) -> ProviderError:
    """An error sent inside the stream once it has started: its code, else its type, says how."""
    if not isinstance(error, Mapping):
        return ProviderError(ErrorKind.UPSTREAM_ERROR, str(error))
    by_type = _ERROR_KINDS.get(str(error.get("type")), ErrorKind.UPSTREAM_ERROR)
    kind = _ERROR_KINDS.get(str(error.get("code")), by_type)
    return ProviderError(kind, str(error.get("message", error)))
