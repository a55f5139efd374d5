"""The official anthropic client against ATOM's Messages API, unchanged but for its base URL and
key: plain, streamed with the helpers that assemble the final message, tools, token counts and
errors, in front of an OpenAI-format upstream, an Anthropic upstream and the local model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import pytest

from api.auth import Role
from tests.api.conftest import DISSENT, Api, Fleet, StartGateway, sse_events
from tests.atom_actors.conftest import gemma_spec, network_spec
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.faults import Behaviour, Fault, ScriptedCall
from tests.fakes.openai_server import FakeOpenAI

REPLY = "Paris is mild today."
WEATHER: Any = {
    "name": "weather",
    "description": "The weather in a city now.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
ASK: Any = [{"role": "user", "content": "Is it warm in Paris?"}]
PARIS = ScriptedCall("weather", {"city": "Paris"})
TOOLS_TOO = frozenset({"text_generation", "tools"})
UPSTREAMS = ["gpt", "claude"]


@dataclass
class Front:
    """ATOM in front of a fake OpenAI upstream (gpt), a fake Anthropic one (claude) and Gemma."""

    api: Api
    gpt: FakeOpenAI
    claude: FakeAnthropic

    @property
    def key(self) -> str:
        return self.api.keys[Role.USER]

    def recorded(self, message_id: str, kind: str) -> list[dict[str, Any]]:
        stream = f"request-{message_id.removeprefix('msg_')}"
        return [e.data for e in self.api.services.store.read_stream(stream) if e.type == kind]


@pytest.fixture
async def front(start_gateway: StartGateway) -> AsyncIterator[Front]:
    behaviour = Behaviour(reply=REPLY, tool_calls=(PARIS,))
    async with FakeOpenAI(default=behaviour) as gpt, FakeAnthropic(default=behaviour) as claude:
        gemma = gemma_spec()
        specs = [
            network_spec("gpt", gpt.base_url, capabilities=TOOLS_TOO),
            network_spec("claude", claude.base_url, provider="anthropic", capabilities=TOOLS_TOO),
            gemma,
        ]
        yield Front(await start_gateway(specs), gpt, claude)


@pytest.fixture
async def client(front: Front) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=front.api.url, api_key=front.key, max_retries=0, timeout=120
    ) as client:
        yield client


@pytest.mark.parametrize("model", UPSTREAMS)
async def test_a_message_from_either_upstream_in_anthropics_shape(
    front: Front, client: anthropic.AsyncAnthropic, model: str
) -> None:
    message = await client.messages.create(
        model=model, max_tokens=50, system="Be brief.", messages=ASK
    )

    assert (message.type, message.role, message.model) == ("message", "assistant", model)
    [block] = message.content
    assert block.type == "text" and block.text == REPLY
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    [completed] = front.recorded(message.id, "RequestCompleted")
    assert message.usage.input_tokens == completed["prompt_tokens"]
    assert message.usage.output_tokens == completed["completion_tokens"] == 4
    [received] = front.recorded(message.id, "RequestReceived")
    assert received["endpoint"] == "v1/messages"
    assert received["messages"] == [{"role": "system", "content": "Be brief."}, *ASK]


@pytest.mark.parametrize("model", UPSTREAMS)
async def test_a_stream_follows_anthropics_event_sequence_and_the_helpers_assemble_it(
    front: Front, client: anthropic.AsyncAnthropic, model: str
) -> None:
    raw = await client.messages.create(model=model, max_tokens=50, messages=ASK, stream=True)
    kinds = [event.type async for event in raw]
    async with client.messages.stream(model=model, max_tokens=50, messages=ASK) as stream:
        streamed = "".join([text async for text in stream.text_stream])
        final = await stream.get_final_message()

    # The client passes every event but ping on (see the raw stream's test below).
    deltas = len(kinds) - 5
    assert kinds == ["message_start", "content_block_start", *["content_block_delta"] * deltas,
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    assert streamed == REPLY
    assert final.content[0].type == "text" and final.content[0].text == REPLY
    assert final.stop_reason == "end_turn"
    [completed] = front.recorded(final.id, "RequestCompleted")
    # The start carries the gateway's estimate; the end the provider's count, which wins.
    assert final.usage.input_tokens == completed["prompt_tokens"]
    assert final.usage.output_tokens == completed["completion_tokens"]


async def test_a_stop_sequence_is_named_as_anthropic_names_it(
    client: anthropic.AsyncAnthropic,
) -> None:
    message = await client.messages.create(
        model="claude", max_tokens=50, messages=ASK, stop_sequences=["mild"]
    )

    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "mild")
    assert message.content[0].text == "Paris is "  # type: ignore[union-attr]


@pytest.mark.parametrize("model", UPSTREAMS)
async def test_tools_come_back_as_tool_use_and_the_results_go_back(
    front: Front, client: anthropic.AsyncAnthropic, model: str
) -> None:
    async with client.messages.stream(
        model=model,
        max_tokens=50,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    ) as stream:
        called = await stream.get_final_message()
    uses: Any = [block for block in called.content if block.type == "tool_use"]
    said: Any = {"role": "assistant", "content": called.content}
    result: Any = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": uses[0].id, "content": "14 C"}]}  # fmt: skip
    answered = await client.messages.create(
        model=model, max_tokens=50, messages=[*ASK, said, result], tools=[WEATHER]
    )

    assert called.stop_reason == "tool_use"
    assert [(use.name, use.input) for use in uses] == [("weather", {"city": "Paris"})]
    assert answered.stop_reason == "end_turn"
    [completed] = front.recorded(called.id, "RequestCompleted")
    assert completed["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'


async def test_the_local_model_answers_and_calls_tools_through_its_grammar(
    client: anthropic.AsyncAnthropic,
) -> None:
    # This SDK release dropped temperature from its signature; the API still documents it.
    greedy: Any = {"temperature": 0}
    message = await client.messages.create(
        model="gemma-3-270m", max_tokens=4, messages=ASK, extra_body=greedy
    )
    async with client.messages.stream(
        model="gemma-3-270m",
        max_tokens=40,
        extra_body=greedy,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "weather"},
    ) as stream:
        called = await stream.get_final_message()

    assert message.content[0].text.strip()  # type: ignore[union-attr]
    assert message.stop_reason in ("end_turn", "max_tokens")
    [use] = called.content
    assert use.type == "tool_use" and use.name == "weather"
    assert isinstance(use.input, dict) and isinstance(use.input["city"], str)
    assert called.stop_reason == "tool_use"


async def test_token_counts_are_the_gateways_estimate(client: anthropic.AsyncAnthropic) -> None:
    plain = await client.messages.count_tokens(model="gpt", messages=ASK)
    with_tools = await client.messages.count_tokens(
        model="atom:cost_first", messages=ASK, system="Be brief.", tools=[WEATHER]
    )

    assert plain.input_tokens == 3 + 4 + 5  # priming, one message, 20 characters
    assert with_tools.input_tokens > plain.input_tokens + 4


async def test_errors_are_anthropics_exceptions_with_its_error_shape(
    front: Front, client: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        await client.messages.create(model="claude-9", max_tokens=5, messages=ASK)
    assert missing.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "no model named 'claude-9'"},
    }
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.messages.create(
            model="gpt",
            max_tokens=5,
            messages=ASK,
            thinking={"type": "enabled", "budget_tokens": 1024},
        )
    assert bad.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "thinking: unknown field",
                  "field": "thinking"},
    }  # fmt: skip
    front.claude.fail(Fault.http_error(500), model="claude")
    with pytest.raises(anthropic.APIStatusError) as failed:
        await client.messages.create(model="claude", max_tokens=5, messages=ASK)
    assert failed.value.status_code == 502
    assert failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    front.gpt.fail(Fault.error_event(after=2), model="gpt")
    with pytest.raises(anthropic.APIStatusError, match="api_error"):
        async with client.messages.stream(model="gpt", max_tokens=50, messages=ASK) as stream:
            await stream.get_final_message()

    async with anthropic.AsyncAnthropic(
        base_url=front.api.url, api_key="atom_wrong", max_retries=0
    ) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await wrong.messages.create(model="gpt", max_tokens=5, messages=ASK)
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


async def test_the_key_goes_as_x_api_key_and_a_raw_stream_pings(front: Front) -> None:
    body = {"model": "gpt", "max_tokens": 5, "messages": ASK}
    headers = {"x-api-key": front.key, "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as http:
        async with http.post(front.api.url + "/v1/messages", json=body, headers=headers) as answer:
            assert answer.status == 200
            assert (await answer.json())["content"][0]["text"] == "Paris is mild today."
        async with http.post(
            front.api.url + "/v1/messages", json={**body, "stream": True}, headers=headers
        ) as answer:
            kinds = [kind async for kind, _ in sse_events(answer)]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def _sync_round_trip(front: Front) -> Iterator[Any]:
    with anthropic.Anthropic(base_url=front.api.url, api_key=front.key, max_retries=0) as sync:
        yield sync.messages.create(model="atom:quality_first", max_tokens=50, messages=ASK)
        with sync.messages.stream(model="claude", max_tokens=50, messages=ASK) as stream:
            yield "".join(stream.text_stream)


async def test_the_blocking_client_works_too(front: Front) -> None:
    message, streamed = await asyncio.to_thread(lambda: list(_sync_round_trip(front)))

    assert message.model == "atom:quality_first"
    assert message.content[0].text == REPLY and streamed == REPLY


async def test_a_streamed_cascade_sends_only_the_kept_rungs_answer(fleet: Fleet) -> None:
    async with (
        anthropic.AsyncAnthropic(
            base_url=fleet.api.url, api_key=fleet.key, max_retries=0, timeout=30
        ) as client,
        client.messages.stream(model="atom:cascade", max_tokens=50, messages=ASK) as stream,
    ):
        streamed = "".join([text async for text in stream.text_stream])
        final = await stream.get_final_message()
    # Nothing scored yet: the learned check keeps no cheaper answer, dear (the top) answers,
    # and no rejected rung's tokens go out.
    assert [r.body["model"] for r in fleet.upstream.requests] == ["cheap", "mid", "dear"]
    assert streamed == DISSENT
    assert final.content[0].type == "text" and final.content[0].text == DISSENT
