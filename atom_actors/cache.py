"""The answer cache: deterministic requests answered again from an earlier identical one.

Entries are the Cache projection's (built from RequestCompleted events), keyed per tenancy, so
that no tenancy is ever answered from another's requests.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import orjson

from eventstore import LiveProjections

from .events import CacheHit
from .request import Publish, RequestContext, TokenSink

CACHE_TTL_S: Final = 3600.0


def request_params(ctx: RequestContext) -> dict[str, Any]:
    """The request's parameters as the log records them."""
    p = ctx.req.params
    params: dict[str, Any] = {
        "max_tokens": p.max_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "stop": list(p.stop),
        "seed": p.seed,
        "logprobs": p.logprobs,
        "response_format": dict(p.response_format) if p.response_format else None,
    }
    # Parameters added since are recorded only when set: the other requests' records (and
    # cache keys) are as they were before them.
    for name in ("top_k", "top_logprobs", "presence_penalty", "frequency_penalty", "user"):
        if (value := getattr(p, name)) is not None:
            params[name] = value
    if p.logit_bias:
        params["logit_bias"] = dict(p.logit_bias)
    if p.tools:
        params["tools"] = [tool.to_openai() for tool in p.tools]
    if p.tool_choice is not None:
        params["tool_choice"] = p.tool_choice.to_openai()
    if p.parallel_tool_calls is not None:
        params["parallel_tool_calls"] = p.parallel_tool_calls
    if p.embed:
        params["embed"] = True
        params["dimensions"] = p.dimensions
    return params


class AnswerCache:
    """Keys, lookups and replays of cached answers."""

    def __init__(
        self,
        projections: LiveProjections,
        clock: Callable[[], float] = time.time,
        ttl_s: float = CACHE_TTL_S,
    ) -> None:
        self._projections = projections
        self._clock = clock
        self._ttl_s = ttl_s

    def key(self, ctx: RequestContext) -> str | None:
        """The cache key of a deterministic request (temperature 0 or a seed), else None.

        A request that bypasses the cache still leaves its answer there for later ones.
        """
        req = ctx.req
        deterministic = req.params.temperature == 0 or req.params.seed is not None
        # Embeddings are not kept: RequestCompleted, which the cache is built from, holds text.
        if not deterministic or req.ensemble is not None or req.params.embed:
            return None
        target = req.model or f"{req.strategy.value}:{req.capability}"
        material: list[Any] = [ctx.tenancy, target, list(req.messages), request_params(ctx)]
        if req.cascades:
            # Another ladder or threshold may keep another rung's answer.
            material.append(req.cascade_settings())
        return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The fresh entry under `key`, if there is one."""
        entry: dict[str, Any] | None = self._projections.state("cache")["entries"].get(key)
        if entry is None:
            return None
        age = self._clock() - datetime.fromisoformat(entry["recorded_at"]).timestamp()
        return entry if age <= self._ttl_s else None

    @staticmethod
    def replay(
        ctx: RequestContext,
        key: str,
        hit: dict[str, Any],
        on_token: TokenSink | None,
        publish: Publish | None,
    ) -> None:
        """Record the hit and stream its answer like a live one, word by word."""
        ctx.record(
            CacheHit(request_id=ctx.request_id, source_request_id=hit["request_id"], cache_key=key)
        )
        for piece in pieces(hit["text"]):
            elapsed = (time.perf_counter() - ctx.started) * 1000
            if on_token is not None:
                on_token(hit["model"], piece, elapsed)
            if publish is not None:
                payload = {"member": hit["model"], "text": piece}
                publish(f"tokens:{ctx.request_id}", payload, ctx.tenancy)


def pieces(text: str) -> list[str]:
    """A text cut into words that join back to it, each with the space that follows it."""
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words) if w or i == 0]
