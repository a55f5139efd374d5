"""What the projections' folds share: latency histograms, an event's tenancy, a strategy's key.

Latencies are kept as log-scale histograms (buckets 10% wide), so percentiles need no raw
samples, histograms of different folds or minutes merge by adding their counts, and a fold
stays small however long the log grows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

from eventstore import RecordedEvent

from .principal import INTERNAL

_BUCKET: Final = math.log(1.1)


def bucket(ms: float) -> str:
    """The histogram bucket of a duration: values within 10% share one."""
    return str(math.floor(math.log(max(ms, 0.01)) / _BUCKET))


def percentile(histogram: Mapping[str, int], q: float) -> float | None:
    """The q-quantile (0..1) of a bucket histogram, as the bucket's upper edge in ms."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for key in sorted(histogram, key=int):
        seen += histogram[key]
        if seen >= rank:
            return round(math.exp((int(key) + 1) * _BUCKET), 3)
    return None


def histogram_add(histogram: dict[str, int], ms: float | None) -> None:
    """Count one duration (none when `ms` is None)."""
    if ms is not None:
        key = bucket(ms)
        histogram[key] = histogram.get(key, 0) + 1


def merged(histograms: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """One histogram counting what all of them count."""
    total: dict[str, int] = {}
    for histogram in histograms:
        for key, count in histogram.items():
            total[key] = total.get(key, 0) + count
    return total


def tenancy_of_event(event: RecordedEvent) -> str:
    """The tenancy an event belongs to; events from before tenancies were recorded, and those
    of no request, are the installation's own (`internal`)."""
    tenancy = event.metadata.get("tenancy")
    return tenancy if isinstance(tenancy, str) else INTERNAL


def strategy_key(data: Mapping[str, Any]) -> str:
    """Where a finished request counts among strategies: its strategy, `ensemble:<method>`,
    or `direct` for a request to a named model."""
    if data.get("ensemble_method"):
        return f"ensemble:{data['ensemble_method']}"
    return str(data.get("strategy") or "direct")
