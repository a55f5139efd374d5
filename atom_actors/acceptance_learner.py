"""The learned acceptance score online: fitted on the log's scored calls, off the hot path.

The ScoredCalls projection keeps where in the log the latest scores of calls by a reference or
a judge are. The learner reads each score, its request (the question, the answer format) and
its call (the reply), makes them an example (`scored_rung`, pure: the reply as a one-reply
rung, the way `atom replay evaluate` fits on recorded rungs) and fits
`acceptance.fit_acceptance` on a worker thread. Only requests that use the score ask for it
(`current`): the first waits for the history there is, later ones take the model as it stands
while a refit runs in the background once enough new scores have come in. No other request
touches it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from eventstore import EventStoreError, LogReader, RecordedEvent

from .acceptance import AcceptanceModel, ScoredRung, fit_acceptance
from .answers import AnswerFormat, AnswerKind
from .cascade import Attempt, view_of
from .events import request_stream
from .request import question_of

REFIT_EVERY: Final = 20
"""New scored calls that make a refit worth its time."""
REFIT_INTERVAL_S: Final = 10.0
"""At most one refit this often: a busy log's scores are batched."""
HISTORY: Final = 2_000
"""The most recent examples fitted on (a fit of 2,000 takes about 0.2 s of a core here)."""

log = logging.getLogger(__name__)


def answer_format_of(received: Mapping[str, Any]) -> AnswerFormat:
    """The answer format a RequestReceived names; ValueError for one this ATOM does not know."""
    return AnswerFormat(
        AnswerKind(received.get("answer_format", "text")), received.get("answer_field")
    )


def scored_rung(
    received: Mapping[str, Any], completed: Mapping[str, Any], score: float
) -> ScoredRung:
    """One example of history: a call's reply (ModelCallCompleted) as a one-reply rung of its
    request (RequestReceived), with the score it earned."""
    reply = Attempt(
        step=0,
        model=completed["model"],
        text=completed["text"],
        mean_logprob=completed.get("mean_logprob"),
    )
    fmt = answer_format_of(received)
    prompt = question_of(received.get("messages", []))
    return ScoredRung(rung=view_of(prompt, fmt, 0, [reply]), score=score)


def examples(
    scores: Sequence[RecordedEvent], streams: Mapping[str, Sequence[RecordedEvent]]
) -> list[ScoredRung]:
    """The examples of ScoredRecorded events of calls, in their order, given each request's
    events; a call whose request or reply the streams do not hold is skipped."""
    found = []
    for scored in scores:
        request_id, call_id = scored.data["request_id"], scored.data["subject"]
        score = scored.data["score"]
        events = streams.get(request_id, ())
        received = next((e.data for e in events if e.type == "RequestReceived"), None)
        completed = next(
            (
                e.data
                for e in events
                if e.type == "ModelCallCompleted" and e.data.get("call_id") == call_id
            ),
            None,
        )
        if received is None or completed is None:
            continue
        try:
            found.append(scored_rung(received, completed, float(score)))
        except ValueError:
            continue
    return found


class AcceptanceLearner:
    """Keeps the acceptance model fitted on the latest scored calls of the log."""

    def __init__(
        self,
        reader: LogReader,
        scored_calls: Callable[[], Mapping[str, Any]],
        *,
        refit_every: int = REFIT_EVERY,
        refit_interval_s: float = REFIT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._scored_calls = scored_calls
        self._refit_every = refit_every
        self._refit_interval_s = refit_interval_s
        self._clock = clock
        self.model: AcceptanceModel | None = None
        self._history: deque[ScoredRung] = deque(maxlen=HISTORY)
        # The ScoredCalls count read so far, and at the last fit (and when it was).
        self._read = 0
        self._fitted_count = 0
        self._fitted_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def examples(self) -> int:
        """How many scored answers the current history holds."""
        return len(self._history)

    async def current(self) -> AcceptanceModel | None:
        """The model to judge with now (None: nothing scored yet).

        The first call waits for the history the log holds; later ones start a refit in the
        background when REFIT_EVERY new scores have come in since the last, at most once every
        REFIT_INTERVAL_S, and take the model as it stands.
        """
        count = self._scored_calls()["count"]
        if self._task is None and count > self._fitted_count:
            due = self._fitted_at is None or (
                count - self._fitted_count >= self._refit_every
                and self._clock() - self._fitted_at >= self._refit_interval_s
            )
            if due:
                self._task = asyncio.create_task(self.refresh())
                self._task.add_done_callback(self._refreshed)
        if self._fitted_at is None and self._task is not None:
            # A request's cancellation must not cancel the fit that others wait for.
            await asyncio.shield(self._task)
        return self.model

    async def drain(self) -> None:
        """Wait for a refit under way (at shutdown)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("the acceptance model was not refitted", exc_info=task.exception())

    async def refresh(self) -> None:
        """Read the scored calls not read yet, and refit on the history."""
        state = self._scored_calls()
        count, recent = state["count"], list(state["recent"])
        fresh = recent[max(0, len(recent) - (count - self._read)) :]
        scores: list[RecordedEvent] = []
        streams: dict[str, list[RecordedEvent]] = {}
        try:
            for position in fresh:
                scores += await self._reader.read_page_async(position - 1, 1)
            for request_id in dict.fromkeys(e.data["request_id"] for e in scores):
                streams[request_id] = await self._reader.read_stream_async(
                    request_stream(request_id)
                )
        except EventStoreError:
            log.warning("the log could not be read for the acceptance model", exc_info=True)
            return
        self._history.extend(examples(scores, streams))
        self._read = count
        if self._history:
            self.model = await asyncio.to_thread(fit_acceptance, list(self._history))
        self._fitted_count, self._fitted_at = count, self._clock()
