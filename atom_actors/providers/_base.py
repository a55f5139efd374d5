"""The one interface every provider speaks: messages and parameters in, deltas and a finish out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Messages are OpenAI Chat Completions messages: {"role": ..., "content": str | [parts]}.
# It is the format clients already send, so the OpenAI-compatible route passes them through;
# other providers translate from it.
Message = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CallParams:
    """Sampling and output parameters of one call; None leaves the provider's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    # {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}
    # or {"type": "json_object"}
    response_format: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of streamed text, with its log-probability and its token count when the
    provider gives them."""

    text: str
    logprob: float | None = None
    tokens: int | None = None

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


Event = Delta | Deltas | Finish


@runtime_checkable
class AsyncProvider(Protocol):
    """A network provider: a coroutine stream run on the server's event loop."""

    name: str

    def stream(self, messages: Sequence[Message], params: CallParams) -> AsyncIterator[Event]:
        """Yield Delta items (or Deltas of several), then exactly one Finish; raise
        ProviderError on failure."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class BlockingProvider(Protocol):
    """A provider that computes in-process and blocks (llama.cpp); run on worker threads."""

    name: str

    def generate(self, messages: Sequence[Message], params: CallParams) -> Iterator[Event]:
        """Yield Delta items, then exactly one Finish; raise ProviderError on failure."""
        ...

    def close(self) -> None: ...
