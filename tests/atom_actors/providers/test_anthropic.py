"""AnthropicProvider against the fake Messages API upstream over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from atom_actors.providers._base import (
    AsyncProvider,
    CallParams,
    Finish,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from atom_actors.providers._errors import ErrorKind, ProviderError
from atom_actors.providers._http import Timeouts
from atom_actors.providers.anthropic import API_VERSION, AnthropicProvider
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.drain import Drained, drain
from tests.fakes.faults import Behaviour, Fault, ScriptedCall
from tests.fakes.text import count_prompt_tokens, tokenize

MakeProvider = Callable[..., AnthropicProvider]
REPLY = "Paris is the capital of France."
MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]
PROMPT_TOKENS = count_prompt_tokens(
    ["Answer briefly.", "What is the capital of France?"], messages=1, images=0
)


@pytest.fixture
def fake(anthropic_fake: FakeAnthropic) -> FakeAnthropic:
    anthropic_fake.default = Behaviour(reply=REPLY)
    return anthropic_fake


def test_implements_the_provider_interface() -> None:
    provider = AnthropicProvider("claude-3-haiku-20240307", name="claude-3-haiku")
    assert isinstance(provider, AsyncProvider)
    assert provider.name == "claude-3-haiku"


async def test_streamed_deltas_concatenate_to_the_reply(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    drained = await drain(make_anthropic().stream(MESSAGES, CallParams(logprobs=True)))

    assert drained.text == REPLY
    assert [d.text for d in drained.deltas] == tokenize(REPLY)
    assert drained.finish is not None
    assert drained.finish.finish_reason == "stop"
    assert drained.finish.usage == Usage(PROMPT_TOKENS, len(tokenize(REPLY)))
    assert drained.finish.mean_logprob is None
    assert drained.finish.raw["stop_reason"] == "end_turn"


async def test_sends_the_messages_api_request(
    fake: FakeAnthropic, make_anthropic: MakeProvider, api_key: str
) -> None:
    await drain(make_anthropic("claude-3-opus").stream(MESSAGES, CallParams(seed=3)))

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == api_key
    assert request.headers["anthropic-version"] == API_VERSION == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "model": "claude-3-opus",
        "max_tokens": 1024,
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "stream": True,
    }


async def test_max_tokens_defaults_to_the_providers_setting(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    await drain(make_anthropic(default_max_tokens=64).stream(MESSAGES, CallParams()))
    await drain(make_anthropic().stream(MESSAGES, CallParams(max_tokens=2)))

    assert [r.body["max_tokens"] for r in fake.requests] == [64, 2]


async def test_max_tokens_ends_with_finish_reason_length(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    drained = await drain(make_anthropic().stream(MESSAGES, CallParams(max_tokens=2)))

    assert drained.text == "Paris is"
    assert drained.finish is not None
    assert drained.finish.finish_reason == "length"
    assert drained.finish.usage is not None
    assert drained.finish.usage.completion_tokens == 2


async def test_stop_sequences_end_with_finish_reason_stop(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    drained = await drain(make_anthropic().stream(MESSAGES, CallParams(stop=("capital",))))

    assert drained.text == "Paris is the "
    assert drained.finish is not None
    assert drained.finish.finish_reason == "stop"
    assert drained.finish.raw["stop_sequence"] == "capital"
    assert fake.requests[0].body["stop_sequences"] == ["capital"]


async def test_consecutive_turns_are_merged_as_the_api_requires(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "First."},
        {"role": "user", "content": [{"type": "text", "text": "Second."}]},
    ]

    drained = await drain(make_anthropic().stream(messages, CallParams()))

    assert drained.text == REPLY
    assert fake.requests[0].body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "First."}, {"type": "text", "text": "Second."}],
        }
    ]


async def test_json_schema_response_format_becomes_output_config(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}

    await drain(make_anthropic().stream(MESSAGES, CallParams(response_format=response_format)))

    assert fake.requests[0].body["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "tool", "content": "42"}],
        [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
        [{"role": "user", "content": None}],
    ],
    ids=["tool-without-call-id", "audio-part", "no-content"],
)
async def test_untranslatable_messages_are_bad_requests_before_any_network(
    fake: FakeAnthropic, make_anthropic: MakeProvider, messages: list[dict[str, Any]]
) -> None:
    with pytest.raises(ProviderError) as raised:
        await drain(make_anthropic().stream(messages, CallParams()))

    assert raised.value.kind is ErrorKind.BAD_REQUEST
    assert fake.requests == []


async def test_a_json_object_response_format_is_a_bad_request(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    params = CallParams(response_format={"type": "json_object"})

    with pytest.raises(ProviderError, match="json_object") as raised:
        await drain(make_anthropic().stream(MESSAGES, params))

    assert raised.value.kind is ErrorKind.BAD_REQUEST


@pytest.mark.parametrize(
    ("fault", "kind", "status", "retry_after"),
    [
        (Fault.http_error(429, retry_after="12"), ErrorKind.RATE_LIMITED, 429, 12.0),
        (Fault.http_error(529), ErrorKind.OVERLOADED, 529, None),
        (Fault.http_error(500), ErrorKind.UPSTREAM_ERROR, 500, None),
        (Fault.http_error(401), ErrorKind.AUTH, 401, None),
        (Fault.http_error(403), ErrorKind.AUTH, 403, None),
        (Fault.http_error(400), ErrorKind.BAD_REQUEST, 400, None),
        (Fault.http_error(413), ErrorKind.BAD_REQUEST, 413, None),
        (Fault.reset(), ErrorKind.UPSTREAM_ERROR, None, None),
    ],
    ids=lambda value: str(value.kind.value if isinstance(value, Fault) else value),
)
async def test_failures_before_the_answer_map_to_kinds(
    fake: FakeAnthropic,
    make_anthropic: MakeProvider,
    fault: Fault,
    kind: ErrorKind,
    status: int | None,
    retry_after: float | None,
) -> None:
    fake.fail(fault)

    with pytest.raises(ProviderError) as raised:
        await drain(make_anthropic().stream(MESSAGES, CallParams()))

    assert raised.value.kind is kind
    assert raised.value.status == status
    assert raised.value.retry_after == retry_after
    assert raised.value.retryable is (kind not in (ErrorKind.AUTH, ErrorKind.BAD_REQUEST))


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.error_event(after=2, status=529), ErrorKind.OVERLOADED),
        (Fault.error_event(after=2, status=429), ErrorKind.RATE_LIMITED),
        (Fault.error_event(after=2, status=500), ErrorKind.UPSTREAM_ERROR),
        (Fault.truncate(after=2), ErrorKind.UPSTREAM_ERROR),
        (Fault.malformed(after=2), ErrorKind.UPSTREAM_ERROR),
        (Fault.reset(after=2), ErrorKind.UPSTREAM_ERROR),
    ],
    ids=lambda value: str(value.kind.value if isinstance(value, Fault) else value),
)
async def test_failures_mid_stream_map_to_kinds_after_the_deltas_sent(
    fake: FakeAnthropic, make_anthropic: MakeProvider, fault: Fault, kind: ErrorKind
) -> None:
    fake.fail(fault)
    drained = Drained()

    with pytest.raises(ProviderError) as raised:
        await drain(make_anthropic().stream(MESSAGES, CallParams()), into=drained)

    assert raised.value.kind is kind
    assert raised.value.retryable
    assert drained.text == "Paris is"


async def test_a_missing_api_key_is_an_auth_error(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    with pytest.raises(ProviderError) as raised:
        await drain(make_anthropic(api_key=None).stream(MESSAGES, CallParams()))

    assert raised.value.kind is ErrorKind.AUTH


async def test_a_slow_first_token_times_out_and_closes_the_connection(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    fake.default = Behaviour(reply=REPLY, first_token_delay=3)
    provider = make_anthropic(timeouts=Timeouts(first_token=1.0))

    with pytest.raises(ProviderError, match=r"no first token within 1 s") as raised:
        await drain(provider.stream(MESSAGES, CallParams()))

    assert raised.value.kind is ErrorKind.TIMEOUT
    await fake.wait_for_disconnects(1)


async def test_cancelling_the_consumer_closes_the_upstream_connection(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    fake.default = Behaviour(reply=REPLY, tokens_per_second=20)
    first = asyncio.Event()

    async def consume() -> None:
        async for event in make_anthropic().stream(MESSAGES, CallParams()):
            if not isinstance(event, Finish):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for_disconnects(1)


async def test_a_body_that_ends_late_still_returns_its_connection_to_the_pool(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    fake.default = Behaviour(reply=REPLY, end_delay=0.05)
    provider = make_anthropic()
    for _ in range(3):
        await drain(provider.stream(MESSAGES, CallParams()))

    assert len({request.client_port for request in fake.requests}) == 1


async def test_cached_prompt_tokens_count_in_the_prompt(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    fake.default = Behaviour(reply=REPLY, cached_prompt_tokens=5)

    drained = await drain(make_anthropic().stream(MESSAGES, CallParams()))

    assert drained.finish is not None
    assert drained.finish.usage is not None
    assert drained.finish.usage.prompt_tokens == PROMPT_TOKENS
    assert drained.finish.raw["usage"]["input_tokens"] == PROMPT_TOKENS - 5
    assert drained.finish.raw["usage"]["cache_read_input_tokens"] == 5


WEATHER = Tool(
    "weather",
    "The weather in a city now.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


async def test_tool_use_streams_as_tool_call_pieces_after_the_text(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    fake.default = Behaviour(
        reply="Let me look.",
        tool_calls=(ScriptedCall("weather", {"city": "Paris"}), ScriptedCall("now")),
    )
    params = CallParams(tools=(WEATHER, Tool("now")), tool_choice=ToolChoice("function", "now"))
    forced = await drain(make_anthropic().stream(MESSAGES, params))
    drained = await drain(make_anthropic().stream(MESSAGES, CallParams(tools=params.tools)))

    body = fake.requests[0].body
    assert body["tools"] == [
        {"name": "weather", "description": WEATHER.description, "input_schema": WEATHER.schema()},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "now"}
    assert "tool_choice" not in fake.requests[1].body
    # A call without arguments reads as OpenAI writes it: an empty object.
    assert forced.tool_calls == (ToolCall("toolu_fake1", "now", "{}"),)
    assert drained.text == "Let me look."
    assert drained.tool_calls == (
        ToolCall("toolu_fake2", "weather", '{"city":"Paris"}'),
        ToolCall("toolu_fake3", "now", "{}"),
    )
    first, *rest = [p for p in drained.tool_pieces if p.index == 0]
    assert (first.id, first.name, first.arguments) == ("toolu_fake2", "weather", "")
    assert len(rest) > 1, "the input streams in pieces"
    assert drained.finish is not None and drained.finish.finish_reason == "tool_calls"
    assert drained.finish.raw["stop_reason"] == "tool_use"
    assert drained.finish.usage is not None
    assert drained.finish.usage.completion_tokens == 3 + (1 + 5) + (1 + 1)


async def test_a_call_that_offers_no_tools_ignores_none(
    fake: FakeAnthropic, make_anthropic: MakeProvider
) -> None:
    fake.default = Behaviour(tool_calls=(ScriptedCall("weather"),))
    drained = await drain(make_anthropic().stream(MESSAGES, CallParams()))

    assert drained.tool_pieces == [] and drained.finish is not None
    assert drained.finish.finish_reason == "stop"
