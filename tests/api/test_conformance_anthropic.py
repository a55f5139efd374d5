"""The official anthropic client against a real `atom serve`, plain and streamed: each feature of
the Messages API reaches an Anthropic upstream as the anthropic SDK itself sends it, and an
OpenAI-format upstream as the openai SDK sends the same call (tests/api/conformance.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.api.conformance import (
    CASES,
    REPLY,
    Case,
    Served,
    anthropic_kwargs,
    comparable,
    provider,
    upstreams,
)

ROUTED = [(case, model) for case in CASES if case.messages_route for model in upstreams(case)]


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=served.url, api_key=served.key, max_retries=0) as client:
        yield client


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(
    ("case", "model"), ROUTED, ids=[f"{case.name}-{model}" for case, model in ROUTED]
)
def test_each_feature_reaches_the_upstream_as_its_own_sdk_sends_it(
    served: Served, client: anthropic.Anthropic, case: Case, model: str, stream: bool
) -> None:
    typed, extra = anthropic_kwargs(case.anthropic)
    call: Any = {"model": model, "max_tokens": 32, **typed, "extra_body": extra}
    with served.sent(model) as bodies:
        if stream:
            with client.messages.stream(**call) as events:
                message = events.get_final_message()
        else:
            message = client.messages.create(**call)

    [body] = bodies
    direct = served.direct(model, case)
    assert comparable(provider(model), body) == comparable(provider(model), direct)
    if case.tool is not None:
        assert message.stop_reason == "tool_use"
        calls = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
        assert calls == [(case.tool, {"city": "Paris"})]
    else:
        assert message.stop_reason == "end_turn"
        assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", REPLY)]
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_token_counts_are_answered_by_atom_without_an_upstream_call(
    served: Served, client: anthropic.Anthropic
) -> None:
    with served.sent("claude") as bodies:
        counted = client.messages.count_tokens(
            model="claude", messages=[{"role": "user", "content": "Is it warm in Paris?"}]
        )

    assert counted.input_tokens > 0
    assert bodies == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_top_k_is_refused_for_an_openai_model_by_name_or_dropped(
    served: Served, client: anthropic.Anthropic, stream: bool
) -> None:
    ask: Any = [{"role": "user", "content": "Is it warm in Paris?"}]
    with served.sent("gpt") as bodies:
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.messages.create(
                model="gpt", max_tokens=32, messages=ask, stream=stream, extra_body={"top_k": 5}
            )
        dropped = client.messages.with_raw_response.create(
            model="gpt", max_tokens=32, messages=ask, extra_body={"top_k": 5},
            extra_headers={"X-Atom-Drop-Params": "true"},
        )  # fmt: skip

    error: Any = refused.value.body
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["field"] == "top_k"
    assert dropped.headers["X-Atom-Dropped-Params"] == "top_k"
    [body] = bodies
    assert "top_k" not in body
