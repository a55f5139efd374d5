"""The one interface every provider speaks: messages and parameters in, deltas and a finish out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

import orjson

# Messages are OpenAI Chat Completions messages: {"role": ..., "content": str | [parts]}.
# It is the format clients already send, so the OpenAI-compatible route passes them through;
# other providers translate from it. Tool calling uses OpenAI's shapes too: an assistant
# message may carry "tool_calls" (see ToolCall), and a "tool" message answers one of them
# (see ToolResult).
Message = Mapping[str, Any]

TOOL_CALLS: Final = "tool_calls"
"""The finish reason of an answer that calls tools instead of (or after) saying something."""


_NO_PARAMETERS: Final[Mapping[str, Any]] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, what it is for, its parameters' JSON schema."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None

    @classmethod
    def from_openai(cls, tool: Mapping[str, Any]) -> Tool:
        """A tool from OpenAI's `{"type": "function", "function": {...}}`; ValueError if not."""
        function = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise ValueError("a tool is {'type': 'function', 'function': {'name': ...}}")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise ValueError(f"tool {function['name']!r}: parameters must be a JSON schema")
        return cls(
            function["name"], function.get("description"), parameters, function.get("strict")
        )

    def to_openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        if self.parameters is not None:
            function["parameters"] = dict(self.parameters)
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}

    def schema(self) -> Mapping[str, Any]:
        """The parameters' schema; a tool declared without one takes an empty object."""
        return self.parameters if self.parameters is not None else _NO_PARAMETERS


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether the model may call tools (auto), must not (none), must call one (required), or
    must call the one named (function)."""

    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = None

    @classmethod
    def from_openai(cls, value: Any) -> ToolChoice:
        """OpenAI's "auto" | "none" | "required" | {"type": "function", "function": {"name"}}."""
        if value in ("auto", "none", "required"):
            return cls(value)
        function = value.get("function") if isinstance(value, Mapping) else None
        if (
            isinstance(value, Mapping)
            and value.get("type") == "function"
            and isinstance(function, Mapping)
            and isinstance(function.get("name"), str)
        ):
            return cls("function", function["name"])
        raise ValueError(
            "tool_choice is 'auto', 'none', 'required' or "
            "{'type': 'function', 'function': {'name': ...}}"
        )

    def to_openai(self) -> str | dict[str, Any]:
        if self.mode == "function":
            return {"type": "function", "function": {"name": self.name}}
        return self.mode


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made: its id, the function's name, and its arguments as JSON text."""

    id: str
    name: str
    arguments: str

    @classmethod
    def from_openai(cls, call: Mapping[str, Any]) -> ToolCall:
        function = call["function"]
        return cls(str(call["id"]), str(function["name"]), str(function.get("arguments") or ""))

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def parsed_arguments(self) -> Any:
        """The arguments as JSON values; ValueError when the text is not JSON."""
        try:
            return orjson.loads(self.arguments or "{}")
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"tool call {self.id}: arguments are not JSON") from exc

    def canonical(self) -> tuple[str, str]:
        """(name, arguments in canonical JSON): two calls agree when these are equal.

        Arguments that are not JSON are compared as they were written."""
        try:
            value = self.parsed_arguments()
        except ValueError:
            return self.name, self.arguments
        return self.name, orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call as it streams: the call's first piece carries its id and name,
    and the pieces of `arguments` join to the call's arguments (OpenAI's streaming shape)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    @property
    def token_bound(self) -> int:
        """At most one token per UTF-8 byte of the name and arguments (and at least one)."""
        text = (self.name or "") + self.arguments
        return max(1, len(text.encode("utf-8", "surrogatepass")))

    def to_openai(self) -> dict[str, Any]:
        """The piece as a chunk's `delta.tool_calls` item."""
        item: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            item["id"] = self.id
            item["type"] = "function"
        function: dict[str, Any] = {"arguments": self.arguments}
        if self.name is not None:
            function = {"name": self.name, **function}
        item["function"] = function
        return item


def assemble_tool_calls(deltas: Iterable[ToolCallDelta]) -> tuple[ToolCall, ...]:
    """The whole calls the pieces make, by index (ids and names from their first pieces)."""
    calls: dict[int, list[str]] = {}
    for delta in deltas:
        call = calls.setdefault(delta.index, ["", "", ""])
        if delta.id is not None:
            call[0] = delta.id
        if delta.name is not None:
            call[1] += delta.name
        call[2] += delta.arguments
    return tuple(ToolCall(*calls[index]) for index in sorted(calls))


def tool_call_deltas(calls: Sequence[ToolCall]) -> tuple[ToolCallDelta, ...]:
    """Whole calls as one piece each, for an answer that was not streamed piece by piece."""
    return tuple(ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(calls))


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool returned, for the call `tool_call_id`: OpenAI's `tool` role message."""

    tool_call_id: str
    content: str | Sequence[Mapping[str, Any]]

    @classmethod
    def from_openai(cls, message: Message) -> ToolResult:
        call_id = message.get("tool_call_id")
        if message.get("role") != "tool" or not isinstance(call_id, str):
            raise ValueError("a tool message needs a tool_call_id")
        content = message.get("content")
        return cls(call_id, content if content is not None else "")

    def to_openai(self) -> dict[str, Any]:
        content = self.content if isinstance(self.content, str) else list(self.content)
        return {"role": "tool", "tool_call_id": self.tool_call_id, "content": content}

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content)


def message_tool_calls(message: Message) -> tuple[ToolCall, ...]:
    """The tool calls an assistant message carries (none for any other message)."""
    calls = message.get("tool_calls")
    if not calls:
        return ()
    return tuple(ToolCall.from_openai(call) for call in calls)


def embedding_inputs(messages: Sequence[Message]) -> list[str]:
    """The inputs of an embeddings call: each message's text."""
    return [str(message.get("content") or "") for message in messages]


@dataclass(frozen=True, slots=True)
class CallParams:
    """Sampling and output parameters of one call; None leaves the provider's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    # How many of the likeliest tokens to give beside each one (needs logprobs).
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # Token id (in the provider's tokenizer) -> bias in [-100, 100].
    logit_bias: Mapping[str, float] | None = None
    # The end user the call is made for (OpenAI's `user`, Anthropic's metadata.user_id).
    user: str | None = None
    # {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}
    # or {"type": "json_object"}
    response_format: Mapping[str, Any] | None = None
    # The functions the model may call, and how it may (None: the provider's default, auto).
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # An embeddings call: each message's text is one input, the answer its vectors (Finish).
    embed: bool = False
    # The size of the vectors, where the model can give several (OpenAI's `dimensions`).
    dimensions: int | None = None

    @property
    def calls_tools(self) -> bool:
        """Whether the model may answer with tool calls."""
        return bool(self.tools) and (self.tool_choice is None or self.tool_choice.mode != "none")


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of streamed text, with its log-probability and its token count when the
    provider gives them."""

    text: str
    logprob: float | None = None
    tokens: int | None = None
    # Its tokens with their log-probabilities in OpenAI's shape ({token, logprob, bytes,
    # top_logprobs}), when the call asked for logprobs and the provider streams them.
    entries: tuple[Mapping[str, Any], ...] | None = None

    @property
    def token_bound(self) -> int:
        """The tokens this delta carries: as the provider counted them, else at most one per
        UTF-8 byte of its text (and at least one)."""
        if self.tokens is not None:
            return self.tokens
        return max(1, len(self.text.encode("utf-8", "surrogatepass")))


@dataclass(frozen=True, slots=True)
class Deltas:
    """Deltas that arrived together, in one read from the network: handed on in one step."""

    items: tuple[Delta, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of a call: usage as the provider reported it (None: it did not), why it stopped."""

    usage: Usage | None
    finish_reason: str
    mean_logprob: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    # Every token of the answer with its log-probability in OpenAI's shape, when asked for.
    logprobs: tuple[Mapping[str, Any], ...] = ()
    # An embeddings call's vectors, one per input in order.
    embeddings: tuple[Sequence[float], ...] = ()


Event = Delta | Deltas | ToolCallDelta | Finish


@runtime_checkable
class AsyncProvider(Protocol):
    """A network provider: a coroutine stream run on the server's event loop."""

    name: str

    def stream(self, messages: Sequence[Message], params: CallParams) -> AsyncIterator[Event]:
        """Yield Delta items (or Deltas of several) and ToolCallDelta items, then exactly one
        Finish; raise ProviderError on failure."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class BlockingProvider(Protocol):
    """A provider that computes in-process and blocks (llama.cpp); run on worker threads."""

    name: str

    def generate(self, messages: Sequence[Message], params: CallParams) -> Iterator[Event]:
        """Yield Delta and ToolCallDelta items, then exactly one Finish; raise ProviderError
        on failure."""
        ...

    def close(self) -> None: ...
