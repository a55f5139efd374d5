"""Tool calling end to end: the official openai client, /process and /orchestrate, in front of
OpenAI- and Anthropic-format upstreams; the calls on the record, in the cache and the trace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI, BadRequestError

from atom_actors.catalog import ModelSpec
from eventstore import open_reader
from replay import trace
from tests.api.conftest import Api, Fleet, StartGateway, sse_events
from tests.atom_actors.conftest import network_spec
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.faults import Behaviour, ScriptedCall
from tests.fakes.openai_server import FakeOpenAI

WEATHER: Any = {
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
ASK: Any = [{"role": "user", "content": "Is it warm in Paris?"}]
PARIS = ScriptedCall("weather", {"city": "Paris"})
TOOLS_TOO = frozenset({"text_generation", "tools"})


@pytest.fixture
async def client(fleet: Fleet) -> AsyncIterator[AsyncOpenAI]:
    fleet.upstream.models["cheap"] = Behaviour(tool_calls=(PARIS,))
    async with AsyncOpenAI(
        base_url=fleet.api.url + "/v1", api_key=fleet.key, max_retries=0, timeout=30
    ) as client:
        yield client


def _events(fleet: Fleet, request_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in fleet.events(request_id) if e.type == kind]


async def test_a_call_comes_back_as_tool_calls_and_is_on_the_record(
    fleet: Fleet, client: AsyncOpenAI
) -> None:
    completion = await client.chat.completions.create(
        model="cheap", messages=ASK, tools=[WEATHER], tool_choice="auto"
    )

    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call: Any
    [call] = choice.message.tool_calls or []
    function: Any = call.function
    assert (call.id, function.name, function.arguments) == (
        "call_fake1",
        "weather",
        '{"city":"Paris"}',
    )
    [sent] = fleet.upstream.requests
    assert (sent.body["tools"], sent.body["tool_choice"]) == ([WEATHER], "auto")
    request_id = completion.id.removeprefix("chatcmpl-")
    recorded = [call.model_dump(exclude_none=True)]
    [received] = _events(fleet, request_id, "RequestReceived")
    assert received["params"]["tools"] == [WEATHER]
    assert received["params"]["tool_choice"] == "auto"
    [called] = _events(fleet, request_id, "ModelCallCompleted")
    [completed] = _events(fleet, request_id, "RequestCompleted")
    assert called["tool_calls"] == completed["tool_calls"] == recorded
    assert completed["finish_reason"] == "tool_calls"


async def test_the_results_go_back_and_the_model_answers_them(
    fleet: Fleet, client: AsyncOpenAI
) -> None:
    first = await client.chat.completions.create(model="cheap", messages=ASK, tools=[WEATHER])
    said: Any = first.choices[0].message.model_dump(exclude_none=True)
    [call] = first.choices[0].message.tool_calls or []
    result: Any = {"role": "tool", "tool_call_id": call.id, "content": "14 C"}

    answer = await client.chat.completions.create(
        model="cheap", messages=[*ASK, said, result], tools=[WEATHER]
    )

    assert answer.choices[0].message.content == "You said: 14 C"
    assert answer.choices[0].finish_reason == "stop"
    assert fleet.upstream.requests[1].body["messages"][1:] == [said, result]


def _tool_deltas(chunks: list[Any]) -> list[dict[str, Any]]:
    return [
        delta.model_dump(exclude_none=True)
        for chunk in chunks
        if chunk.choices
        for delta in chunk.choices[0].delta.tool_calls or ()
    ]


async def test_streamed_calls_are_the_deltas_openai_streams(
    fleet: Fleet, client: AsyncOpenAI
) -> None:
    two = (PARIS, ScriptedCall("weather", {"city": "Rome"}))
    fleet.upstream.models["cheap"] = Behaviour(tool_calls=two)
    ours = [
        chunk
        async for chunk in await client.chat.completions.create(
            model="cheap", messages=ASK, tools=[WEATHER], stream=True
        )
    ]
    async with AsyncOpenAI(
        base_url=fleet.upstream.base_url, api_key="sk-test", max_retries=0
    ) as direct:
        theirs = [
            chunk
            async for chunk in await direct.chat.completions.create(
                model="cheap", messages=ASK, tools=[WEATHER], stream=True
            )
        ]

    # The same pieces, in the same order (each answer has ids of its own).
    assert _tool_deltas(ours) == [
        {**d, "id": d["id"].replace("call_fake3", "call_fake1").replace("call_fake4", "call_fake2")}
        if "id" in d
        else d
        for d in _tool_deltas(theirs)
    ]
    first = ours[0].choices[0].delta
    assert (first.role, first.content) == ("assistant", None)
    assert [c.choices[0].finish_reason for c in ours if c.choices][-1] == "tool_calls"


async def test_the_router_leaves_out_models_without_tools_and_a_named_one_is_refused(
    fleet: Fleet, client: AsyncOpenAI
) -> None:
    routed = await client.chat.completions.create(
        model="atom:quality_first", messages=ASK, tools=[WEATHER], tool_choice="required"
    )
    request_id = routed.id.removeprefix("chatcmpl-")
    [decided] = _events(fleet, request_id, "RouteDecided")
    excluded = {x["model"]: x["reason"] for x in decided["excluded"]}
    assert excluded["mid"] == "capability: lacks tools"
    assert "mid" not in decided["order"]

    with pytest.raises(BadRequestError) as refused:
        await client.chat.completions.create(model="mid", messages=ASK, tools=[WEATHER])
    assert refused.value.body == {
        "type": "bad_request",
        "message": "model 'mid' does not take tools (it lacks the tools capability)",
        "field": "tools",
    }


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tool_choice": "always"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "clock"}}}, "tool_choice"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    ],
)
async def test_bad_tools_are_refused_naming_the_field(
    fleet: Fleet, extra: dict[str, Any], field: str
) -> None:
    body = {"model": "cheap", "messages": ASK, "tools": [WEATHER], **extra}
    status, error = await fleet.post("/v1/chat/completions", body)

    assert (status, error["error"]["field"]) == (400, field)
    assert fleet.upstream.requests == []


async def test_a_deterministic_call_is_cached_with_its_tools_in_the_key(
    fleet: Fleet, client: AsyncOpenAI
) -> None:
    async def ask(choice: Any) -> Any:
        return await client.chat.completions.create(
            model="cheap", messages=ASK, tools=[WEATHER], tool_choice=choice, temperature=0
        )

    first, again, other = await ask("auto"), await ask("auto"), await ask("required")

    assert again.choices[0].message.tool_calls == first.choices[0].message.tool_calls
    assert again.choices[0].finish_reason == "tool_calls"
    assert len(fleet.upstream.requests) == 2, "the same tools and choice hit the cache"
    assert [r.body["tool_choice"] for r in fleet.upstream.requests] == ["auto", "required"]
    assert other.choices[0].message.tool_calls is not None


async def test_process_streams_tool_call_events_and_the_trace_shows_the_call(
    fleet: Fleet, client: AsyncOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"model": "cheap", "messages": ASK, "tools": [WEATHER], "stream": True}
    async with fleet.api.http.post(
        fleet.api.url + "/api/advanced-ai/process",
        json=body,
        headers={"Authorization": f"Bearer {fleet.key}"},
    ) as response:
        events = [event async for event in sse_events(response)]

    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"tool_call"}
    first = events[0][1]
    assert (first["member"], first["index"], first["id"], first["name"]) == (
        "cheap",
        0,
        "call_fake1",
        "weather",
    )
    assert "".join(data["arguments"] for _, data in events[:-1]) == '{"city":"Paris"}'
    done = events[-1][1]
    assert done["finish_reason"] == "tool_calls"
    assert done["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'

    with open_reader(str(fleet.store.location)) as reader:
        told = trace.render(trace.load(reader, done["request_id"], now=0))
    assert "offered tools weather (tool_choice auto)" in told
    assert told.count('called weather({"city":"Paris"}) (id call_fake1)') == 2


@pytest.fixture
async def claude(start_gateway: StartGateway) -> AsyncIterator[tuple[Api, FakeAnthropic]]:
    async with FakeAnthropic(default=Behaviour(reply="Let me look.", tool_calls=(PARIS,))) as fake:
        spec = network_spec("claude", fake.base_url, provider="anthropic", capabilities=TOOLS_TOO)
        yield await start_gateway([spec]), fake


async def test_an_anthropic_upstream_calls_through_the_openai_route(
    claude: tuple[Api, FakeAnthropic],
) -> None:
    api, fake = claude
    async with AsyncOpenAI(
        base_url=api.url + "/v1", api_key=api.keys[max(api.keys)], max_retries=0
    ) as client:
        stream = client.chat.completions.stream(
            model="claude", messages=ASK, tools=[WEATHER], parallel_tool_calls=False
        )
        async with stream as events:
            first = await events.get_final_completion()
        said: Any = first.choices[0].message.model_dump(exclude_none=True)
        [call] = first.choices[0].message.tool_calls or []
        result: Any = {"role": "tool", "tool_call_id": call.id, "content": "14 C"}
        answer = await client.chat.completions.create(
            model="claude", messages=[*ASK, said, result], tools=[WEATHER]
        )

    assert first.choices[0].finish_reason == "tool_calls"
    assert first.choices[0].message.content == "Let me look."
    function: Any = call.function
    assert (call.id, function.name, function.arguments) == (
        "toolu_fake1",
        "weather",
        '{"city":"Paris"}',
    )
    sent = fake.requests[0].body
    assert sent["tools"] == [
        {
            "name": "weather",
            "description": WEATHER["function"]["description"],
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert fake.requests[1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_fake1", "name": "weather",
                 "input": {"city": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_fake1",
                                      "content": "14 C"}]},
    ]  # fmt: skip
    assert answer.choices[0].message.content == "Let me look."
    assert answer.choices[0].finish_reason == "stop"


def _callers(base_url: str) -> list[ModelSpec]:
    return [network_spec(name, base_url, capabilities=TOOLS_TOO) for name in ("a", "b", "c")]


async def test_an_ensemble_agrees_on_calls_with_equal_arguments(
    start_gateway: StartGateway,
) -> None:
    # a and b call the same function with the same arguments written in another key order.
    models = {
        "a": Behaviour(tool_calls=(ScriptedCall("weather", {"city": "Paris", "unit": "C"}),)),
        "b": Behaviour(tool_calls=(ScriptedCall("weather", {"unit": "C", "city": "Paris"}),)),
        "c": Behaviour(tool_calls=(ScriptedCall("weather", {"city": "Rome", "unit": "C"}),)),
    }
    async with FakeOpenAI(models=models) as fake:
        api = await start_gateway(_callers(fake.base_url))
        status, result, _ = await api.call(
            "POST",
            "/api/advanced-ai/orchestrate",
            key=api.keys[max(api.keys)],
            json={"messages": ASK, "tools": [WEATHER],
                  "ensemble": {"method": "majority_vote", "models": ["a", "b", "c"]}},
        )  # fmt: skip

    assert status == 200, result
    assert result["agreement"] == pytest.approx(2 / 3)
    assert result["model"] in ("a", "b") and result["finish_reason"] == "tool_calls"
    assert result["tool_calls"][0]["function"]["name"] == "weather"
    rows = {m["model"]: m for m in result["members"]}
    assert rows["c"]["tool_calls"][0]["function"]["arguments"] == '{"city":"Rome","unit":"C"}'
    scores = [
        (e.data["model"], e.data["score"])
        for e in api.services.store.read_all()
        if e.type == "ScoreRecorded"
    ]
    assert sorted(scores) == [("a", 1.0), ("b", 1.0), ("c", 0.0)]
