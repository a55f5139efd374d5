"""The official openai client against a real `atom serve`, plain and streamed: each feature of
the protocols reaches an OpenAI-format upstream as the openai SDK itself sends it, and an
Anthropic upstream as the anthropic SDK sends the same call (tests/api/conformance.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import openai
import pytest

from tests.api.conformance import CASES, REPLY, Case, Served, comparable, provider, upstreams
from tests.fakes.openai_server import fake_vector

ROUTED = [(case, model) for case in CASES if case.chat_route for model in upstreams(case)]


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0) as client:
        yield client


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(
    ("case", "model"), ROUTED, ids=[f"{case.name}-{model}" for case, model in ROUTED]
)
def test_each_feature_reaches_the_upstream_as_its_own_sdk_sends_it(
    served: Served, client: openai.OpenAI, case: Case, model: str, stream: bool
) -> None:
    if stream and "seed" in case.openai:
        # Another seed: the same one would be answered from the cache, with no upstream call.
        case = replace(case, openai={**case.openai, "seed": 8})
    with served.sent(model) as bodies:
        if stream:
            with client.chat.completions.stream(model=model, max_tokens=32, **case.openai) as s:
                answer: Any = s.get_final_completion()
        else:
            answer = client.chat.completions.create(model=model, max_tokens=32, **case.openai)

    [body] = bodies
    direct = served.direct(model, case)
    assert comparable(provider(model), body) == comparable(provider(model), direct)
    choice = answer.choices[0]
    if case.tool is not None:
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls
        assert (call.function.name, json.loads(call.function.arguments)) == (
            case.tool, {"city": "Paris"},
        )  # fmt: skip
    else:
        assert (choice.finish_reason, choice.message.content) == ("stop", REPLY)
    if case.openai.get("logprobs"):
        tokens = [t.token for t in choice.logprobs.content]
        assert "".join(tokens) == REPLY
        assert [len(t.top_logprobs) for t in choice.logprobs.content] == [2] * len(tokens)


@pytest.mark.parametrize("encoding", [{}, {"encoding_format": "float"}], ids=["sdk", "float"])
def test_embeddings_reach_the_upstream_as_the_openai_sdk_sends_them(
    served: Served, client: openai.OpenAI, encoding: Any
) -> None:
    texts = ["The cat sat.", "Budgets hold."]
    with served.sent("gpt") as bodies:
        # Without encoding_format the client asks for base64, and decodes it.
        answer = client.embeddings.create(model="gpt", input=texts, **encoding)
    with (
        served.sent("gpt") as direct,
        openai.OpenAI(base_url=served.gpt.base_url, api_key="sk-direct") as sdk,
    ):
        sdk.embeddings.create(model="gpt", input=texts, **encoding)

    # ATOM reads floats whatever its client asked for, and encodes them itself.
    assert bodies[0]["encoding_format"] == "float"
    assert {**bodies[0], "encoding_format": direct[0]["encoding_format"]} == direct[0]
    assert [row.embedding for row in answer.data] == [
        pytest.approx(fake_vector(text), abs=1e-6) for text in texts
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(
    ("extra", "name"),
    [({"seed": 7}, "seed"), ({"logprobs": True}, "logprobs"),
     ({"temperature": 1.5}, "temperature.above_1")],
)  # fmt: skip
def test_what_anthropic_cannot_honour_is_refused_by_name_or_dropped(
    served: Served, client: openai.OpenAI, extra: dict[str, Any], name: str, stream: bool
) -> None:
    ask: Any = [{"role": "user", "content": "Is it warm in Paris?"}]
    drop: Any = {"atom": {"drop_params": True}}
    if stream and "seed" in extra:
        extra = {"seed": 8}  # the plain call's seed would be answered from the cache
    with served.sent("claude") as bodies:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="claude", messages=ask, stream=stream, **extra)
        dropped = client.chat.completions.create(
            model="claude", messages=ask, stream=stream, **extra, extra_body=drop
        )
        said: Any = list(dropped)[-1] if stream else dropped

    error: Any = refused.value.body
    assert error["field"] == next(iter(extra))
    assert said.model_extra == {"atom": {"dropped_params": [name]}}
    [body] = bodies
    assert next(iter(extra)) not in body
