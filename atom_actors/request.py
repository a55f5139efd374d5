"""One request as the gateway sees it: what was asked, what it has done so far, how it ended."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from eventstore import BufferedStream

from .answers import FREE_TEXT, AnswerFormat
from .cascade import Acceptance
from .cost import PromptSize, Settlement, to_usd
from .events import DomainEvent
from .principal import Principal
from .providers import CallParams, ToolCall, ToolCallDelta
from .snapshot import CascadeSpec, EnsembleSpec, Strategy

Publish = Callable[[str, dict[str, Any], str], object]
"""publish(topic, payload, tenancy): live news of a request, for those who may see it."""
TokenSink = Callable[[str, str, float], None]
"""Called with (member or model, text, ms since the request started) for every delta."""
ToolCallEvents = Callable[[str, ToolCallDelta, float], None]
"""Called with (member or model, a piece of a tool call, ms since the request started)."""

DEADLINE_MARGIN_S: Final = 0.05
"""Calls made together (an ensemble's members, a cascade's rung, the judge's grades) stop being
waited for this long before the request's deadline."""

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ProcessRequest:
    """One request: a named model, or a capability and a strategy for the router to choose."""

    messages: Sequence[dict[str, Any]]
    params: CallParams = field(default_factory=CallParams)
    model: str | None = None
    capability: str = "text_generation"
    strategy: Strategy = Strategy.QUALITY_FIRST
    ensemble: EnsembleSpec | None = None
    # A cascade's ladder and checks (strategy cascade); None: the defaults.
    cascade: CascadeSpec | None = None
    acceptance: Acceptance | None = None
    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()
    min_quality: float | None = None
    max_cost_usd: float | None = None
    deadline_ms: float | None = None
    expected: str | None = None
    answer_format: AnswerFormat = FREE_TEXT
    use_cache: bool = True
    endpoint: str = "process"
    stream: bool = False
    # Leave out the parameters a model's provider cannot honour, instead of refusing it.
    drop_params: bool = False

    @property
    def cascades(self) -> bool:
        """Whether the router answers it with a cascade (a named model or an ensemble wins)."""
        return self.strategy is Strategy.CASCADE and self.model is None and self.ensemble is None

    def cascade_settings(self) -> dict[str, Any] | None:
        """Its cascade's ladder and checks as plain JSON, defaults filled in (None: no cascade)."""
        if not self.cascades:
            return None
        spec = self.cascade or CascadeSpec()
        return {
            "first": spec.first,
            "samples": spec.samples,
            "steps": spec.steps,
            "acceptance": (self.acceptance or Acceptance()).to_dict(),
        }

    @property
    def combines(self) -> bool:
        """Whether its answer is known only once several calls are in (an ensemble, a cascade),
        so that no call's tokens can be streamed as the answer."""
        return self.ensemble is not None or self.cascades


def question_of(messages: Sequence[dict[str, Any]]) -> str:
    """The text of the last user message (its text parts, joined), or "" without one."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    str(part.get("text", ""))
                    for part in content
                    if isinstance(part, dict) and part.get("type") == "text"
                )
            return ""
    return ""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call a request made: its model, which attempt on it, and how it ended."""

    model: str
    attempt: int
    outcome: str
    message: str = ""

    def describe(self) -> str:
        return f"{self.model}#{self.attempt}: {self.outcome} {self.message}".strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessResult:
    """The answer to a request, with what it cost and how it was found."""

    request_id: str
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_pico: int
    latency_ms: float
    finish_reason: str
    route: dict[str, Any]
    tool_calls: tuple[ToolCall, ...] = ()
    stop_sequence: str | None = None
    # The parameters left out for the model that answered (the request allowed it).
    dropped_params: tuple[str, ...] = ()
    # Every token with its log-probability (OpenAI's shape), when the request asked for them.
    logprobs: tuple[Mapping[str, Any], ...] = ()
    # An embeddings request's vectors, one per input.
    embeddings: tuple[Sequence[float], ...] = ()
    attempts: tuple[Attempt, ...] = ()
    cached: bool = False
    ensemble: dict[str, Any] | None = None
    members: tuple[dict[str, Any], ...] = ()
    # A cascade's moves, as its CascadeStepped events record them.
    cascade: tuple[dict[str, Any], ...] = ()
    position: int = 0

    @property
    def cost_usd(self) -> float:
        return to_usd(self.cost_pico)


class GatewayError(Exception):
    """A request that got no answer; `status` is the HTTP status it maps to."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        request_id: str | None = None,
        tried: Sequence[str] = (),
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.request_id = request_id
        self.tried = list(tried)
        self.field = field
        self.retry_after = retry_after
        # Where the request's RequestFailed is in the log, once it is recorded.
        self.position = 0


@dataclass(slots=True)
class Spend:
    """What a request's calls have cost so far: the sum of their settlements."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_pico: int = 0

    def add(self, settlement: Settlement) -> None:
        self.prompt_tokens += settlement.prompt_tokens
        self.completion_tokens += settlement.completion_tokens
        self.cost_pico += settlement.cost_pico


@dataclass(slots=True)
class RequestContext:
    """What one request has written and decided so far; every piece of the gateway adds to it."""

    request_id: str
    req: ProcessRequest
    principal: Principal
    prompt: PromptSize
    # The request's stream: its events are buffered, and appended together where they can be.
    log: BufferedStream
    metadata: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)
    attempts: list[Attempt] = field(default_factory=list)
    spend: Spend = field(default_factory=Spend)
    # Tokens of an answer went out to a streaming client: that answer can no longer be retried.
    delivered: bool = False
    # Where the pieces of the tool calls the answer makes go as they stream, if anywhere.
    on_tool_call: ToolCallEvents | None = None
    # Capabilities its content needs of a model (see Gateway._needs).
    needs: frozenset[str] = frozenset()
    # The parameters it sets that some provider refuses (parameters.asked), and those each
    # model's call left out, when the request allows dropping them.
    parameters: frozenset[str] = frozenset()
    dropped: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def tenancy(self) -> str:
        return self.principal.tenancy

    @property
    def scopes(self) -> list[str]:
        return self.principal.scopes

    def record(self, event: DomainEvent) -> None:
        """Add an event to the request's log; the next commit puts it on the record."""
        self.log.add(event.new(**self.metadata))

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    def tried(self) -> list[str]:
        return [a.describe() for a in self.attempts]


class MissedDeadline(Exception):
    """A call made together with others that had not answered when the deadline came."""


async def in_time(ctx: RequestContext, calls: Sequence[Awaitable[_T]]) -> list[_T | BaseException]:
    """Run calls together until they end or the request's deadline nears: each one's result or
    exception, a MissedDeadline for one still running then (it is cancelled). A cancelled wait
    (the client went away, the deadline passed) cancels them all: none outlives its request."""
    wait_s = None
    if ctx.req.deadline_ms is not None:
        elapsed_s = time.perf_counter() - ctx.started
        wait_s = max(0.0, ctx.req.deadline_ms / 1000 - elapsed_s - DEADLINE_MARGIN_S)
    if len(calls) == 1:
        # One call needs no task of its own (a cascade's usual rung): awaited in place.
        try:
            async with asyncio.timeout(wait_s):
                return [await calls[0]]
        except TimeoutError:
            return [MissedDeadline(f"no answer within deadline_ms {ctx.req.deadline_ms:g}")]
        except Exception as exc:  # noqa: BLE001 - the caller's to sort, as with a task's
            return [exc]
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        _, late = await asyncio.wait(tasks, timeout=wait_s)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    return [
        MissedDeadline(f"no answer within deadline_ms {ctx.req.deadline_ms:g}")
        if task in late
        else (task.exception() or task.result())
        for task in tasks
    ]
