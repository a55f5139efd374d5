"""The fake upstreams speak their wire formats well enough for the official SDKs to parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.faults import Behaviour, Fault, ScriptedCall
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.text import logprob, tokenize

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-fake"


def test_openai_fake_answers_the_sync_sdk_from_a_thread() -> None:
    with FakeOpenAI.in_thread(models={"m": Behaviour(reply="Hi there, friend.")}) as fake:
        client = openai.OpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0)
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi"}]
        completion = client.chat.completions.create(model="m", messages=messages, logprobs=True)
        chunks = list(
            client.chat.completions.create(
                model="m", messages=messages, stream=True, stream_options={"include_usage": True}
            )
        )
        echoed = client.chat.completions.create(model="other", messages=messages)

    choice = completion.choices[0]
    assert choice.message.content == "Hi there, friend."
    assert choice.finish_reason == "stop"
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert [t.logprob for t in choice.logprobs.content] == [
        logprob(t) for t in tokenize("Hi there, friend.")
    ]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hi there, friend."
    assert chunks[-1].choices == [] and chunks[-1].usage == completion.usage
    assert echoed.choices[0].message.content == "You said: Say hi"


def test_openai_fake_lists_its_models() -> None:
    with FakeOpenAI.in_thread(models={"gpt-a": Behaviour()}) as fake:
        client = openai.OpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0)
        assert sorted(model.id for model in client.models.list()) == ["fake-gpt", "gpt-a"]

    [request] = fake.requests
    assert (request.method, request.path, request.body) == ("GET", "/v1/models", None)


def test_anthropic_fake_answers_the_sync_sdk_from_a_thread() -> None:
    with FakeAnthropic.in_thread(default=Behaviour(reply="Bonjour tout le monde")) as fake:
        client = anthropic.Anthropic(api_key=KEY, base_url=fake.base_url, max_retries=0)
        message = client.messages.create(
            model="c", max_tokens=2, messages=[{"role": "user", "content": "Hello"}]
        )
        with client.messages.stream(
            model="c",
            max_tokens=100,
            system="Speak French.",
            messages=[{"role": "user", "content": "Hello"}],
            stop_sequences=["monde"],
        ) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()

    assert message.content[0].type == "text" and message.content[0].text == "Bonjour tout"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2
    assert streamed == "Bonjour tout le "
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "monde")
    assert final.usage.output_tokens == len(tokenize("Bonjour tout le "))


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}],
    ],
    ids=["unmerged-turns", "system-role", "bad-image"],
)
def test_anthropic_fake_refuses_what_the_api_refuses(messages: list[dict[str, object]]) -> None:
    with FakeAnthropic.in_thread() as fake:
        client = anthropic.Anthropic(api_key=KEY, base_url=fake.base_url, max_retries=0)
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model="c", max_tokens=5, messages=messages)  # type: ignore[arg-type]


def test_faults_reach_the_sdks_as_their_own_errors() -> None:
    with FakeOpenAI.in_thread() as openai_fake, FakeAnthropic.in_thread() as anthropic_fake:
        gpt = openai.OpenAI(api_key=KEY, base_url=openai_fake.base_url, max_retries=0)
        claude = anthropic.Anthropic(api_key=KEY, base_url=anthropic_fake.base_url, max_retries=0)
        openai_fake.fail(Fault.http_error(429, retry_after="3"))
        anthropic_fake.fail(Fault.http_error(529))
        anthropic_fake.fail(Fault.error_event(after=1))

        with pytest.raises(openai.RateLimitError) as limited:
            gpt.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(anthropic.OverloadedError):
            claude.messages.create(
                model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
        with (
            pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
            claude.messages.stream(
                model="c", max_tokens=50, messages=[{"role": "user", "content": "x y z"}]
            ) as stream,
        ):
            stream.until_done()

    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.body == {
        "message": "Injected failure.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


def test_faults_strike_the_next_requests_or_one_model_until_cleared() -> None:
    with FakeOpenAI.in_thread() as fake:
        client = openai.OpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0)

        def status(model: str) -> int:
            try:
                client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "x"}]
                )
            except openai.APIStatusError as failed:
                return failed.status_code
            return 200

        fake.fail(Fault.http_error(500), times=2)
        fake.fail(Fault.http_error(503), model="down")
        first = [status("up"), status("down"), status("up"), status("down")]
        fake.clear_faults()
        second = status("down")

    assert first == [500, 500, 200, 503]
    assert second == 200
    assert [r.body["model"] for r in fake.requests] == ["up", "down", "up", "down", "down"]


def test_the_command_line_server_answers_at_once() -> None:
    command = [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--reply", "pong"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            base_url = server.stdout.readline().strip()
            client = openai.OpenAI(api_key=KEY, base_url=base_url, max_retries=0)
            completion = client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "ping"}]
            )
        finally:
            server.terminate()

    assert completion.choices[0].message.content == "pong"


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALLS = (ScriptedCall("weather", {"city": "Paris"}), ScriptedCall("weather", {"city": "Rome"}))


def test_openai_fake_calls_tools_and_streams_the_calls_as_the_api_does() -> None:
    with FakeOpenAI.in_thread(default=Behaviour(tool_calls=CALLS)) as fake:
        client = openai.OpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0)
        ask: Any = [{"role": "user", "content": "Paris or Rome?"}]
        completion = client.chat.completions.create(
            model="m",
            messages=ask,
            tools=[WEATHER_TOOL],
        )
        with client.chat.completions.stream(
            model="m",
            messages=ask,
            tools=[WEATHER_TOOL],
            parallel_tool_calls=False,
        ) as stream:
            final = stream.get_final_completion()
        calls: Any = completion.choices[0].message.tool_calls or []
        said: Any = completion.choices[0].message.model_dump(exclude_none=True)
        results: Any = [
            {"role": "tool", "tool_call_id": call.id, "content": f"{i + 14} C"}
            for i, call in enumerate(calls)
        ]
        answered = client.chat.completions.create(
            model="m", messages=[*ask, said, *results], tools=[WEATHER_TOOL]
        )
        with pytest.raises(openai.BadRequestError, match="tool_call_ids did not have response"):
            client.chat.completions.create(
                model="m",
                messages=[*ask, said],
            )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("weather", '{"city":"Paris"}'),
        ("weather", '{"city":"Rome"}'),
    ]
    streamed: Any
    [streamed] = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert streamed.function.arguments == '{"city":"Paris"}'
    assert answered.choices[0].message.content == "You said: 15 C"
    assert completion.usage is not None and completion.usage.completion_tokens == 2 * (1 + 5)


def test_anthropic_fake_calls_tools_and_streams_input_json_as_the_api_does() -> None:
    tool: Any = {
        "name": "weather",
        "description": "The weather in a city now.",
        "input_schema": WEATHER_TOOL["function"]["parameters"],
    }
    behaviour = Behaviour(reply="Let me look.", tool_calls=CALLS)
    with FakeAnthropic.in_thread(default=behaviour) as fake:
        client = anthropic.Anthropic(api_key=KEY, base_url=fake.base_url, max_retries=0)
        ask: Any = [{"role": "user", "content": "Paris or Rome?"}]
        message = client.messages.create(
            model="c",
            max_tokens=100,
            messages=ask,
            tools=[tool],
        )
        with client.messages.stream(
            model="c",
            max_tokens=100,
            messages=ask,
            tools=[tool],
            tool_choice={"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        ) as stream:
            final = stream.get_final_message()
        uses: Any = [block for block in message.content if block.type == "tool_use"]
        content: Any = message.content
        answered = client.messages.create(
            model="c",
            max_tokens=100,
            tools=[tool],
            messages=[
                *ask,
                {"role": "assistant", "content": content},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": use.id, "content": "19 C"}
                        for use in uses
                    ],
                },
            ],
        )
        with pytest.raises(anthropic.BadRequestError, match="without `tool_result` blocks"):
            client.messages.create(
                model="c",
                max_tokens=5,
                messages=[*ask, {"role": "assistant", "content": content}],
            )

    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    assert [use.input for use in uses] == [{"city": "Paris"}, {"city": "Rome"}]
    assert final.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "input", None)) for b in final.content] == [
        ("text", None),
        ("tool_use", {"city": "Paris"}),
    ]
    assert answered.stop_reason == "end_turn"
    text: Any = answered.content[0]
    assert text.text == "Let me look."
