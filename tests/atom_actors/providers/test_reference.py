"""What our providers send upstream is what the official SDKs send for the same call."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anthropic
import openai
import pytest

from atom_actors.providers._base import CallParams, Tool, ToolCall, ToolChoice, Usage
from atom_actors.providers.anthropic import API_VERSION, AnthropicProvider
from atom_actors.providers.openai import OpenAIProvider
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.drain import drain
from tests.fakes.faults import Behaviour, ScriptedCall
from tests.fakes.openai_server import FakeOpenAI

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
PHOTO_URL = "https://example.com/photo.jpg"
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You describe images."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ],
    },
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PHOTO_URL}}]},
]
PARAMS = CallParams(
    max_tokens=40,
    temperature=0.2,
    top_p=0.9,
    stop=("\n\n", "END"),
    seed=7,
    logprobs=True,
    response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}},
)


def _without(body: Mapping[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in keys}


# Keys the SDK sends that we deliberately leave out; none for OpenAI.
OPENAI_SDK_ONLY_KEYS: frozenset[str] = frozenset()


async def test_openai_request_matches_the_official_sdk(
    openai_fake: FakeOpenAI, make_openai: Callable[..., OpenAIProvider], api_key: str
) -> None:
    client = openai.AsyncOpenAI(api_key=api_key, base_url=openai_fake.base_url, max_retries=0)
    sdk_text: list[str] = []
    sdk_usage = None
    async with client:
        stream = await client.chat.completions.create(  # type: ignore[call-overload]
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=40,
            temperature=0.2,
            top_p=0.9,
            stop=["\n\n", "END"],
            seed=7,
            logprobs=True,
            response_format=PARAMS.response_format,
        )
        async for chunk in stream:
            sdk_text.extend(choice.delta.content or "" for choice in chunk.choices)
            sdk_usage = chunk.usage or sdk_usage

    ours = await drain(make_openai("gpt-4o").stream(MESSAGES, PARAMS))

    sdk_request, our_request = openai_fake.requests
    assert our_request.path == sdk_request.path == "/v1/chat/completions"
    assert our_request.body == _without(sdk_request.body, OPENAI_SDK_ONLY_KEYS)
    for header in ("content-type", "authorization"):
        assert our_request.headers[header] == sdk_request.headers[header]
    assert sdk_usage is not None and ours.finish is not None
    assert ours.text == "".join(sdk_text)
    assert ours.finish.usage == Usage(sdk_usage.prompt_tokens, sdk_usage.completion_tokens)


# Keys the SDK sends that we deliberately leave out; none for Anthropic. Seed and logprobs have
# no Anthropic counterpart, so neither side sends them.
ANTHROPIC_SDK_ONLY_KEYS: frozenset[str] = frozenset()


async def test_anthropic_request_matches_the_official_sdk(
    anthropic_fake: FakeAnthropic, make_anthropic: Callable[..., AnthropicProvider], api_key: str
) -> None:
    client = anthropic.AsyncAnthropic(
        api_key=api_key, base_url=anthropic_fake.base_url, max_retries=0
    )
    sdk_text: list[str] = []
    sdk_stop = None
    async with client:
        stream = await client.messages.create(
            model="claude-3-opus-20240229",
            max_tokens=40,
            system="You describe images.",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {"type": "image", "source": {"type": "url", "url": PHOTO_URL}},
                    ],
                }
            ],
            stop_sequences=["\n\n", "END"],
            output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
            stream=True,
            # This SDK release dropped temperature and top_p from its signature; API version
            # 2023-06-01, which we pin, still documents them.
            extra_body={"temperature": 0.2, "top_p": 0.9},
        )
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                sdk_text.append(event.delta.text)
            elif event.type == "message_delta":
                sdk_stop = event.delta.stop_reason

    ours = await drain(make_anthropic("claude-3-opus-20240229").stream(MESSAGES, PARAMS))

    sdk_request, our_request = anthropic_fake.requests
    assert our_request.path == sdk_request.path == "/v1/messages"
    assert our_request.body == _without(sdk_request.body, ANTHROPIC_SDK_ONLY_KEYS)
    assert our_request.headers["content-type"] == sdk_request.headers["content-type"]
    assert ours.text == "".join(sdk_text)
    assert ours.finish is not None and sdk_stop == "end_turn"
    assert ours.finish.finish_reason == "stop"


@pytest.mark.parametrize("header", ["x-api-key", "anthropic-version"])
async def test_anthropic_headers_differ_from_this_sdk_release_only_as_intended(
    anthropic_fake: FakeAnthropic,
    make_anthropic: Callable[..., AnthropicProvider],
    api_key: str,
    header: str,
) -> None:
    client = anthropic.AsyncAnthropic(
        api_key=api_key, base_url=anthropic_fake.base_url, max_retries=0
    )
    async with client:
        await client.messages.create(
            model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
        )
    await drain(make_anthropic().stream([{"role": "user", "content": "Hi"}], CallParams()))

    sdk_request, our_request = anthropic_fake.requests
    if header == "x-api-key":
        # The API's documented key header; this SDK release sends the key as a bearer token.
        assert our_request.headers["x-api-key"] == api_key
        assert sdk_request.headers["authorization"] == f"Bearer {api_key}"
    else:
        # We pin the version whose wire format we implement; the SDK sends its newest.
        assert our_request.headers["anthropic-version"] == API_VERSION == "2023-06-01"
        assert sdk_request.headers["anthropic-version"] >= API_VERSION


WEATHER = Tool(
    "weather",
    "The weather in a city now.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
# A turn of an agent: the question, the model's call with a word before it, the tool's result.
AGENT: list[dict[str, Any]] = [
    {"role": "system", "content": "You check the weather."},
    {"role": "user", "content": "Is it warm in Paris?"},
    {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "toolu_1", "content": "14 C"},
]
TOOL_PARAMS = CallParams(
    max_tokens=40, tools=(WEATHER,), tool_choice=ToolChoice("required"), parallel_tool_calls=False
)


async def test_openai_tool_calls_match_the_official_sdk(
    openai_fake: FakeOpenAI, make_openai: Callable[..., OpenAIProvider], api_key: str
) -> None:
    openai_fake.default = Behaviour(tool_calls=(ScriptedCall("weather", {"city": "Rome"}),))
    client = openai.AsyncOpenAI(api_key=api_key, base_url=openai_fake.base_url, max_retries=0)
    messages: Any = AGENT
    async with (
        client,
        client.chat.completions.stream(
            model="gpt-4o",
            messages=messages,
            max_tokens=40,
            stream_options={"include_usage": True},
            tools=[WEATHER.to_openai()],  # type: ignore[list-item]
            tool_choice="required",
            parallel_tool_calls=False,
        ) as stream,
    ):
        sdk = await stream.get_final_completion()

    ours = await drain(make_openai("gpt-4o").stream(AGENT, TOOL_PARAMS))

    sdk_request, our_request = openai_fake.requests
    assert our_request.body == _without(sdk_request.body, OPENAI_SDK_ONLY_KEYS)
    [sdk_call] = sdk.choices[0].message.tool_calls or []
    # Each answer has ids of its own: the second call's is the fake's next one.
    function: Any = sdk_call.function
    assert ours.tool_calls == (ToolCall("call_fake2", function.name, function.arguments),)
    assert sdk_call.id == "call_fake1"
    assert ours.finish is not None and ours.finish.finish_reason == "tool_calls"
    assert sdk.choices[0].finish_reason == "tool_calls"


async def test_anthropic_tool_calls_match_the_official_sdk(
    anthropic_fake: FakeAnthropic, make_anthropic: Callable[..., AnthropicProvider], api_key: str
) -> None:
    anthropic_fake.default = Behaviour(tool_calls=(ScriptedCall("weather", {"city": "Rome"}),))
    client = anthropic.AsyncAnthropic(
        api_key=api_key, base_url=anthropic_fake.base_url, max_retries=0
    )
    messages: Any = [
        {"role": "user", "content": "Is it warm in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather",
                 "input": {"city": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "14 C"}]},
    ]  # fmt: skip
    async with (
        client,
        client.messages.stream(
            model="claude-3-opus-20240229",
            max_tokens=40,
            system="You check the weather.",
            messages=messages,
            tools=[
                {
                    "name": "weather",
                    "description": WEATHER.description or "",
                    "input_schema": dict(WEATHER.schema()),
                }
            ],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        ) as stream,
    ):
        sdk = await stream.get_final_message()

    ours = await drain(make_anthropic("claude-3-opus-20240229").stream(AGENT, TOOL_PARAMS))

    sdk_request, our_request = anthropic_fake.requests
    assert our_request.body == _without(sdk_request.body, ANTHROPIC_SDK_ONLY_KEYS)
    [sdk_use] = [block for block in sdk.content if block.type == "tool_use"]
    assert ours.tool_calls == (ToolCall("toolu_fake2", "weather", '{"city":"Rome"}'),)
    assert sdk_use.id == "toolu_fake1"
    assert sdk_use.input == {"city": "Rome"}
    assert ours.finish is not None and ours.finish.finish_reason == "tool_calls"
    assert sdk.stop_reason == "tool_use"
