"""The model catalog: what each configured model is, costs and can do, and whether it can run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

CAPABILITIES = frozenset(
    {
        "text_generation",
        "business_analysis",
        "summarization",
        "translation",
        "code_generation",
        "reasoning",
        "multimodal",
        "streaming",
        # Takes tool definitions and answers with tool calls (OpenAI's `tools`).
        "tools",
        # Answers /v1/embeddings with vectors of its inputs.
        "embeddings",
    }
)

PROVIDERS = frozenset({"openai", "anthropic", "llamacpp", "recorded"})

ADMISSION = frozenset({"queue", "refuse"})


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One catalog entry, with the field names of the configuration file."""

    name: str
    provider: str
    model: str
    capabilities: frozenset[str]
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    context_window: int
    max_concurrency: int = 8
    quality_prior: float = 0.5
    base_url: str | None = None
    api_key_env: str | None = None
    path: str | None = None
    # Beyond max_concurrency calls wait in a queue of max_queue, or are refused at once.
    admission: str = "queue"
    max_queue: int = 256
    timeout_connect_s: float = 10.0
    timeout_first_token_s: float = 60.0
    timeout_total_s: float = 600.0
    # The max_tokens ATOM sends when the client gives none: what a call's answer is bounded
    # by, and so what its reservation counts.
    max_output_tokens: int = 4096
    # The most one image costs this model in tokens; None: its provider's documented maximum.
    max_image_tokens: int | None = None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The list-price cost of a call with this usage."""
        return (
            prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok
        ) / 1_000_000


def missing_file(spec: ModelSpec) -> str | None:
    """Why a local model cannot load (its file is missing), or None."""
    if spec.provider in ("llamacpp", "recorded") and spec.path and not os.path.exists(spec.path):
        return f"file: {spec.path} not found"
    return None


def unavailable_reason(spec: ModelSpec, env: Mapping[str, str] | None = None) -> str | None:
    """Why the model cannot be called now (missing credentials or file), or None."""
    environ = os.environ if env is None else env
    needs_key = spec.provider in ("openai", "anthropic") and spec.api_key_env
    if needs_key and not environ.get(spec.api_key_env or ""):
        return f"credentials: {spec.api_key_env} not set"
    return missing_file(spec)


# The local model calls tools through a grammar built from their schemas, and embeds through
# a second, pooling context over the same file (see llamacpp.py).
_TEXT = frozenset(
    {"text_generation", "summarization", "translation", "streaming", "tools", "embeddings"}
)


def default_catalog(local_model_path: str | None = None) -> tuple[ModelSpec, ...]:
    """The models ATOM knows without a configuration file, at their list prices."""
    everything = frozenset(CAPABILITIES)
    no_images = everything - {"multimodal"}
    return (
        ModelSpec("gpt-4", "openai", "gpt-4", no_images, 30.0, 60.0, 8192, 16, 0.86,
                  api_key_env="OPENAI_API_KEY"),
        ModelSpec("gpt-4-turbo", "openai", "gpt-4-turbo", everything, 10.0, 30.0, 128_000, 16,
                  0.88, api_key_env="OPENAI_API_KEY"),
        ModelSpec("claude-3-opus", "anthropic", "claude-3-opus-20240229", everything, 15.0,
                  75.0, 200_000, 16, 0.87, api_key_env="ANTHROPIC_API_KEY"),
        ModelSpec("claude-3-sonnet", "anthropic", "claude-3-sonnet-20240229", everything, 3.0,
                  15.0, 200_000, 16, 0.79, api_key_env="ANTHROPIC_API_KEY"),
        ModelSpec("claude-3-haiku", "anthropic", "claude-3-haiku-20240307", everything, 0.25,
                  1.25, 200_000, 16, 0.72, api_key_env="ANTHROPIC_API_KEY"),
        ModelSpec("llama-3-70b", "llamacpp", "llama-3-70b", no_images, 0.0, 0.0, 8192, 1,
                  0.78, path=os.path.expanduser("~/.cache/atom/llama-3-70b.gguf")),
        ModelSpec("gemma-3-270m", "llamacpp", "gemma-3-270m", _TEXT, 0.0, 0.0, 4096, 1, 0.2,
                  path=local_model_path, max_output_tokens=256),
    )  # fmt: skip
