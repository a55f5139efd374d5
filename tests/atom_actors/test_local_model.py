"""The real Gemma 3 270M, answering through its supervised actor."""

from __future__ import annotations

from collections.abc import Callable

from atom_actors.providers import CallParams, make_provider
from atom_actors.system import ActorSystem
from eventstore import EventStore
from tests.atom_actors.conftest import gemma_spec


async def test_gemma_answers_through_its_actor_and_every_token_is_logged(
    log: EventStore, make_system: Callable[..., ActorSystem]
) -> None:
    gemma = gemma_spec()
    system = make_system([gemma], factory=make_provider)
    messages = [{"role": "user", "content": "Name a colour."}]
    params = CallParams(max_tokens=6, temperature=0.0, seed=1)
    streamed: list[str] = []
    result = await system.caller.call(
        "gemma-3-270m",
        messages,
        params,
        request_id="g",
        on_delta=lambda d, _: streamed.append(d.text),
    )
    assert result.completion_tokens >= 1 and result.text == "".join(streamed)
    assert result.cost_pico == 0
    events = log.read_stream("request-g")
    assert [events[0].type, events[-1].type] == ["ModelCallStarted", "ModelCallCompleted"]
    logged = "".join(d[0] for e in events if e.type == "TokensStreamed" for d in e.data["deltas"])
    assert logged == result.text
    assert events[-1].data["tokens_per_s"] is None or events[-1].data["tokens_per_s"] > 0
    # Greedy decoding through the actor gives what the provider gives alone.
    again = await system.caller.call("gemma-3-270m", messages, params, request_id="g2")
    assert again.text == result.text
