"""Prometheus exposition: the registry's text format, and /metrics on a live server."""

from __future__ import annotations

import re

import pytest

from api.auth import Role
from api.metrics import Metrics
from tests.api.conftest import Api

# name{labels} value, per the text format 0.0.4
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]\w*="([^"\\]|\\.)*",?)*\})? \S+$')


def test_counters_gauges_and_histograms_render_in_the_text_format() -> None:
    metrics = Metrics()
    calls = metrics.counter("calls_total", "Calls.", ("model",))
    calls.inc(model='we"ird\\name\n')
    calls.inc(2, model="a")
    metrics.gauge("queue", "Queued.", read=lambda: {(): 7})
    latency = metrics.histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        latency.observe(value)
    assert metrics.render() == (
        "# HELP calls_total Calls.\n"
        "# TYPE calls_total counter\n"
        'calls_total{model="a"} 2\n'
        'calls_total{model="we\\"ird\\\\name\\n"} 1\n'
        "# HELP queue Queued.\n"
        "# TYPE queue gauge\n"
        "queue 7\n"
        "# HELP latency_seconds Latency.\n"
        "# TYPE latency_seconds histogram\n"
        'latency_seconds_bucket{le="0.1"} 1\n'
        'latency_seconds_bucket{le="1"} 2\n'
        'latency_seconds_bucket{le="+Inf"} 3\n'
        "latency_seconds_sum 5.55\n"
        "latency_seconds_count 3\n"
    )


def test_misuse_is_refused() -> None:
    metrics = Metrics()
    calls = metrics.counter("calls_total", "Calls.", ("model",))
    with pytest.raises(ValueError, match="registered twice"):
        metrics.gauge("calls_total", "Again.")
    with pytest.raises(ValueError, match="takes labels"):
        calls.inc(route="x")
    with pytest.raises(ValueError, match="only goes up"):
        calls.inc(-1, model="a")


async def test_metrics_count_requests_by_route_and_status(api: Api) -> None:
    key = api.keys[Role.OPERATOR]
    await api.call("GET", "/api/advanced-ai/health")
    await api.call("GET", "/api/advanced-ai/streaming/status")
    await api.call("GET", "/no/such/path/12345")
    status, text, response = await api.call("GET", "/metrics", key=key)
    assert status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    lines = text.splitlines()
    for line in lines:
        assert line.startswith("# ") or SAMPLE.match(line), line
    assert (
        'atom_http_requests_total{method="GET",route="/api/advanced-ai/health",status="200"} 1'
        in lines
    )
    assert (
        'atom_http_requests_total{method="GET",route="/api/advanced-ai/streaming/status",'
        'status="401"} 1'
    ) in lines
    assert 'atom_http_requests_total{method="GET",route="unmatched",status="404"} 1' in lines
    assert "12345" not in text
    assert (
        'atom_http_request_duration_seconds_count{method="GET",route="/api/advanced-ai/health"} 1'
        in lines
    )
    for name in ("connections", "messages_sent_total", "slow_clients_cut_total"):
        assert f"atom_stream_{name} 0" in lines
