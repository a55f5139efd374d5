"""ATOM's domain events: what the log records, one frozen dataclass per event type.

Event names are past tense and their shapes only grow: a field is added with a default, never
renamed or removed (an old event is upcast on read instead). Costs are integer pico-dollars
(1e-12 USD), so that sums in projections are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from eventstore import NewEvent, RecordedEvent

_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type[DomainEvent]) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    """Base of every event type; `TYPE` is the name stored in the log."""

    TYPE: ClassVar[str] = ""

    def data(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _field_names(type(self))}

    def new(self, **metadata: Any) -> NewEvent:
        """This event, ready to append, with metadata such as correlation_id."""
        return NewEvent(self.TYPE, self.data(), metadata)


def request_stream(request_id: str) -> str:
    """Every event of one request's story lives in its stream, so a trace is one read."""
    return f"request-{request_id}"


def model_stream(model: str) -> str:
    return f"model-{model}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived(DomainEvent):
    TYPE: ClassVar[str] = "RequestReceived"
    request_id: str
    endpoint: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    model: str | None = None
    capability: str | None = None
    strategy: str | None = None
    api_key_id: str | None = None
    tenant: str | None = None
    stream: bool = False
    # What a reference scorer compares the answer with, and how ("text", "number", ...).
    expected: str | None = None
    answer_format: str = "text"
    answer_field: str | None = None
    # A cascade's ladder and acceptance checks as asked (CascadeSpec, cascade.Acceptance).
    cascade: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDecided(DomainEvent):
    TYPE: ClassVar[str] = "RouteDecided"
    request_id: str
    strategy: str
    chosen: str | None
    order: list[str]
    reason: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[dict[str, Any]] = field(default_factory=list)
    ensemble: dict[str, Any] | None = None
    cascade: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCallStarted(DomainEvent):
    TYPE: ClassVar[str] = "ModelCallStarted"
    request_id: str
    call_id: str
    model: str
    provider: str
    attempt: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TokensStreamed(DomainEvent):
    """Consecutive deltas of one call: [text, ms since the call started, logprob or None]."""

    TYPE: ClassVar[str] = "TokensStreamed"
    call_id: str
    seq: int
    deltas: list[list[Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCallCompleted(DomainEvent):
    TYPE: ClassVar[str] = "ModelCallCompleted"
    request_id: str
    call_id: str
    model: str
    attempt: int
    prompt_tokens: int
    completion_tokens: int
    cost_pico: int
    latency_ms: float
    ttft_ms: float | None
    tokens_per_s: float | None
    finish_reason: str
    text: str
    mean_logprob: float | None = None
    # How its cost was set (cost.SettleRule): "usage", as the provider reported it, or
    # "counted", the prompt's bound and the tokens streamed, for a provider that reports none.
    rule: str = "usage"
    # The tools the answer calls, in OpenAI's shape ({"id", "type", "function"}); None: none.
    tool_calls: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCallFailed(DomainEvent):
    TYPE: ClassVar[str] = "ModelCallFailed"
    request_id: str
    call_id: str
    model: str
    attempt: int
    kind: str
    message: str
    retryable: bool
    latency_ms: float
    status: int | None = None
    # Tokens streamed before it failed: as the provider counted them, else bounded by bytes.
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestCompleted(DomainEvent):
    TYPE: ClassVar[str] = "RequestCompleted"
    request_id: str
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_pico: int
    latency_ms: float
    finish_reason: str = "stop"
    strategy: str | None = None
    ensemble_method: str | None = None
    attempts: int = 1
    fallbacks: int = 0
    agreement: float | None = None
    # What the same tokens would have cost at the dearest eligible model (a cascade: the
    # answering call's tokens at its ladder's strongest model): the savings baseline.
    baseline_pico: int = 0
    cached: bool = False
    cache_key: str | None = None
    tenant: str | None = None
    capability: str | None = None
    # The tools the answer calls, in OpenAI's shape ({"id", "type", "function"}); None: none.
    tool_calls: list[dict[str, Any]] | None = None
    # The parameters left out for the model that answered, the request allowing it.
    dropped_params: list[str] | None = None
    # A cascade's rungs climbed above its first.
    escalations: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFailed(DomainEvent):
    TYPE: ClassVar[str] = "RequestFailed"
    request_id: str
    kind: str
    message: str
    status: int
    tried: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    strategy: str | None = None
    # What its calls cost all the same (a stream broken off is billed): its settlements' sum.
    cost_pico: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelHealthChanged(DomainEvent):
    TYPE: ClassVar[str] = "ModelHealthChanged"
    model: str
    previous: str
    current: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorRestarted(DomainEvent):
    TYPE: ClassVar[str] = "ActorRestarted"
    actor: str
    restarts: int
    delay_s: float
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetSet(DomainEvent):
    """A spending limit for a scope: "global", "key:<id>" or "tenant:<name>"."""

    TYPE: ClassVar[str] = "BudgetSet"
    scope: str
    limit_pico: int
    period: str  # "total", "day" or "month"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetCleared(DomainEvent):
    """A scope's limit lifted: it spends without one from now on."""

    TYPE: ClassVar[str] = "BudgetCleared"
    scope: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetReserved(DomainEvent):
    TYPE: ClassVar[str] = "BudgetReserved"
    request_id: str
    reservation_id: str
    scopes: list[str]
    amount_pico: int
    model: str
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetSettled(DomainEvent):
    """A reservation replaced by the call's cost, with the rule that set it (cost.SettleRule)
    and the token counts it was computed from."""

    TYPE: ClassVar[str] = "BudgetSettled"
    request_id: str
    reservation_id: str
    scopes: list[str]
    reserved_pico: int
    actual_pico: int
    model: str | None = None
    rule: str = "usage"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetRejected(DomainEvent):
    TYPE: ClassVar[str] = "BudgetRejected"
    request_id: str
    scope: str
    amount_pico: int
    headroom_pico: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EnsembleCombined(DomainEvent):
    TYPE: ClassVar[str] = "EnsembleCombined"
    request_id: str
    method: str
    result: dict[str, Any]
    members: list[dict[str, Any]]
    # best_of_n: the scorer that chose (judge, reward or confidence), its scores and why.
    scorer: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CascadeStepped(DomainEvent):
    """One move of a cascade: call a rung, accept an answer, or stop the climb short.

    A call or an accept is the `cascade.Step` that `decide` returned (the fields of its
    `to_dict()`, as `atom replay evaluate` records them), with the replies and the cost of
    the rung it judged; a stop (`action` "stop") names the rung not taken and why, and the
    answer that stands.
    """

    TYPE: ClassVar[str] = "CascadeStepped"
    request_id: str
    action: str
    step: int
    models: list[str]
    answer: str | None
    speaker: str | None
    verdicts: list[dict[str, Any]]
    reason: str
    # The judged rung's replies (member, model, call_id, answer, error) and what they cost.
    replies: list[dict[str, Any]] = field(default_factory=list)
    cost_pico: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreRecorded(DomainEvent):
    """A score in [0, 1] for a call's answer (subject_kind "call") or a request's."""

    TYPE: ClassVar[str] = "ScoreRecorded"
    request_id: str
    subject: str
    subject_kind: str
    model: str | None
    capability: str | None
    scorer: str
    scorer_version: str
    score: float
    detail: str = ""
    # Feedback: the key that gave it, and the score of that key's it replaces, if any.
    by: str | None = None
    replaces: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreFailed(DomainEvent):
    """A scorer could not grade an answer (the judge failed, or its reply held no grade)."""

    TYPE: ClassVar[str] = "ScoreFailed"
    request_id: str
    subject: str
    scorer: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheHit(DomainEvent):
    TYPE: ClassVar[str] = "CacheHit"
    request_id: str
    source_request_id: str
    cache_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEventPublished(DomainEvent):
    TYPE: ClassVar[str] = "StreamEventPublished"
    topic: str
    payload: dict[str, Any]
    by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyIssued(DomainEvent):
    """A key was created; only its sha256 is kept, never the key itself."""

    TYPE: ClassVar[str] = "ApiKeyIssued"
    key_id: str
    key_hash: str
    role: str
    name: str
    tenant: str | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyRevoked(DomainEvent):
    TYPE: ClassVar[str] = "ApiKeyRevoked"
    key_id: str
    by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted(DomainEvent):
    """A browser session stands for a key until `expires_at` (Unix seconds); only the token's
    sha256 is kept."""

    TYPE: ClassVar[str] = "SessionStarted"
    session_id: str
    key_id: str
    token_hash: str
    expires_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded(DomainEvent):
    """A session was ended before its expiry (sign-out)."""

    TYPE: ClassVar[str] = "SessionEnded"
    session_id: str
    key_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LogVerified(DomainEvent):
    """A verification of the whole log ran: what it found up to `head`, and who asked."""

    TYPE: ClassVar[str] = "LogVerified"
    head: int
    head_hash: str
    events: int
    streams: int
    ok: bool
    first_bad_position: int | None = None
    problem: str | None = None
    seconds: float = 0.0
    by: str | None = None


EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.TYPE: cls
    for cls in (
        RequestReceived,
        RouteDecided,
        ModelCallStarted,
        TokensStreamed,
        ModelCallCompleted,
        ModelCallFailed,
        RequestCompleted,
        RequestFailed,
        ModelHealthChanged,
        ActorRestarted,
        BudgetSet,
        BudgetCleared,
        BudgetReserved,
        BudgetSettled,
        BudgetRejected,
        EnsembleCombined,
        CascadeStepped,
        ScoreRecorded,
        ScoreFailed,
        CacheHit,
        StreamEventPublished,
        ApiKeyIssued,
        ApiKeyRevoked,
        SessionStarted,
        SessionEnded,
        LogVerified,
    )
}


def decode(event: RecordedEvent) -> DomainEvent | None:
    """The typed event for a recorded one, or None for a type this module does not define."""
    cls = EVENT_TYPES.get(event.type)
    if cls is None:
        return None
    known = _field_names(cls)
    return cls(**{k: v for k, v in event.data.items() if k in known})
