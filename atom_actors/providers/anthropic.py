"""Anthropic's Messages API, streamed over aiohttp, from and to the gateway's OpenAI-style calls."""

from __future__ import annotations

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
from atom_actors.providers._messages import (
    to_anthropic,
    tool_choice_to_anthropic,
    tools_to_anthropic,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024

# Anthropic's stop reasons in OpenAI's finish_reason vocabulary, which the gateway speaks.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ERROR_KINDS = {
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "not_found_error": ErrorKind.BAD_REQUEST,
    "request_too_large": ErrorKind.BAD_REQUEST,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.AUTH,
    "billing_error": ErrorKind.AUTH,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "overloaded_error": ErrorKind.OVERLOADED,
    "timeout_error": ErrorKind.TIMEOUT,
    "api_error": ErrorKind.UPSTREAM_ERROR,
}


class AnthropicProvider:
    """A Claude model behind the Messages API (`/v1/messages`)."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        name: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        max_connections: int = 100,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.name = name or model
        self.model = model
        self.default_max_tokens = default_max_tokens
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "anthropic-version": API_VERSION,
        }
        if api_key:
            headers["x-api-key"] = api_key
        self._endpoint = SSEEndpoint(
            f"{base_url.rstrip('/')}/v1/messages",
            headers=headers,
            timeouts=timeouts,
            max_connections=max_connections,
        )

    async def stream(
        self, messages: Sequence[Message], params: CallParams
    ) -> AsyncGenerator[Event, None]:
        """Yield the message's text deltas, then its Finish."""
        if params.embed:
            # Reached only through a catalog that says it embeds: the configuration's mistake.
            raise ProviderError(ErrorKind.BAD_REQUEST, "Anthropic's API has no embeddings")
        try:
            body = request_body(self.model, messages, params, self.default_max_tokens)
        except ValueError as exc:
            raise ProviderError(ErrorKind.BAD_REQUEST, str(exc)) from exc
        clock = CallClock(self._endpoint.timeouts)
        answer = _Answer([] if params.tools else None)

        def take(event: ServerSentEvent) -> Delta | None:
            return None if event.event == "ping" else answer.take(event.event, event_json(event))

        events = self._endpoint.events(body, clock, _is_stop)
        items = deltas_of(events, take, clock, answer.tool_calls)
        async with aclosing(events), aclosing(items):
            async for item in items:
                yield item
        yield answer.finish()

    async def aclose(self) -> None:
        await self._endpoint.aclose()


def _is_stop(event: ServerSentEvent) -> bool:
    return event.event == "message_stop"


def request_body(
    model: str, messages: Sequence[Message], params: CallParams, default_max_tokens: int
) -> dict[str, Any]:
    """The streaming request for a call; ValueError if it cannot be said to Anthropic.

    What Anthropic cannot honour (a seed, log-probabilities, penalties: parameters.REFUSED)
    never reaches this point: routing leaves its models out, or the request has them dropped.
    """
    system, turns = to_anthropic(messages)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": default_max_tokens if params.max_tokens is None else params.max_tokens,
        "messages": turns,
        "stream": True,
    }
    if system is not None:
        body["system"] = system
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.top_k is not None:
        body["top_k"] = params.top_k
    if params.stop:
        body["stop_sequences"] = params.stop
    if params.user is not None:
        body["metadata"] = {"user_id": params.user}
    if params.response_format is not None:
        output_format = _output_format(params.response_format)
        if output_format is not None:
            body["output_config"] = {"format": output_format}
    if params.tools:
        body["tools"] = tools_to_anthropic(params.tools)
    tool_choice = tool_choice_to_anthropic(params.tool_choice, params.parallel_tool_calls)
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    return body


def _output_format(response_format: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, Mapping):
            raise ValueError("a json_schema response format needs json_schema.schema")
        return {"type": "json_schema", "schema": schema}
    raise ValueError(f"Anthropic has no {kind!r} response format")


class _Answer:
    """What the events of one streamed message add up to."""

    __slots__ = (
        "_id",
        "_input_tokens",
        "_output_tokens",
        "_raw_usage",
        "_stop_reason",
        "_stop_sequence",
        "_stopped",
        "_tool_index",
        "_without_input",
        "tool_calls",
    )

    def __init__(self, tool_calls: list[ToolCallDelta] | None = None) -> None:
        # Where the tool-call pieces read go, for a call that offers tools; and each tool_use
        # block's call index (OpenAI numbers the calls, Anthropic every block).
        self.tool_calls = tool_calls
        self._tool_index: dict[int, int] = {}
        self._without_input: set[int] = set()
        self._id: str | None = None
        self._raw_usage: dict[str, Any] = {}
        self._input_tokens = 0
        self._output_tokens = 0
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._stopped = False

    def take(self, kind: str, data: Any) -> Delta | None:
        """Account for one event; return its text, if it has any."""
        try:
            return self._take(kind, data)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            message = f"an unexpected {kind!r} event: {str(data)[:200]}"
            raise ProviderError(ErrorKind.UPSTREAM_ERROR, message) from exc

    def _take(self, kind: str, data: Mapping[str, Any]) -> Delta | None:
        if kind == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                return Delta(delta["text"])
            piece = delta.get("partial_json")
            if delta["type"] == "input_json_delta" and piece and self.tool_calls is not None:
                self._without_input.discard(data["index"])
                index = self._tool_index[data["index"]]
                self.tool_calls.append(ToolCallDelta(index, arguments=piece))
            return None
        if kind == "content_block_start":
            block = data["content_block"]
            if block["type"] == "tool_use" and self.tool_calls is not None:
                index = self._tool_index[data["index"]] = len(self._tool_index)
                self._without_input.add(data["index"])
                self.tool_calls.append(ToolCallDelta(index, block["id"], block["name"]))
        elif kind == "content_block_stop":
            if data["index"] in self._without_input and self.tool_calls is not None:
                # A call without arguments: OpenAI's shape says so with an empty object.
                self._without_input.discard(data["index"])
                self.tool_calls.append(
                    ToolCallDelta(self._tool_index[data["index"]], arguments="{}")
                )
        elif kind == "message_start":
            message = data["message"]
            self._id = message.get("id")
            self._count(message["usage"])
        elif kind == "message_delta":
            self._stop_reason = data["delta"].get("stop_reason") or self._stop_reason
            self._stop_sequence = data["delta"].get("stop_sequence")
            self._count(data["usage"])
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            error = data["error"]
            kind_of_error = _ERROR_KINDS.get(error.get("type"), ErrorKind.UPSTREAM_ERROR)
            raise ProviderError(kind_of_error, str(error.get("message", error)))
        return None

    def _count(self, usage: Mapping[str, Any]) -> None:
        self._raw_usage.update(usage)
        # Cached prompt tokens are reported apart from input_tokens; the prompt is all of them.
        if usage.get("input_tokens") is not None:
            self._input_tokens = sum(
                int(usage.get(key) or 0)
                for key in (
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                )
            )
        if usage.get("output_tokens") is not None:
            self._output_tokens = int(usage["output_tokens"])

    def finish(self) -> Finish:
        if not self._stopped or self._stop_reason is None:
            raise ProviderError(ErrorKind.UPSTREAM_ERROR, "the stream ended before message_stop")
        raw = {
            "id": self._id,
            "stop_reason": self._stop_reason,
            "stop_sequence": self._stop_sequence,
            "usage": self._raw_usage,
        }
        usage = Usage(self._input_tokens, self._output_tokens)
        return Finish(usage, FINISH_REASONS.get(self._stop_reason, self._stop_reason), raw=raw)
