"""The official openai client against ATOM's OpenAI-compatible routes, unchanged but for its
base URL and key: chat completions streamed and not, router aliases, the model list, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from api.routes.openai_compat import _chunk, content_chunks
from tests.api.conftest import ANSWER, DISSENT, Fleet
from tests.fakes.faults import Fault

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is six times seven?"}]


@pytest.fixture
async def client(fleet: Fleet) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=fleet.api.url + "/v1", api_key=fleet.key, max_retries=0, timeout=30
    ) as client:
        yield client


def _completed(fleet: Fleet, completion_id: str) -> dict[str, Any]:
    request_id = completion_id.removeprefix("chatcmpl-")
    [event] = [e for e in fleet.events(request_id) if e.type == "RequestCompleted"]
    data: dict[str, Any] = event.data
    return data


async def test_a_completion_names_the_model_and_counts_its_tokens(
    fleet: Fleet, client: AsyncOpenAI
) -> None:
    completion = await client.chat.completions.create(model="mid", messages=HI, max_tokens=20)
    assert completion.object == "chat.completion"
    assert completion.model == "mid"
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == ANSWER
    assert choice.finish_reason == "stop"
    recorded = _completed(fleet, completion.id)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == recorded["prompt_tokens"]
    assert completion.usage.completion_tokens == recorded["completion_tokens"] == 4
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 4
    [received] = [e for e in fleet.store.read_all() if e.type == "RequestReceived"]
    assert received.data["endpoint"] == "v1/chat/completions"
    assert received.data["params"]["max_tokens"] == 20
    [sent] = fleet.upstream.requests
    assert (sent.body["model"], sent.body["messages"]) == ("mid", HI)


async def test_a_streamed_completion_concatenates_to_the_answer_and_ends_with_usage(
    fleet: Fleet, client: AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="cheap",
        messages=HI,
        max_completion_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    *_, last = chunks
    assert last.choices == []
    assert last.usage is not None
    recorded = _completed(fleet, last.id)
    assert last.usage.completion_tokens == recorded["completion_tokens"] == 4
    assert last.usage.prompt_tokens == recorded["prompt_tokens"]
    assert recorded["text"] == ANSWER
    # max_completion_tokens is max_tokens by its newer name.
    assert fleet.upstream.requests[0].body["max_tokens"] == 20


async def test_without_include_usage_no_usage_chunk_is_sent(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="cheap", messages=HI, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER


@pytest.mark.parametrize("stream", [False, True])
async def test_a_router_alias_picks_the_model(
    fleet: Fleet, client: AsyncOpenAI, stream: bool
) -> None:
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="atom:cost_first", messages=HI, stream=True
            )
        ]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        model = chunks[0].model
    else:
        completion = await client.chat.completions.create(model="atom:cost_first", messages=HI)
        text, model = completion.choices[0].message.content or "", completion.model
    assert (text, model) == (ANSWER, "atom:cost_first")
    assert [r.body["model"] for r in fleet.upstream.requests] == ["cheap"]
    [decided] = [e for e in fleet.store.read_all() if e.type == "RouteDecided"]
    assert (decided.data["strategy"], decided.data["chosen"]) == ("cost_first", "cheap")


@pytest.mark.parametrize("stream", [False, True])
async def test_an_ensemble_alias_answers_with_the_majority(
    fleet: Fleet, client: AsyncOpenAI, stream: bool
) -> None:
    model = "atom:ensemble:majority_vote"
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model=model, messages=HI, stream=True, stream_options={"include_usage": True}
            )
        ]
        contents = [c.choices[0].delta.content for c in chunks if c.choices]
        # An ensemble's answer is known only once its members are combined: one piece.
        assert [c for c in contents if c] == [ANSWER]
        usage = chunks[-1].usage
    else:
        completion = await client.chat.completions.create(model=model, messages=HI)
        assert completion.choices[0].message.content == ANSWER
        assert completion.model == model
        usage = completion.usage
    # The three strongest text models answered; two said 42, dear said 41.
    assert sorted(r.body["model"] for r in fleet.upstream.requests) == ["cheap", "dear", "mid"]
    calls = [e.data for e in fleet.store.read_all() if e.type == "ModelCallCompleted"]
    assert usage is not None
    assert usage.completion_tokens == sum(c["completion_tokens"] for c in calls)
    [combined] = [e for e in fleet.store.read_all() if e.type == "EnsembleCombined"]
    assert combined.data["result"]["agreement"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("stream", [False, True])
async def test_the_cascade_alias_answers_once_the_ladder_has_kept_an_answer(
    fleet: Fleet, client: AsyncOpenAI, stream: bool
) -> None:
    model = "atom:cascade"
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model=model, messages=HI, stream=True
            )
        ]
        contents = [c.choices[0].delta.content for c in chunks if c.choices]
        # The answer is known only once a rung's is kept: no rejected rung's tokens go out.
        assert [c for c in contents if c] == [DISSENT]
    else:
        completion = await client.chat.completions.create(model=model, messages=HI)
        assert (completion.choices[0].message.content, completion.model) == (DISSENT, model)
    # Nothing scored yet: the learned check keeps no cheaper answer, and dear, the top, answers.
    assert [r.body["model"] for r in fleet.upstream.requests] == ["cheap", "mid", "dear"]
    stepped = [e.data["action"] for e in fleet.store.read_all() if e.type == "CascadeStepped"]
    assert stepped == ["call", "call", "call", "accept"]


async def test_the_model_list_has_the_configured_models_and_the_aliases(
    client: AsyncOpenAI,
) -> None:
    ids = [model.id async for model in client.models.list()]
    assert ids[:4] == ["cheap", "mid", "dear", "analyst"]
    assert {"atom:cost_first", "atom:cascade", "atom:ensemble:majority_vote"} <= set(ids)
    assert "atom:ensemble" not in ids


async def test_errors_surface_as_the_clients_exceptions_with_the_json_error(
    fleet: Fleet, client: AsyncOpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="gpt-nope", messages=HI)
    assert missing.value.status_code == 404
    assert missing.value.body == {
        "type": "not_found",
        "message": "no model named 'gpt-nope'",
        "field": "model",
    }
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="atom:fastest", messages=HI)
    assert isinstance(bad.value.body, dict)
    assert bad.value.body["field"] == "model"
    assert "atom:cost_first" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="cheap", messages=HI, n=2)
    assert isinstance(bad.value.body, dict)
    assert bad.value.body["field"] == "n"

    fleet.upstream.fail(Fault.http_error(401), model="dear")
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model="dear", messages=HI)
    assert failed.value.status_code == 502
    assert isinstance(failed.value.body, dict)
    assert failed.value.body["type"] == "upstream_failed"

    wrong = AsyncOpenAI(base_url=fleet.api.url + "/v1", api_key="atom_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await wrong.models.list()
    await wrong.close()


async def test_a_failure_mid_stream_raises_in_the_clients_iteration(
    fleet: Fleet, client: AsyncOpenAI
) -> None:
    fleet.upstream.fail(Fault.error_event(after=2), model="cheap")
    stream = await client.chat.completions.create(model="cheap", messages=HI, stream=True)
    with pytest.raises(openai.APIError) as failed:
        async for _ in stream:
            pass
    assert isinstance(failed.value.body, dict)
    assert failed.value.body["type"] == "upstream_failed"


async def test_a_stream_refused_before_its_first_chunk_raises_the_status_error(
    client: AsyncOpenAI,
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="gpt-nope", messages=HI, stream=True)
    assert missing.value.body == {
        "type": "not_found",
        "message": "no model named 'gpt-nope'",
        "field": "model",
    }


async def test_the_blocking_client_works_too(fleet: Fleet) -> None:
    def run() -> tuple[str | None, str]:
        with OpenAI(base_url=fleet.api.url + "/v1", api_key=fleet.key, max_retries=0) as sync:
            completion = sync.chat.completions.create(model="atom:cost_first", messages=HI)
            stream = sync.chat.completions.create(model="mid", messages=HI, stream=True)
            streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            return completion.choices[0].message.content, streamed

    assert await asyncio.to_thread(run) == (ANSWER, ANSWER)


@given(text=st.text(), model=st.text(), created=st.integers(0, 2**40))
def test_a_content_chunk_from_the_template_is_the_chunk_encoded_whole(
    text: str, model: str, created: int
) -> None:
    chunk = content_chunks("r-1", model, created)
    assert chunk(text) == _chunk("r-1", model, created, {"content": text}, None)
