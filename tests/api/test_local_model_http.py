"""The real local Gemma 3 270M, once, through HTTP: an answer with text, usage and no cost."""

from __future__ import annotations

import aiohttp

from api.auth import Role
from tests.api.conftest import StartGateway
from tests.atom_actors.conftest import gemma_spec


async def test_gemma_answers_over_http_on_the_record_at_no_cost(
    start_gateway: StartGateway,
) -> None:
    gemma = gemma_spec()
    api = await start_gateway([gemma])
    body = {"model": "gemma-3-270m", "prompt": "Name a colour.", "max_tokens": 4,
            "temperature": 0}  # fmt: skip
    status, answer, _ = await api.call(
        "POST",
        "/api/advanced-ai/process",
        key=api.keys[Role.USER],
        json=body,
        timeout=aiohttp.ClientTimeout(total=120),
    )
    assert status == 200, answer
    assert answer["model"] == "gemma-3-270m"
    assert answer["text"].strip()
    assert 1 <= answer["usage"]["completion_tokens"] <= 4
    assert answer["usage"]["prompt_tokens"] > 0
    assert answer["cost_usd"] == 0
    assert answer["finish_reason"] in ("stop", "length")
    events = api.services.store.read_stream(f"request-{answer['request_id']}")
    assert events[-1].type == "RequestCompleted"
    assert events[-1].position == answer["position"]
    assert events[-1].data["text"] == answer["text"]
    streamed = "".join(
        delta[0] for e in events if e.type == "TokensStreamed" for delta in e.data["deltas"]
    )
    assert streamed == answer["text"]
