"""Which call parameters each provider cannot honour, and why: what routing checks.

A parameter is never dropped silently. Routing leaves out the models whose provider cannot
honour a parameter the request sets (the reason names it), a named model is refused with a 400
naming it, unless the request opts in to dropping such parameters, and then the answer says
which were dropped. The names are the request's own, with a suffix where only some values are
refused (`response_format.json_object`, `temperature.above_1`). docs/api.md has the whole
table, the parameters passed and translated too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .providers import CallParams

REFUSED: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "openai": MappingProxyType({"top_k": "OpenAI's API has no top_k"}),
        "anthropic": MappingProxyType(
            {
                "seed": "Anthropic's API has no seed",
                "logprobs": "Anthropic's API gives no log-probabilities",
                "top_logprobs": "Anthropic's API gives no log-probabilities",
                "presence_penalty": "Anthropic's API has no presence_penalty",
                "frequency_penalty": "Anthropic's API has no frequency_penalty",
                "logit_bias": "Anthropic's API has no logit_bias",
                "response_format.json_object": "Anthropic structures output by a JSON schema "
                "only (response_format json_schema)",
                "temperature.above_1": "Anthropic's temperature is at most 1",
            }
        ),
        "llamacpp": MappingProxyType(
            {
                "logit_bias": "logit_bias names tokens of OpenAI's tokenizers, not the local "
                "model's",
                "dimensions": "the local model's embeddings have one size",
            }
        ),
        # A recording answers as it was recorded: sampling parameters change nothing there, as
        # offline evaluation expects.
        "recorded": MappingProxyType({}),
    }
)

_DEFAULTS: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "top_k": {"top_k": None},
        "seed": {"seed": None},
        "logprobs": {"logprobs": False, "top_logprobs": None},
        "top_logprobs": {"top_logprobs": None},
        "presence_penalty": {"presence_penalty": None},
        "frequency_penalty": {"frequency_penalty": None},
        "logit_bias": {"logit_bias": None},
        "response_format.json_object": {"response_format": None},
        "temperature.above_1": {"temperature": None},
        "dimensions": {"dimensions": None},
    }
)


def asked(params: CallParams) -> frozenset[str]:
    """The names of the parameters a call sets that some provider refuses."""
    names = []
    if params.top_k is not None:
        names.append("top_k")
    if params.seed is not None:
        names.append("seed")
    if params.logprobs:
        names.append("logprobs")
    if params.top_logprobs is not None:
        names.append("top_logprobs")
    if params.presence_penalty is not None:
        names.append("presence_penalty")
    if params.frequency_penalty is not None:
        names.append("frequency_penalty")
    if params.logit_bias:
        names.append("logit_bias")
    if params.response_format is not None and params.response_format.get("type") == "json_object":
        names.append("response_format.json_object")
    if params.temperature is not None and params.temperature > 1:
        names.append("temperature.above_1")
    if params.dimensions is not None:
        names.append("dimensions")
    return frozenset(names)


def refused(provider: str, names: Iterable[str]) -> tuple[str, ...]:
    """The parameters among `names` that `provider` cannot honour, in name order."""
    cannot = REFUSED.get(provider, {})
    return tuple(sorted(name for name in names if name in cannot))


def why(provider: str, name: str) -> str:
    return REFUSED[provider][name]


def field(name: str) -> str:
    """The request field a parameter name stands for (`response_format.json_object` is
    response_format)."""
    return name.split(".", 1)[0]


def without(params: CallParams, names: Iterable[str]) -> CallParams:
    """The call's parameters with these left out (each back at its default)."""
    changes: dict[str, Any] = {}
    for name in names:
        changes.update(_DEFAULTS[name])
    return replace(params, **changes) if changes else params
