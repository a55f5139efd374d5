"""Providers: one interface in front of every kind of model, and the factory that builds them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING

from ..catalog import ModelSpec
from ._base import (
    TOOL_CALLS,
    AsyncProvider,
    BlockingProvider,
    CallParams,
    Delta,
    Deltas,
    Event,
    Finish,
    Message,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolResult,
    Usage,
    assemble_tool_calls,
    embedding_inputs,
    message_tool_calls,
    tool_call_deltas,
)
from ._errors import ErrorKind, ProviderError
from ._http import Timeouts

if TYPE_CHECKING:
    from ..datasets import RecordedDataset

__all__ = [
    "TOOL_CALLS",
    "AsyncProvider",
    "BlockingProvider",
    "CallParams",
    "Delta",
    "Deltas",
    "ErrorKind",
    "Event",
    "Finish",
    "Message",
    "ProviderError",
    "Timeouts",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolResult",
    "Usage",
    "assemble_tool_calls",
    "embedding_inputs",
    "local_threads",
    "make_provider",
    "message_tool_calls",
    "tool_call_deltas",
]


@cache
def _dataset(path: str) -> RecordedDataset:
    # Recorded models of one dataset share it: it is loaded once per process.
    from ..datasets import load_dataset

    return load_dataset(path)


def local_threads() -> int:
    """Threads for a local model: every core but one, which the event loop and the log need.

    llama.cpp's threads wait for each other at every step, so a core taken away from one of
    them stalls all: measured here, 2 threads beside a busy loop ran slower than 1.
    """
    return max(1, (os.cpu_count() or 2) - 1)


def make_provider(
    spec: ModelSpec, env: Mapping[str, str] | None = None
) -> AsyncProvider | BlockingProvider:
    """Build the provider a catalog entry names (heavy imports happen only when needed).

    A network provider pools as many connections as its model's max_concurrency, so that a
    call its gate admits never waits for a connection, and one that waits does so in the gate.
    """
    environ = os.environ if env is None else env
    timeouts = Timeouts(
        connect=spec.timeout_connect_s,
        first_token=spec.timeout_first_token_s,
        total=spec.timeout_total_s,
    )
    api_key = environ.get(spec.api_key_env) if spec.api_key_env else None
    if spec.provider == "openai":
        from .openai import DEFAULT_BASE_URL, OpenAIProvider

        return OpenAIProvider(
            spec.model,
            api_key=api_key,
            base_url=spec.base_url or DEFAULT_BASE_URL,
            name=spec.name,
            timeouts=timeouts,
            max_connections=spec.max_concurrency,
        )
    if spec.provider == "anthropic":
        from .anthropic import DEFAULT_BASE_URL as ANTHROPIC_URL
        from .anthropic import AnthropicProvider

        return AnthropicProvider(
            spec.model,
            api_key=api_key,
            base_url=spec.base_url or ANTHROPIC_URL,
            name=spec.name,
            timeouts=timeouts,
            max_connections=spec.max_concurrency,
        )
    if spec.provider == "llamacpp":
        from .llamacpp import LlamaCppProvider

        return LlamaCppProvider(
            spec.path, name=spec.name, n_ctx=spec.context_window, n_threads=local_threads()
        )
    if spec.provider == "recorded":
        from .recorded import RecordedProvider

        assert spec.path is not None  # config validation requires it
        return RecordedProvider(_dataset(spec.path), spec.model, name=spec.name)
    raise ValueError(f"model {spec.name!r}: unknown provider {spec.provider!r}")
