"""OpenAIProvider against the fake OpenAI upstream over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

import pytest

from atom_actors.providers._base import (
    AsyncProvider,
    CallParams,
    Delta,
    Deltas,
    Event,
    Finish,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from atom_actors.providers._errors import ErrorKind, ProviderError
from atom_actors.providers._http import Timeouts
from atom_actors.providers.openai import OpenAIProvider
from tests.fakes.drain import Drained, drain
from tests.fakes.faults import Behaviour, Fault, ScriptedCall
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.text import count_prompt_tokens, logprob, tokenize

MakeProvider = Callable[..., OpenAIProvider]
REPLY = "The quick brown fox jumps over the lazy dog."
MESSAGES = [{"role": "user", "content": "Tell me about the fox."}]
PROMPT_TOKENS = count_prompt_tokens(["Tell me about the fox."], messages=1, images=0)


@pytest.fixture
def fake(openai_fake: FakeOpenAI) -> FakeOpenAI:
    openai_fake.default = Behaviour(reply=REPLY)
    return openai_fake


def test_implements_the_provider_interface() -> None:
    provider = OpenAIProvider("gpt-4", name="gpt-4-main")
    assert isinstance(provider, AsyncProvider)
    assert provider.name == "gpt-4-main"


async def test_streamed_deltas_concatenate_to_the_reply(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    drained = await drain(make_openai().stream(MESSAGES, CallParams()))

    assert drained.text == REPLY
    assert [d.text for d in drained.deltas] == tokenize(REPLY)
    assert drained.finish is not None
    assert drained.finish.finish_reason == "stop"
    assert drained.finish.usage == Usage(PROMPT_TOKENS, len(tokenize(REPLY)))
    assert drained.finish.mean_logprob is None


async def test_tokens_that_arrive_together_come_as_one_item_and_paced_ones_one_by_one(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    """A burst read at once costs the caller one step; a paced stream is handed on as it comes."""
    burst = [e async for e in make_openai().stream(MESSAGES, CallParams())]
    fake.default = Behaviour(reply=REPLY, tokens_per_second=100)
    paced = [e async for e in make_openai().stream(MESSAGES, CallParams())]

    # The fake writes an unpaced answer in one write: fewer items than tokens.
    assert any(isinstance(e, Deltas) for e in burst)
    assert len(burst) - 1 < len(tokenize(REPLY))
    assert all(isinstance(e, Delta) for e in paced[:-1])
    assert [e.text for e in paced[:-1] if isinstance(e, Delta)] == tokenize(REPLY)


async def test_sends_only_the_parameters_that_are_set(
    fake: FakeOpenAI, make_openai: MakeProvider, api_key: str
) -> None:
    await drain(make_openai("gpt-4o").stream(MESSAGES, CallParams()))

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {api_key}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_max_tokens_cuts_the_reply_with_finish_reason_length(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    drained = await drain(make_openai().stream(MESSAGES, CallParams(max_tokens=3)))

    assert drained.text == "The quick brown"
    assert drained.finish is not None
    assert drained.finish.finish_reason == "length"
    assert drained.finish.usage is not None
    assert drained.finish.usage.completion_tokens == 3


async def test_stop_sequence_ends_the_reply(fake: FakeOpenAI, make_openai: MakeProvider) -> None:
    drained = await drain(make_openai().stream(MESSAGES, CallParams(stop=("fox", "dog"))))

    assert drained.text == "The quick brown "
    assert drained.finish is not None
    assert drained.finish.finish_reason == "stop"


async def test_logprobs_give_each_delta_its_logprob_and_the_mean(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    drained = await drain(make_openai().stream(MESSAGES, CallParams(logprobs=True)))

    expected = [logprob(token) for token in tokenize(REPLY)]
    assert [d.logprob for d in drained.deltas] == expected
    assert drained.finish is not None
    assert drained.finish.mean_logprob == pytest.approx(sum(expected) / len(expected))
    assert fake.requests[0].body["logprobs"] is True


async def test_a_server_that_reports_no_usage_leaves_it_to_be_counted_a_token_a_chunk(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    fake.default = Behaviour(reply=REPLY, reports_usage=False)

    drained = await drain(make_openai().stream(MESSAGES, CallParams()))

    assert drained.finish is not None
    assert drained.finish.usage is None and drained.finish.raw["usage"] is None
    assert [d.tokens for d in drained.deltas] == [1] * len(tokenize(REPLY))


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(reply=REPLY),
        Behaviour(reply=REPLY, tokens_per_second=2000),
        Behaviour(reply=REPLY, end_delay=0.05),
    ],
    ids=["one-write", "paced", "late-end"],
)
async def test_sequential_calls_reuse_one_pooled_connection(
    fake: FakeOpenAI, make_openai: MakeProvider, behaviour: Behaviour
) -> None:
    fake.default = behaviour
    provider = make_openai()
    for _ in range(3):
        await drain(provider.stream(MESSAGES, CallParams()))

    assert len({request.client_port for request in fake.requests}) == 1


async def test_concurrent_calls_each_get_their_own_answer(
    openai_fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    provider = make_openai()
    prompts = [f"question {n}" for n in range(8)]

    results = await asyncio.gather(
        *(drain(provider.stream([{"role": "user", "content": p}], CallParams())) for p in prompts)
    )

    assert [r.text for r in results] == [f"You said: {p}" for p in prompts]


async def test_a_closed_provider_opens_a_new_session_when_used_again(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    provider = make_openai()
    await drain(provider.stream(MESSAGES, CallParams()))
    await provider.aclose()
    await provider.aclose()

    drained = await drain(provider.stream(MESSAGES, CallParams()))

    assert drained.text == REPLY


@pytest.mark.parametrize(
    ("fault", "kind", "status", "retry_after"),
    [
        (Fault.http_error(429, retry_after="7"), ErrorKind.RATE_LIMITED, 429, 7.0),
        (Fault.http_error(401), ErrorKind.AUTH, 401, None),
        (Fault.http_error(403), ErrorKind.AUTH, 403, None),
        (Fault.http_error(400), ErrorKind.BAD_REQUEST, 400, None),
        (Fault.http_error(404), ErrorKind.BAD_REQUEST, 404, None),
        (Fault.http_error(422), ErrorKind.BAD_REQUEST, 422, None),
        (Fault.http_error(500), ErrorKind.UPSTREAM_ERROR, 500, None),
        (Fault.http_error(502), ErrorKind.UPSTREAM_ERROR, 502, None),
        (Fault.http_error(503, retry_after="1.5"), ErrorKind.OVERLOADED, 503, 1.5),
        (Fault.reset(), ErrorKind.UPSTREAM_ERROR, None, None),
    ],
    ids=lambda value: str(value.kind.value if isinstance(value, Fault) else value),
)
async def test_failures_before_the_answer_map_to_kinds(
    fake: FakeOpenAI,
    make_openai: MakeProvider,
    fault: Fault,
    kind: ErrorKind,
    status: int | None,
    retry_after: float | None,
) -> None:
    fake.fail(fault)

    with pytest.raises(ProviderError) as raised:
        await drain(make_openai().stream(MESSAGES, CallParams()))

    assert raised.value.kind is kind
    assert raised.value.status == status
    assert raised.value.retry_after == retry_after
    assert raised.value.retryable is (kind not in (ErrorKind.AUTH, ErrorKind.BAD_REQUEST))


async def test_the_upstream_error_message_is_kept(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    fake.fail(Fault.http_error(400))

    with pytest.raises(ProviderError, match="Injected failure"):
        await drain(make_openai().stream(MESSAGES, CallParams()))


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.truncate(after=2), ErrorKind.UPSTREAM_ERROR),
        (Fault.malformed(after=2), ErrorKind.UPSTREAM_ERROR),
        (Fault.reset(after=2), ErrorKind.UPSTREAM_ERROR),
        (Fault.error_event(after=2, status=500), ErrorKind.UPSTREAM_ERROR),
        (Fault.error_event(after=2, status=429), ErrorKind.RATE_LIMITED),
        (Fault.error_event(after=2, status=400), ErrorKind.BAD_REQUEST),
        (Fault.error_event(after=2, status=401), ErrorKind.AUTH),
    ],
    ids=lambda value: str(value.kind.value if isinstance(value, Fault) else value),
)
async def test_failures_mid_stream_map_to_kinds_after_the_deltas_sent(
    fake: FakeOpenAI, make_openai: MakeProvider, fault: Fault, kind: ErrorKind
) -> None:
    fake.fail(fault)
    drained = Drained()

    with pytest.raises(ProviderError) as raised:
        await drain(make_openai().stream(MESSAGES, CallParams()), into=drained)

    assert raised.value.kind is kind
    assert drained.text == "The quick"


async def test_a_wrong_api_key_is_an_auth_error(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    fake.api_key = "sk-the-right-one"

    with pytest.raises(ProviderError) as raised:
        await drain(make_openai(api_key="sk-a-wrong-one").stream(MESSAGES, CallParams()))

    assert raised.value.kind is ErrorKind.AUTH
    assert not raised.value.retryable


async def test_faults_for_one_model_spare_the_others(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    fake.fail(Fault.http_error(500), model="broken")

    for _ in range(2):
        with pytest.raises(ProviderError):
            await drain(make_openai("broken").stream(MESSAGES, CallParams()))
    drained = await drain(make_openai("healthy").stream(MESSAGES, CallParams()))

    assert drained.text == REPLY


async def test_a_refused_connection_is_a_retryable_upstream_error(
    make_openai: MakeProvider, closed_port_url: str
) -> None:
    with pytest.raises(ProviderError, match="cannot connect") as raised:
        await drain(make_openai(base_url=closed_port_url).stream(MESSAGES, CallParams()))

    assert raised.value.kind is ErrorKind.UPSTREAM_ERROR
    assert raised.value.retryable


async def test_a_connect_that_hangs_times_out(
    make_openai: MakeProvider, blackhole_url: str
) -> None:
    timeouts = Timeouts(connect=0.2, first_token=5, idle=5, total=5)
    provider = make_openai(base_url=blackhole_url, timeouts=timeouts)

    with pytest.raises(ProviderError, match=r"cannot connect within 0\.2 s") as raised:
        await asyncio.wait_for(drain(provider.stream(MESSAGES, CallParams())), 3)

    assert raised.value.kind is ErrorKind.TIMEOUT


@pytest.mark.parametrize(
    ("behaviour", "fault", "timeouts", "message", "deltas"),
    [
        (
            Behaviour(reply=REPLY, first_token_delay=3),
            None,
            Timeouts(first_token=0.2),
            r"no first token within 0\.2 s",
            range(1),
        ),
        (Behaviour(reply=REPLY), Fault.hang(), Timeouts(first_token=0.2), "first token", range(1)),
        (
            Behaviour(reply=REPLY),
            Fault.hang(after=2),
            Timeouts(first_token=5, idle=0.2),
            r"stalled for 0\.2 s",
            range(2, 3),
        ),
        (
            Behaviour(reply=REPLY, tokens_per_second=10),
            None,
            Timeouts(first_token=5, idle=5, total=0.5),
            r"no complete answer within 0\.5 s",
            range(1, len(tokenize(REPLY))),
        ),
    ],
    ids=["first-token", "no-headers", "idle", "total"],
)
async def test_deadlines_time_out_and_close_the_upstream_connection(
    fake: FakeOpenAI,
    make_openai: MakeProvider,
    behaviour: Behaviour,
    fault: Fault | None,
    timeouts: Timeouts,
    message: str,
    deltas: range,
) -> None:
    fake.default = behaviour
    if fault is not None:
        fake.fail(fault)
    drained = Drained()

    with pytest.raises(ProviderError, match=message) as raised:
        await drain(make_openai(timeouts=timeouts).stream(MESSAGES, CallParams()), into=drained)

    assert raised.value.kind is ErrorKind.TIMEOUT
    assert raised.value.retryable
    assert len(drained.deltas) in deltas
    await fake.wait_for_disconnects(1)


async def test_cancelling_the_consumer_closes_the_upstream_connection(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    fake.default = Behaviour(reply=REPLY, tokens_per_second=20)
    first = asyncio.Event()

    async def consume() -> None:
        async for event in make_openai().stream(MESSAGES, CallParams()):
            if not isinstance(event, Finish):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for_disconnects(1)


async def test_cancelling_before_any_answer_closes_the_upstream_connection(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    fake.fail(Fault.hang())
    task = asyncio.create_task(drain(make_openai().stream(MESSAGES, CallParams())))
    while not fake.requests:
        await asyncio.sleep(0.005)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for_disconnects(1)


async def test_a_consumer_that_stops_early_closes_the_upstream_connection(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    fake.default = Behaviour(reply=REPLY, tokens_per_second=20)

    async with aclosing(make_openai().stream(MESSAGES, CallParams())) as events:
        async for _ in events:
            break

    await fake.wait_for_disconnects(1)


WEATHER = Tool(
    "weather",
    "The weather in a city now.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


async def test_tools_go_as_they_are_and_calls_stream_as_pieces_in_order(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    fake.default = Behaviour(
        tool_calls=(
            ScriptedCall("weather", {"city": "Paris"}),
            ScriptedCall("weather", {"city": "Rome"}),
        )
    )
    params = CallParams(tools=(WEATHER,), tool_choice=ToolChoice("auto"), parallel_tool_calls=True)
    items = [e async for e in make_openai().stream(MESSAGES, params)]
    drained = await drain(_replay(items))

    body = fake.requests[0].body
    assert body["tools"] == [WEATHER.to_openai()]
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("auto", True)
    assert drained.text == ""
    assert drained.tool_calls == (
        ToolCall("call_fake1", "weather", '{"city":"Paris"}'),
        ToolCall("call_fake2", "weather", '{"city":"Rome"}'),
    )
    # Each piece is its own item, in the order it came: the first call whole before the second.
    pieces = [e for e in items if isinstance(e, ToolCallDelta)]
    assert [p.index for p in pieces] == sorted(p.index for p in pieces)
    assert [(p.id, p.name) for p in pieces if p.name] == [
        ("call_fake1", "weather"),
        ("call_fake2", "weather"),
    ]
    assert drained.finish is not None and drained.finish.finish_reason == "tool_calls"
    assert drained.finish.usage is not None
    assert drained.finish.usage.completion_tokens == 2 * (1 + 5)


async def test_text_and_a_call_keep_their_order(
    fake: FakeOpenAI, make_openai: MakeProvider
) -> None:
    fake.default = Behaviour(
        reply="Checking.", tool_calls=(ScriptedCall("weather", {"city": "Oslo"}),)
    )
    items = [e async for e in make_openai().stream(MESSAGES, CallParams(tools=(WEATHER,)))]

    kinds = [type(e).__name__ for e in items]
    assert kinds[-1] == "Finish"
    assert "ToolCallDelta" not in kinds[: kinds.index("Delta") + 1]


async def _replay(items: list[Event]) -> AsyncIterator[Event]:
    for item in items:
        yield item
