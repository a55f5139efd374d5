"""Prometheus metrics in the text exposition format (0.0.4), without a client library.

Counters, gauges and histograms live in a `Metrics` registry. A counter or gauge may read its
values at scrape time (`read=`) from a component that already counts (the hub, the log).
Instruments are updated from the event loop's thread.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

Labels = tuple[str, ...]
Reader = Callable[[], Mapping[Labels, float]]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                          10.0, 30.0, 60.0)  # fmt: skip


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def sample(name: str, names: Sequence[str], values: Sequence[str], value: float) -> str:
    """One exposition line: `name{label="value",...} number`."""
    if not names:
        return f"{name} {_number(value)}"
    pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in zip(names, values, strict=True))
    return f"{name}{{{pairs}}} {_number(value)}"


class _Family(abc.ABC):
    kind: str = ""

    def __init__(self, name: str, help_: str, labels: Sequence[str]) -> None:
        self.name = name
        self.help = help_
        self.labels = tuple(labels)

    def _key(self, labels: Mapping[str, str]) -> Labels:
        if labels.keys() != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {sorted(labels)}")
        return tuple(labels[name] for name in self.labels)

    def header(self) -> list[str]:
        help_ = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        return [f"# HELP {self.name} {help_}", f"# TYPE {self.name} {self.kind}"]

    @abc.abstractmethod
    def lines(self) -> list[str]:
        """The family's samples, one exposition line each."""


class _Valued(_Family):
    def __init__(
        self, name: str, help_: str, labels: Sequence[str] = (), read: Reader | None = None
    ) -> None:
        super().__init__(name, help_, labels)
        self._values: dict[Labels, float] = {}
        self._read = read

    def lines(self) -> list[str]:
        values = self._read() if self._read is not None else self._values
        return [sample(self.name, self.labels, key, v) for key, v in sorted(values.items())]


class Counter(_Valued):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Valued):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = value

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount


class Histogram(_Family):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help_, labels)
        self.buckets = tuple(sorted(buckets))
        # per label set: a count per bucket (not cumulative), then the sum and the count
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        counts, totals = self._series.setdefault(key, ([0] * len(self.buckets), [0.0, 0.0]))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
                break
        totals[0] += value
        totals[1] += 1

    def lines(self) -> list[str]:
        out = []
        names = (*self.labels, "le")
        for key, (counts, (total, count)) in sorted(self._series.items()):
            running = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                running += n
                out.append(sample(f"{self.name}_bucket", names, (*key, _number(bound)), running))
            out.append(sample(f"{self.name}_bucket", names, (*key, "+Inf"), count))
            out.append(sample(f"{self.name}_sum", self.labels, key, total))
            out.append(sample(f"{self.name}_count", self.labels, key, count))
        return out


class Metrics:
    """A registry of metric families, rendered together for a scrape."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def _add(self, family: _Family) -> None:
        if family.name in self._families:
            raise ValueError(f"metric {family.name} is registered twice")
        self._families[family.name] = family

    def counter(
        self, name: str, help_: str, labels: Sequence[str] = (), *, read: Reader | None = None
    ) -> Counter:
        counter = Counter(name, help_, labels, read)
        self._add(counter)
        return counter

    def gauge(
        self, name: str, help_: str, labels: Sequence[str] = (), *, read: Reader | None = None
    ) -> Gauge:
        gauge = Gauge(name, help_, labels, read)
        self._add(gauge)
        return gauge

    def histogram(
        self,
        name: str,
        help_: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        histogram = Histogram(name, help_, labels, buckets)
        self._add(histogram)
        return histogram

    def render(self) -> str:
        lines = []
        for family in self._families.values():
            lines += family.header()
            lines += family.lines()
        return "\n".join(lines) + "\n"


def http_middleware(metrics: Metrics) -> Middleware:
    """Count requests by method, route and status, and time them by method and route."""
    requests = metrics.counter(
        "atom_http_requests_total", "HTTP requests answered.", ("method", "route", "status")
    )
    latency = metrics.histogram(
        "atom_http_request_duration_seconds", "Time to answer an HTTP request.", ("method", "route")
    )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        # Unless an answer comes, the client went away first (nginx's "client closed request").
        status = 499
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            # Unmatched paths share one label, so that scanners cannot blow up the series.
            route = resource.canonical if resource is not None else "unmatched"
            method = request.method if request.method in _METHODS else "other"
            requests.inc(method=method, route=route, status=str(status))
            latency.observe(time.perf_counter() - started, method=method, route=route)

    return middleware
