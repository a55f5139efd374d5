"""The model catalog: what each configured model is, costs and can do."""

from __future__ import annotations

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
    }
)

PROVIDERS = frozenset({"openai", "anthropic", "llamacpp", "recorded"})


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

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The list-price cost of a call with this usage."""
        return (
            prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok
        ) / 1_000_000
