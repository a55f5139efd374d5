"""Requests per minute per key: a token bucket, its arithmetic kept pure."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RateLimited


@dataclass(frozen=True, slots=True)
class Rate:
    """`per_minute` requests on average, up to `burst` at once (a full minute's by default)."""

    per_minute: int
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.per_minute < 1 or (self.burst is not None and self.burst < 1):
            raise ValueError("a rate needs at least 1 request per minute and a burst of 1")

    @property
    def capacity(self) -> float:
        return float(self.burst or self.per_minute)

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    updated: float


def take(bucket: Bucket | None, rate: Rate, now: float) -> tuple[Bucket, float]:
    """Spend one token: the bucket after, and 0.0 or the seconds until a token is there."""
    if bucket is None:
        tokens = rate.capacity
    else:
        elapsed = max(0.0, now - bucket.updated)
        tokens = min(rate.capacity, bucket.tokens + elapsed * rate.per_second)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / rate.per_second


class RateLimiter:
    """One bucket per key; `rate` None lets everything through."""

    def __init__(self, rate: Rate | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}

    def check(self, key_id: str) -> None:
        """Count a request of `key_id`; raise RateLimited when its bucket is empty."""
        if self.rate is None:
            return
        bucket, wait = take(self._buckets.get(key_id), self.rate, self._clock())
        self._buckets[key_id] = bucket
        if wait > 0.0:
            raise RateLimited(
                f"rate limit of {self.rate.per_minute} requests per minute reached",
                retry_after=wait,
            )
