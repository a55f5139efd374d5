"""The recorded provider answers as the recorded model did."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from atom_actors.datasets import RecordedAnswer, RecordedDataset, RecordedItem, load_routellm
from atom_actors.providers._base import AsyncProvider, CallParams, Delta, Event, Finish, Message
from atom_actors.providers._errors import ErrorKind, ProviderError
from atom_actors.providers.recorded import RecordedProvider
from tests.paths import GSM8K

ANSWER = "The sum is\n 4.\n\n#### 4"
DATASET = RecordedDataset(
    models=("small", "big"),
    items=(
        RecordedItem(
            prompt="What is  2 + 2?",
            gold="4",
            answers={
                "small": RecordedAnswer(ANSWER, True, 9, 7, tokens_estimated=False),
                "big": RecordedAnswer("5", False, 9, 1, False, mean_logprob=-0.25),
            },
        ),
        RecordedItem(
            prompt="Only big knows",
            gold=None,
            answers={"big": RecordedAnswer("yes", None, 4, 1, tokens_estimated=True)},
        ),
    ),
)


async def _collect(provider: RecordedProvider, messages: Sequence[Message]) -> list[Event]:
    return [event async for event in provider.stream(messages, CallParams())]


def _user(text: str) -> list[Message]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


async def test_streams_the_recorded_text_in_words_then_its_usage() -> None:
    provider = RecordedProvider(DATASET, "small")
    assert isinstance(provider, AsyncProvider)
    events = await _collect(provider, _user("What is  2 + 2?"))
    *deltas, finish = events
    assert all(isinstance(d, Delta) for d in deltas)
    assert len(deltas) > 3
    assert "".join(d.text for d in deltas if isinstance(d, Delta)) == ANSWER
    assert isinstance(finish, Finish)
    assert finish.usage is not None
    assert (finish.usage.prompt_tokens, finish.usage.completion_tokens) == (9, 7)
    assert finish.finish_reason == "stop"
    assert finish.raw == {"correct": True, "gold": "4", "tokens_estimated": False}
    assert finish.mean_logprob is None, "small's answer was recorded without logprobs"


async def test_plays_the_model_it_was_given_and_its_name() -> None:
    provider = RecordedProvider(DATASET, "big", name="recorded-big")
    assert provider.name == "recorded-big"
    events = await _collect(provider, _user("What is  2 + 2?"))
    assert events[0] == Delta("5")
    assert isinstance(events[-1], Finish) and events[-1].mean_logprob == -0.25


async def test_matches_after_whitespace_normalisation_and_text_parts() -> None:
    messages: list[Message] = [
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": [{"type": "text", "text": " What is 2 +\n2? "}]},
    ]
    events = await _collect(RecordedProvider(DATASET, "small"), messages)
    assert isinstance(events[-1], Finish)
    assert events[-1].raw["gold"] == "4"


@pytest.mark.parametrize(
    ("model", "prompt"), [("small", "What is 3 + 3?"), ("small", "Only big knows")]
)
async def test_an_unrecorded_prompt_is_a_bad_request(model: str, prompt: str) -> None:
    with pytest.raises(ProviderError, match="no recorded answer for this prompt") as caught:
        await _collect(RecordedProvider(DATASET, model), _user(prompt))
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert not caught.value.retryable


def test_refuses_a_model_the_dataset_does_not_hold() -> None:
    with pytest.raises(ValueError, match="not in the dataset"):
        RecordedProvider(DATASET, "gpt-5")


async def test_answers_every_prompt_of_the_shared_gsm8k_data() -> None:
    dataset = load_routellm(GSM8K)
    provider = RecordedProvider(dataset, "gpt-4-1106-preview")
    for item in dataset.items[:50]:
        events = await _collect(provider, [{"role": "user", "content": item.prompt}])
        text = "".join(e.text for e in events if isinstance(e, Delta))
        assert text == item.answers["gpt-4-1106-preview"].text
    await provider.aclose()
