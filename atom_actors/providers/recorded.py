"""The `recorded` provider: answers as a model did in a recorded dataset, for offline evaluation."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from ..datasets import RecordedDataset, RecordedItem
from ._base import CallParams, Delta, Event, Finish, Message, Usage
from ._errors import ErrorKind, ProviderError
from ._prompt import last_user_text

# Splits before each word that follows whitespace: word-sized deltas, like a live stream's.
_WORD_START = re.compile(r"(?<=\s)(?=\S)")


class RecordedProvider:
    """Plays `model` from `dataset`: the last user message is looked up among the prompts.

    A prompt matches exactly, else after collapsing whitespace. Sampling parameters are
    ignored: the answer is the one recorded. Usage is the recorded or estimated token count,
    the mean logprob the recorded one.
    """

    def __init__(self, dataset: RecordedDataset, model: str, *, name: str | None = None) -> None:
        if model not in dataset.models:
            raise ValueError(f"model {model!r} is not in the dataset (models: {dataset.models})")
        self.name = name or model
        self._model = model
        answered = [item for item in dataset.items if model in item.answers]
        self._exact = {item.prompt: item for item in answered}
        self._normalised = {_normalise(item.prompt): item for item in answered}

    async def stream(self, messages: Sequence[Message], params: CallParams) -> AsyncIterator[Event]:
        """Yield the recorded answer word by word, then a Finish with its usage."""
        if params.embed:
            raise ProviderError(ErrorKind.BAD_REQUEST, "a recording holds no embeddings")
        item = self._lookup(last_user_text(messages))
        answer = item.answers[self._model]
        for piece in _WORD_START.split(answer.text):
            if piece:
                yield Delta(piece)
        yield Finish(
            usage=Usage(answer.prompt_tokens, answer.completion_tokens),
            finish_reason="stop",
            # As recorded, so that the cascade's confidence check reads online what it reads
            # offline.
            mean_logprob=answer.mean_logprob,
            raw={
                "correct": answer.correct,
                "gold": item.gold,
                "tokens_estimated": answer.tokens_estimated,
            },
        )

    async def aclose(self) -> None:
        """Nothing to release: the dataset is in memory."""

    def _lookup(self, prompt: str) -> RecordedItem:
        item = self._exact.get(prompt) or self._normalised.get(_normalise(prompt))
        if item is None:
            raise ProviderError(
                ErrorKind.BAD_REQUEST,
                f"no recorded answer for this prompt from {self._model!r} "
                f"(prompt starts {prompt[:60]!r})",
            )
        return item


def _normalise(text: str) -> str:
    return " ".join(text.split())
