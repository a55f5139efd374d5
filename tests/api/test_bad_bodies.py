"""Bad bodies on every POST route: 400 (or 413) as JSON naming the field, and nothing written.

A refused body must leave no trace in the log (no RequestReceived, nothing half-written) and
reach no upstream.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from api.auth import Role
from api.routes import ROUTES
from tests.api.conftest import Fleet, error_type

HI = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "now"}}
CALL = {"id": "c1", "type": "function", "function": {"name": "now", "arguments": "{}"}}

# (path, body as JSON or raw bytes, the field named, the start of the message)
CASES: list[tuple[str, Any, str | None, str]] = [
    # /process: a prompt is needed, in one of two forms
    ("/api/advanced-ai/process", {}, "messages", "give `messages` or `prompt`"),
    ("/api/advanced-ai/process", b"", "messages", "give `messages` or `prompt`"),
    ("/api/advanced-ai/process", {"prompt": ""}, "prompt", "prompt: must be at least 1"),
    ("/api/advanced-ai/process", {"prompt": 5}, "prompt", "prompt: expected string"),
    ("/api/advanced-ai/process", {"messages": []}, "messages", "messages: must have at least 1"),
    ("/api/advanced-ai/process", {"messages": [{"role": "robot", "content": "x"}]},
     "messages[0].role", "messages[0].role: must be one of"),
    ("/api/advanced-ai/process", {"messages": [{"role": "user"}]}, "messages[0].content",
     "messages[0].content: required"),
    ("/api/advanced-ai/process", {"messages": [{"role": "user", "content": 7}]},
     "messages[0].content", "messages[0].content: expected string or array"),
    ("/api/advanced-ai/process", {"prompt": "hi", "strategy": "fastest"}, "strategy",
     "strategy: must be one of"),
    ("/api/advanced-ai/process", {"prompt": "hi", "capability": "telepathy"}, "capability",
     "capability: must be one of"),
    ("/api/advanced-ai/process", {"prompt": "hi", "max_tokens": -1}, "max_tokens",
     "max_tokens: must be at least 1"),
    ("/api/advanced-ai/process", {"prompt": "hi", "max_tokens": 0}, "max_tokens",
     "max_tokens: must be at least 1"),
    ("/api/advanced-ai/process", {"prompt": "hi", "max_tokens": 2.5}, "max_tokens",
     "max_tokens: expected integer"),
    ("/api/advanced-ai/process", {"prompt": "hi", "max_tokens": "10"}, "max_tokens",
     "max_tokens: expected integer"),
    ("/api/advanced-ai/process", {"prompt": "hi", "temperature": 3}, "temperature",
     "temperature: must be at most 2"),
    ("/api/advanced-ai/process", {"prompt": "hi", "stream": "yes"}, "stream",
     "stream: expected boolean"),
    ("/api/advanced-ai/process", {"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, "stop",
     "stop: must have at most 4"),
    ("/api/advanced-ai/process", {"prompt": "hi", "constraints": {"min_quality": 2}},
     "constraints.min_quality", "constraints.min_quality: must be at most 1"),
    ("/api/advanced-ai/process", {"prompt": "hi", "constraints": {"max_cost_usd": -1}},
     "constraints.max_cost_usd", "constraints.max_cost_usd: must be at least 0"),
    ("/api/advanced-ai/process", {"prompt": "hi", "constraints": {"deadline_ms": 0}},
     "constraints.deadline_ms", "constraints.deadline_ms: must be at least 1"),
    ("/api/advanced-ai/process", {"prompt": "hi", "allow": "cheap"}, "allow",
     "allow: expected array"),
    ("/api/advanced-ai/process", {"prompt": "hi", "answer_field": "a.b"}, "answer_field",
     "answer_field goes with answer_format 'json'"),
    ("/api/advanced-ai/process", {"prompt": "hi", "response_format": {"type": "json_schema"}},
     "response_format", "response_format.json_schema is required"),
    ("/api/advanced-ai/process", {"prompt": "hi", "response_format": {"type": "xml"}},
     "response_format.type", "response_format.type: must be one of"),
    ("/api/advanced-ai/process", b'{"prompt": "hi",', None, "the body is not valid JSON"),
    ("/api/advanced-ai/process", b"[1, 2]", None, "body: expected object"),
    ("/api/advanced-ai/process", b'"hi"', None, "body: expected object"),
    # /orchestrate: the same, and the ensemble
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "ensemble": {"method": "vote"}},
     "ensemble.method", "ensemble.method: must be one of"),
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "ensemble": {"samples": 0}},
     "ensemble.samples", "ensemble.samples: must be at least 1"),
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "ensemble": {"models": "cheap"}},
     "ensemble.models", "ensemble.models: expected array"),
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "ensemble": []}, "ensemble",
     "ensemble: expected object"),
    ("/api/advanced-ai/orchestrate", {"ensemble": {"models": ["cheap"]}}, "messages",
     "give `messages` or `prompt`"),
    ("/api/advanced-ai/orchestrate", b"{", None, "the body is not valid JSON"),
    # /process and /orchestrate: a cascade's ladder and checks
    ("/api/advanced-ai/process", {"prompt": "hi", "cascade": {"first": 2}}, "cascade",
     "cascade goes with strategy 'cascade', without a model or an ensemble"),
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "strategy": "cascade", "model": "cheap",
     "cascade": {}}, "cascade", "cascade goes with strategy 'cascade'"),
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "strategy": "cascade", "cascade": []},
     "cascade", "cascade: expected object"),
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"frist": 2}}, "cascade.frist", "cascade.frist: unknown field"),
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"first": 0}}, "cascade.first", "cascade.first: must be at least 1"),
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"steps": 17}}, "cascade.steps", "cascade.steps: must be at most 16"),
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"first": 2, "samples": 3}}, "cascade.samples",
     "a cascade starts with several models (first) or several samples, not both"),
    ("/api/advanced-ai/process", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"checks": {}}}, "cascade.checks", "cascade.checks: must have at least 1"),
    ("/api/advanced-ai/process", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"checks": {"learnt": {}}}}, "cascade.checks.learnt",
     "cascade.checks.learnt: unknown field"),
    ("/api/advanced-ai/process", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"checks": {"learned": {"threshold": 1.5}}}},
     "cascade.checks.learned.threshold", "cascade.checks.learned.threshold: must be at most 1"),
    ("/api/advanced-ai/process", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"checks": {"learned": 0.7}}}, "cascade.checks.learned",
     "cascade.checks.learned: expected object"),
    ("/api/advanced-ai/process", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"checks": {"agreement": {"min_share": 0}}}},
     "cascade.checks.agreement.min_share", "cascade.checks.agreement.min_share: must be above 0"),
    ("/api/advanced-ai/process", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"checks": {"confidence": {}}}}, "cascade.checks.confidence.min_probability",
     "cascade.checks.confidence.min_probability: required"),
    ("/api/advanced-ai/process", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"checks": {"validity": {"schema": {"type": "thing"}}}}},
     "cascade.checks.validity.schema", "cascade.checks.validity.schema: $.type: must name"),
    ("/api/advanced-ai/process", {"prompt": "hi", "strategy": "cascade",
     "cascade": {"checks": {"validity": {"schema": {"properties": {"a": 1}}}}}},
     "cascade.checks.validity.schema",
     "cascade.checks.validity.schema: $.properties.a: must be a schema"),
    # /feedback
    ("/api/advanced-ai/feedback", {}, "request_id", "request_id: required"),
    ("/api/advanced-ai/feedback", b"", "request_id", "request_id: required"),
    ("/api/advanced-ai/feedback", {"request_id": "r"}, "score", "score: required"),
    ("/api/advanced-ai/feedback", {"request_id": "r", "score": "high"}, "score",
     "score: expected number"),
    ("/api/advanced-ai/feedback", {"request_id": "r", "score": -0.1}, "score",
     "score: must be at least 0"),
    ("/api/advanced-ai/feedback", {"request_id": "r", "score": True}, "score",
     "score: expected number"),
    # /insights/generate
    ("/api/advanced-ai/insights/generate", {}, "question", "question: required"),
    ("/api/advanced-ai/insights/generate", {"question": "q"}, "text",
     "give `text` or `data` to analyse"),
    ("/api/advanced-ai/insights/generate", {"question": "q", "text": "t", "max_tokens": 8},
     "max_tokens", "max_tokens: must be at least 16"),
    ("/api/advanced-ai/insights/generate", {"question": "q", "text": "t", "samples": 9},
     "samples", "samples: must be at most 8"),
    ("/api/advanced-ai/insights/generate", {"question": "q", "data": "t"}, "data",
     "data: expected object or array"),
    # /orchestration/recommendations
    ("/api/advanced-ai/orchestration/recommendations", {}, "capability",
     "capability: required"),
    ("/api/advanced-ai/orchestration/recommendations", {"capability": "telepathy"},
     "capability", "capability: must be one of"),
    ("/api/advanced-ai/orchestration/recommendations",
     {"capability": "reasoning", "answer_tokens": -5}, "answer_tokens",
     "answer_tokens: must be at least 1"),
    # /v1/chat/completions
    ("/v1/chat/completions", {"messages": HI}, "model", "model: required"),
    ("/v1/chat/completions", {"model": "cheap"}, "messages", "messages: required"),
    ("/v1/chat/completions", {"model": "cheap", "messages": HI, "max_tokens": -1},
     "max_tokens", "max_tokens: must be at least 1"),
    ("/v1/chat/completions", {"model": "cheap", "messages": HI, "max_completion_tokens": 0},
     "max_completion_tokens", "max_completion_tokens: must be at least 1"),
    ("/v1/chat/completions", {"model": "cheap", "messages": HI, "n": 3}, "n",
     "n: must be at most 1"),
    ("/v1/chat/completions",
     {"model": "cheap", "messages": HI, "stream_options": {"include_usage": "yes"}},
     "stream_options.include_usage", "stream_options.include_usage: expected boolean"),
    ("/v1/chat/completions", {"model": "atom:ensemble:vote", "messages": HI}, "model",
     "unknown ensemble method in model 'atom:ensemble:vote'"),
    ("/v1/chat/completions", {"model": "atom:fastest", "messages": HI}, "model",
     "unknown model 'atom:fastest'; router aliases are"),
    ("/v1/chat/completions", b"", "model", "model: required"),
    ("/v1/chat/completions", {"model": "cheap", "messages": HI, "audio": {"voice": "alloy"}},
     "audio", "audio: unknown field"),
    ("/v1/chat/completions", {"model": "cheap", "messages": HI, "top_logprobs": 2},
     "top_logprobs", "top_logprobs goes with logprobs: true"),
    # tools, on every model route
    ("/v1/chat/completions", {"model": "cheap", "messages": HI, "tool_choice": "auto"},
     "tool_choice", "tool_choice goes with tools"),
    ("/v1/chat/completions", {"model": "cheap", "messages": HI,
                              "tools": [{"type": "web", "function": {"name": "now"}}]},
     "tools[0].type", "tools[0].type: must be one of"),
    ("/v1/chat/completions", {"model": "cheap", "messages": HI, "tools": [TOOL],
                              "tool_choice": {"type": "function"}},
     "tool_choice", "tool_choice: tool_choice is 'auto'"),
    ("/v1/chat/completions", {"model": "cheap", "messages": [{"role": "tool", "content": "4"}]},
     "messages[0].tool_call_id", "messages[0].tool_call_id: required"),
    ("/v1/chat/completions", {"model": "cheap", "messages": [{"role": "assistant"}]},
     "messages[0].content", "messages[0].content: required"),
    ("/v1/chat/completions", {"model": "cheap", "messages": [
        {"role": "user", "content": "x", "tool_calls": [CALL]}]},
     "messages[0].tool_calls", "messages[0].tool_calls: only an assistant calls tools"),
    ("/v1/chat/completions", {"model": "cheap", "messages": [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}]},
     "messages[0].tool_calls[0].type", "messages[0].tool_calls[0].type: required"),
    ("/api/advanced-ai/process", {"prompt": "hi", "parallel_tool_calls": True},
     "parallel_tool_calls", "parallel_tool_calls goes with tools"),
    ("/api/advanced-ai/orchestrate", {"prompt": "hi", "tools": [TOOL, TOOL]},
     "tools[1].function.name", "tools[1].function.name: 'now' is offered twice"),
    # /v1/messages and its token count
    ("/v1/messages", {"model": "cheap", "messages": HI}, "max_tokens", "max_tokens: required"),
    ("/v1/messages", {"model": "cheap", "max_tokens": 5, "messages": HI, "tools": [
        {"name": "now", "input_schema": {"type": "object"}}], "tool_choice": {"type": "tool"}},
     "tool_choice.name", "tool_choice.name: required"),
    ("/v1/messages", {"model": "cheap", "max_tokens": 5, "messages": [
        {"role": "system", "content": "x"}]}, "messages[0].role",
     "messages[0].role: must be one of"),
    ("/v1/messages", {"model": "cheap", "max_tokens": 5, "messages": HI, "temperature": 1.5},
     "temperature", "temperature: must be at most 1"),
    ("/v1/messages", {"model": "cheap", "max_tokens": 5, "messages": HI,
                      "thinking": {"type": "enabled"}}, "thinking", "thinking: unknown field"),
    ("/v1/messages", {"model": "cheap", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
     "messages", "messages: a malformed message"),
    ("/v1/messages", {"model": "cheap", "max_tokens": 5, "messages": HI,
                      "tool_choice": {"type": "any"}}, "tool_choice",
     "tool_choice goes with tools"),
    ("/v1/messages", {"model": "cheap", "max_tokens": 5, "messages": HI, "tools": [
        {"name": "now", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "clock"}}, "tool_choice.name",
     "tool_choice.name: no tool named 'clock'"),
    ("/v1/messages/count_tokens", {"model": "cheap"}, "messages", "messages: required"),
    ("/v1/messages/count_tokens", {"model": "cheap", "messages": HI, "max_tokens": 5},
     "max_tokens", "max_tokens: unknown field"),
    ("/v1/embeddings", {"model": "cheap"}, "input", "input: required"),
    ("/v1/embeddings", {"model": "cheap", "input": [[1, 2]]}, "input[0]",
     "input[0]: expected string"),
    ("/v1/embeddings", {"model": "cheap", "input": "x", "encoding_format": "int8"},
     "encoding_format", "encoding_format: must be one of"),
    ("/v1/embeddings", {"model": "mid", "input": "x"}, "model",
     "model 'mid' does not take embedding inputs (it lacks the embeddings capability)"),
    # the session and broadcast routes
    ("/api/advanced-ai/auth/session", {"minutes": 0}, "minutes", "minutes: must be at least 1"),
    ("/api/advanced-ai/auth/session", {"hours": 1}, "hours", "hours: unknown field"),
    ("/api/advanced-ai/streaming/events", {"topic": "t"}, "payload", "payload: required"),
    # the log's verification
    ("/api/advanced-ai/log/verify", {"from": 1}, "from", "from: unknown field"),
    # No body reads as {}; a body of blanks is not JSON (schemathesis sent one).
    ("/api/advanced-ai/log/verify", b"\n\n", None, "the body is not valid JSON"),
    # the admin routes
    ("/api/advanced-ai/admin/keys", {}, "role", "role: required"),
    ("/api/advanced-ai/admin/keys", {"role": "king"}, "role", "role: must be one of"),
    ("/api/advanced-ai/admin/keys", {"role": "user", "tenant": "a b"}, "tenant",
     "tenant 'a b' is not"),
    ("/api/advanced-ai/admin/keys", {"role": "user", "period": "day"}, "period",
     "period goes with budget_usd"),
    ("/api/advanced-ai/admin/keys", {"role": "user", "budget_usd": -1}, "budget_usd",
     "budget_usd: must be at least 0"),
]  # fmt: skip

POSTS = sorted({route.path for route in ROUTES if route.method == "POST"})


def test_every_post_route_has_bad_bodies() -> None:
    assert {path for path, *_ in CASES} == set(POSTS)


async def _post(fleet: Fleet, path: str, body: Any) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    status, answer, _ = await fleet.api.call(
        "POST",
        path,
        key=fleet.api.keys[Role.ADMIN],
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    return status, answer


async def test_bad_bodies_are_400_naming_the_field_and_write_nothing(fleet: Fleet) -> None:
    head = fleet.store.head()
    for path, body, field, message in CASES:
        status, answer = await _post(fleet, path, body)
        case = f"{path} {body!r}"
        assert status == 400, (case, answer)
        assert error_type(path, answer) == "bad_request", case
        assert answer["error"].get("field") == field, (case, answer)
        assert answer["error"]["message"].startswith(message), (case, answer)
    # Nothing half-written: not a RequestReceived, not an event of any kind, no upstream call.
    assert fleet.store.head() == head
    assert fleet.upstream.requests == []


@pytest.mark.parametrize("chunked", [False, True])
async def test_bodies_over_the_limit_are_413_and_write_nothing(fleet: Fleet, chunked: bool) -> None:
    head = fleet.store.head()
    limit = fleet.api.services.limits.max_body_bytes
    big = orjson.dumps({"prompt": "x" * limit, "question": "q", "model": "cheap"})
    for path in POSTS:
        if chunked:

            async def pieces(data: bytes = big) -> Any:
                for at in range(0, len(data), 64 * 1024):
                    yield data[at : at + 64 * 1024]

            payload: Any = pieces()
        else:
            payload = big
        status, answer, _ = await fleet.api.call(
            "POST", path, key=fleet.api.keys[Role.ADMIN], data=payload
        )
        assert (status, error_type(path, answer)) == (413, "too_large"), path
        assert str(limit) in answer["error"]["message"]
    assert fleet.store.head() == head
    assert fleet.upstream.requests == []


async def test_a_good_body_after_the_bad_ones_is_answered(fleet: Fleet) -> None:
    """The refusals leave the server as it was: the same connection answers the next call."""
    for path, body, _, _ in CASES[:5]:
        assert (await _post(fleet, path, body))[0] == 400
    status, answer = await _post(fleet, "/api/advanced-ai/process", {"model": "cheap",
                                                                      "prompt": "hi"})  # fmt: skip
    assert status == 200
    [received] = [e for e in fleet.store.read_all() if e.type == "RequestReceived"]
    assert received.data["request_id"] == answer["request_id"]


async def test_a_misspelt_field_is_refused_not_ignored(fleet: Fleet) -> None:
    status, error, _ = await fleet.api.call(
        "POST",
        "/api/advanced-ai/process",
        key=fleet.key,
        json={"model": "cheap", "prompt": "hi", "max_token": 5},
    )
    assert status == 400
    assert error["error"]["field"] == "max_token"
