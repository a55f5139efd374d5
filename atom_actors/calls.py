"""Running one model call from asyncio: admission by its actor, the provider stream, the log.

Every call appends ModelCallStarted, TokensStreamed (every token, with its time offset, a few
per event) and ModelCallCompleted or ModelCallFailed to the request's stream: by itself, or
into the request's own buffered log, so that a request's events take as few appends as the
guarantees allow (see `ModelCaller.call`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pykka

from eventstore import (
    BufferedStream,
    EventStore,
    EventStoreError,
    Guard,
    GuardRefused,
    new_event_id,
)

from . import bridge
from ._threads import stream_blocking
from .catalog import ModelSpec
from .cost import PromptSize, Settlement, output_bound, prompt_bound, prompt_size, settle
from .directory import Directory
from .events import (
    ModelCallCompleted,
    ModelCallFailed,
    ModelCallStarted,
    TokensStreamed,
    request_stream,
)
from .model import Admit, Crash, Gate, NotAdmitted, Outcome, Release, Ticket
from .providers import (
    AsyncProvider,
    BlockingProvider,
    CallParams,
    Delta,
    Deltas,
    ErrorKind,
    Event,
    Finish,
    Message,
    ProviderError,
    ToolCall,
    ToolCallDelta,
    assemble_tool_calls,
)

FLUSH_TOKENS = 32
FLUSH_SECONDS = 0.2
"""TokensStreamed events carry at most this many deltas, and hold none longer than this.

Live subscribers get each token at once from the hub; the log's copy may lag by this much.
At 50 ms a model streaming a token every 20 ms cost an event per 2.5 tokens, and the events
were the largest share of the server's CPU per streamed token (docs/architecture.md)."""

DeltaSink = Callable[[Delta, float], None]
"""Called with every delta and its offset in ms from the call's start, as it arrives."""
ToolCallSink = Callable[[ToolCallDelta, float], None]
"""Called with every piece of a tool call and its offset in ms from the call's start."""


def call_prompt_size(messages: Sequence[Message], params: CallParams) -> PromptSize:
    """The sizes of a call's prompt: its messages, response format and tool definitions."""
    tools = [tool.to_openai() for tool in params.tools]
    return prompt_size(messages, params.response_format, tools)


class CallFailed(Exception):
    """A model call did not produce an answer; `kind` is an ErrorKind or a refusal."""

    def __init__(
        self,
        model: str,
        kind: str,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    call_id: str
    model: str
    text: str
    settlement: Settlement
    finish_reason: str
    latency_ms: float
    ttft_ms: float | None
    tokens_per_s: float | None
    mean_logprob: float | None
    tool_calls: tuple[ToolCall, ...] = ()
    # The client's stop sequence that ended the answer, when the provider says which.
    stop_sequence: str | None = None
    # Every token with its log-probability (OpenAI's shape), when the call asked for them.
    logprobs: tuple[Mapping[str, Any], ...] = ()
    # An embeddings call's vectors, one per input.
    embeddings: tuple[Sequence[float], ...] = ()

    @property
    def prompt_tokens(self) -> int:
        return self.settlement.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.settlement.completion_tokens

    @property
    def cost_pico(self) -> int:
        return self.settlement.cost_pico


class _TokenLog:
    """Buffers a call's deltas into TokensStreamed events: every 32 tokens, or at the next
    tick of the calls' shared `_Ticker`."""

    def __init__(
        self, log: BufferedStream, call_id: str, metadata: dict[str, Any], ticker: _Ticker
    ) -> None:
        self._log = log
        self._call_id = call_id
        self._metadata = metadata
        self._ticker = ticker
        self._buffer: list[list[Any]] = []
        self._seq = 0

    def add(self, deltas: Sequence[Delta], offset_ms: float) -> None:
        """Buffer deltas that arrived together, at `offset_ms` after the call started."""
        at = round(offset_ms, 3)
        if not self._buffer:
            self._ticker.want(self)
        self._buffer.extend([delta.text, at, delta.logprob] for delta in deltas)
        if len(self._buffer) >= FLUSH_TOKENS:
            self.flush()

    def flush(self, *, last: bool = False) -> None:
        """Put the buffered tokens in the log and append them, or, for a call's `last` ones,
        leave them to be appended with its outcome."""
        if not self._buffer:
            return
        self._ticker.forget(self)
        event = TokensStreamed(call_id=self._call_id, seq=self._seq, deltas=self._buffer)
        self._seq += len(self._buffer)
        self._buffer = []
        self._log.add(event.new(**self._metadata))
        if not last:
            self._log.flush()


class _Ticker:
    """Flushes the token buffers of every running call at once, FLUSH_SECONDS after the
    earliest token waiting: one timer for all calls, and their appends queued back to back, so
    that the log's writer commits them as one group, where a timer per call cost each
    call's tokens a commit of their own (6% of the server's CPU per token at 100 streams)."""

    def __init__(self) -> None:
        self._waiting: dict[_TokenLog, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def want(self, tokens: _TokenLog) -> None:
        """Flush `tokens` at the next tick."""
        self._waiting[tokens] = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._tick)

    def forget(self, tokens: _TokenLog) -> None:
        """`tokens` flushed itself: nothing to do for it at the next tick."""
        self._waiting.pop(tokens, None)

    def _tick(self) -> None:
        self._timer = None
        waiting, self._waiting = self._waiting, {}
        for tokens in waiting:
            tokens.flush()


class ModelCaller:
    """Runs calls to the models of a catalog, through their actors, recording each in the log."""

    def __init__(self, store: EventStore, directory: Directory) -> None:
        self._store = store
        self._directory = directory
        self._ticker = _Ticker()

    async def call(
        self,
        model: str,
        messages: Sequence[Message],
        params: CallParams,
        *,
        request_id: str,
        attempt: int = 1,
        on_delta: DeltaSink | None = None,
        metadata: dict[str, Any] | None = None,
        log: BufferedStream | None = None,
        on_tool_call: ToolCallSink | None = None,
        guard: Guard | None = None,
    ) -> CallResult:
        """Call `model` once; raises CallFailed (after logging it) when there is no answer.

        Without `log` the call appends its events itself and returns once they are committed.
        With `log`, the request's buffered stream, it adds them there: once admitted, it
        commits whatever the log holds (its caller's reservation, ModelCallStarted) before
        the upstream call starts, under `guard` if one is given, and leaves its outcome in the
        buffer for the log's owner to commit with what follows. A guard that refuses makes it
        raise GuardRefused with nothing called and its ModelCallStarted withdrawn.
        """
        try:
            ref, gate = self._directory.entry(model)
        except NotAdmitted as exc:
            raise CallFailed(model, exc.refusal.value, exc.message, retryable=False) from exc
        except KeyError as exc:
            raise CallFailed(
                model, "unknown_model", f"no model named {model!r}", retryable=False
            ) from exc
        call_id = new_event_id()
        try:
            # The gate admits the usual case at once; the actor decides the rest.
            ticket = gate.admit_now(call_id) or await _ask_admission(ref, call_id)
        except NotAdmitted as exc:
            raise CallFailed(model, exc.refusal.value, exc.message, retryable=False) from exc
        except bridge.ActorGone as exc:
            raise CallFailed(
                model, "crashed", f"model {model!r} is restarting: {exc}", retryable=True
            ) from exc
        owned = log is None
        if log is None:
            log = BufferedStream(self._store, request_stream(request_id))
        call = _Call(
            log, owned, ref, gate, ticket, request_id, attempt, metadata or {}, self._ticker
        )
        return await call.run(messages, params, on_delta, on_tool_call, guard)


async def _ask_admission(ref: pykka.ActorRef[Any], call_id: str) -> Ticket:
    ticket: Ticket = await bridge.ask(
        ref,
        lambda reply: Admit(call_id, reply),
        orphan=lambda t: ref.tell(Release(t, Outcome.NEUTRAL)),
    )
    return ticket


class _Call:
    """One admitted call, from ModelCallStarted to its outcome and the ticket's release."""

    def __init__(
        self,
        log: BufferedStream,
        owned: bool,
        ref: pykka.ActorRef[Any],
        gate: Gate,
        ticket: Ticket,
        request_id: str,
        attempt: int,
        metadata: dict[str, Any],
        ticker: _Ticker,
    ) -> None:
        # An owned log is this call's alone: it commits its outcome before returning.
        self.log = log
        self.owned = owned
        self.ref = ref
        self.gate = gate
        self.ticket = ticket
        self.spec: ModelSpec = ticket.spec
        self.request_id = request_id
        self.attempt = attempt
        self.metadata = {"correlation_id": request_id, "actor": f"model:{self.spec.name}"}
        self.metadata.update(metadata)
        self.tokens = _TokenLog(log, ticket.call_id, self.metadata, ticker)

    async def run(
        self,
        messages: Sequence[Message],
        params: CallParams,
        on_delta: DeltaSink | None,
        on_tool_call: ToolCallSink | None = None,
        guard: Guard | None = None,
    ) -> CallResult:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        active = True

        def abort_now() -> None:
            # Runs on the loop, so it cannot cancel a task that has moved on past the call.
            if active:
                task.cancel()

        def on_abort(_reason: str) -> None:
            loop.call_soon_threadsafe(abort_now)

        self.ticket.on_abort(on_abort)
        started = ModelCallStarted(
            request_id=self.request_id,
            call_id=self.ticket.call_id,
            model=self.spec.name,
            provider=self.spec.provider,
            attempt=self.attempt,
        )
        started_event = started.new(**self.metadata)
        self.log.add(started_event)
        self.t0 = time.perf_counter()
        self.first: float | None = None
        self.got_first = asyncio.Event()
        self.count = 0
        self.streamed_tokens = 0
        self.on_tool_call = on_tool_call
        self.tool_pieces: list[ToolCallDelta] = []
        error: ProviderError | None = None
        try:
            if self.owned:
                self.log.flush()
            else:
                # What the request's log holds goes on the record before the upstream call.
                await self.log.commit(guard)
            text, finish = await self._consume(messages, params, on_delta)
        except asyncio.CancelledError:
            if self.ticket.abort_reason is None:
                active = False
                await asyncio.shield(
                    self._failed(ProviderError(ErrorKind.CANCELLED, "the client went away"))
                )
                raise
            task.uncancel()
            error = ProviderError(ErrorKind.UPSTREAM_ERROR, self.ticket.abort_reason)
        except ProviderError as exc:
            error = exc
        except EventStoreError as exc:
            # The log failed before the call: nothing went upstream off the record.
            if isinstance(exc, GuardRefused):
                self.log.withdraw(started_event)
            self._release(Outcome.NEUTRAL)
            raise
        except Exception as exc:  # noqa: BLE001 - a provider bug: its actor is restarted
            self._tell(Crash(exc))
            error = ProviderError(
                ErrorKind.UPSTREAM_ERROR, f"model {self.spec.name!r} crashed: {exc!r}"
            )
        finally:
            active = False
        if error is None:
            tool_calls = assemble_tool_calls(self.tool_pieces) if self.tool_pieces else ()
            return await self._completed(text, tool_calls, finish, messages, params)
        await self._failed(error)
        raise CallFailed(
            self.spec.name,
            error.kind.value,
            error.message,
            retryable=error.retryable,
            status=error.status,
            retry_after=error.retry_after,
        ) from error

    async def _consume(
        self, messages: Sequence[Message], params: CallParams, on_delta: DeltaSink | None
    ) -> tuple[str, Finish]:
        provider, executor = self.ticket.provider, self.ticket.executor
        # Only a blocking provider has a thread (isinstance of a Protocol costs 15 us a call).
        if executor is not None:
            blocking = cast(BlockingProvider, provider)
            cancel = self.ticket.cancel
            assert cancel is not None  # a call with a thread has a cancel event
            source = stream_blocking(blocking, executor, messages, params, cancel)
            # Network providers time their own calls; a local one is timed here.
            return await self._timed(self._read(source, on_delta))
        return await self._read(cast(AsyncProvider, provider).stream(messages, params), on_delta)

    async def _timed(self, reading: Awaitable[tuple[str, Finish]]) -> tuple[str, Finish]:
        """Wait for a local model's first token and whole answer as long as its spec allows."""
        spec = self.spec
        loop = asyncio.get_running_loop()
        total_at = loop.time() + spec.timeout_total_s
        task = asyncio.ensure_future(reading)
        first = asyncio.ensure_future(self.got_first.wait())
        try:
            async with asyncio.timeout_at(min(loop.time() + spec.timeout_first_token_s, total_at)):
                await asyncio.wait({task, first}, return_when=asyncio.FIRST_COMPLETED)
            async with asyncio.timeout_at(total_at):
                return await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            waited = "first token" if self.first is None else "answer"
            limit = spec.timeout_first_token_s if self.first is None else spec.timeout_total_s
            raise ProviderError(
                ErrorKind.TIMEOUT, f"{spec.name}: no {waited} within {limit:g}s"
            ) from None
        except BaseException:
            task.cancel()
            raise
        finally:
            first.cancel()

    async def _read(
        self, source: AsyncIterator[Event], on_delta: DeltaSink | None
    ) -> tuple[str, Finish]:
        parts: list[str] = []
        finish: Finish | None = None
        t0, tokens = self.t0, self.tokens
        async for item in source:
            # Text first: a call without tools never reaches the other branches but at its end.
            if isinstance(item, Delta):
                deltas: tuple[Delta, ...] = (item,)
            elif isinstance(item, Deltas):
                deltas = item.items
            elif isinstance(item, Finish):
                finish = item
                continue
            else:
                self._tool_piece(item, (time.perf_counter() - t0) * 1000)
                continue
            now_ms = (time.perf_counter() - t0) * 1000
            if self.first is None:
                self.first = now_ms
                self.got_first.set()
            # Deltas that arrived together share their time of arrival.
            parts.extend([delta.text for delta in deltas])
            self.count += len(deltas)
            self.streamed_tokens += sum([delta.token_bound for delta in deltas])
            tokens.add(deltas, now_ms)
            if on_delta is not None:
                for delta in deltas:
                    on_delta(delta, now_ms)
        if finish is None:
            raise ProviderError(ErrorKind.UPSTREAM_ERROR, "the stream ended without a finish")
        return "".join(parts), finish

    def _tool_piece(self, piece: ToolCallDelta, now_ms: float) -> None:
        """A piece of a tool call: output like text (its first token, its bound), not text."""
        if self.first is None:
            self.first = now_ms
            self.got_first.set()
        self.tool_pieces.append(piece)
        self.count += 1
        self.streamed_tokens += piece.token_bound
        if self.on_tool_call is not None:
            self.on_tool_call(piece, now_ms)

    async def _completed(
        self,
        text: str,
        tool_calls: tuple[ToolCall, ...],
        finish: Finish,
        messages: Sequence[Message],
        params: CallParams,
    ) -> CallResult:
        latency_ms = (time.perf_counter() - self.t0) * 1000
        spec, usage = self.spec, finish.usage
        settlement = settle(
            spec,
            completed=True,
            reported=None if usage is None else (usage.prompt_tokens, usage.completion_tokens),
            # Counted only when the provider reported no usage.
            prompt_tokens_bound=0
            if usage is not None
            else prompt_bound(spec, call_prompt_size(messages, params)),
            streamed_tokens=self.streamed_tokens,
            max_tokens=output_bound(spec, params.max_tokens),
        )
        first = self.first
        generating_s = (latency_ms - (first or 0.0)) / 1000
        tokens_per_s = (
            settlement.completion_tokens / generating_s
            if generating_s > 0 and self.count > 1
            else None
        )
        result = CallResult(
            call_id=self.ticket.call_id,
            model=spec.name,
            text=text,
            settlement=settlement,
            finish_reason=finish.finish_reason,
            latency_ms=latency_ms,
            ttft_ms=first,
            tokens_per_s=tokens_per_s,
            mean_logprob=finish.mean_logprob,
            tool_calls=tool_calls,
            stop_sequence=finish.raw.get("stop_sequence"),
            logprobs=finish.logprobs,
            embeddings=finish.embeddings,
        )
        completed = ModelCallCompleted(
            request_id=self.request_id,
            call_id=result.call_id,
            model=result.model,
            attempt=self.attempt,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cost_pico=result.cost_pico,
            latency_ms=round(latency_ms, 3),
            ttft_ms=None if first is None else round(first, 3),
            tokens_per_s=None if tokens_per_s is None else round(tokens_per_s, 3),
            finish_reason=result.finish_reason,
            text=text,
            mean_logprob=result.mean_logprob,
            rule=settlement.rule.value,
            tool_calls=[call.to_openai() for call in tool_calls] if tool_calls else None,
        )
        self._release(Outcome.OK)
        await self._record(completed)
        return result

    async def _failed(self, error: ProviderError) -> None:
        neutral = error.kind in (ErrorKind.BAD_REQUEST, ErrorKind.CANCELLED)
        self._release(Outcome.NEUTRAL if neutral else Outcome.FAILED)
        failed = ModelCallFailed(
            request_id=self.request_id,
            call_id=self.ticket.call_id,
            model=self.spec.name,
            attempt=self.attempt,
            kind=error.kind.value,
            message=error.message,
            retryable=error.retryable,
            latency_ms=round((time.perf_counter() - self.t0) * 1000, 3),
            status=error.status,
            completion_tokens=self.streamed_tokens,
        )
        await self._record(failed)

    async def _record(self, outcome: ModelCallCompleted | ModelCallFailed) -> None:
        """Log the outcome after the call's last tokens.

        With its own log, return once all is committed. In a request's log, leave a success
        to be appended with what the request adds next; queue a failure's append at once.
        """
        self.tokens.flush(last=True)
        self.log.add(outcome.new(**self.metadata))
        if self.owned:
            await self.log.commit()
        elif isinstance(outcome, ModelCallFailed):
            self.log.flush()

    def _release(self, outcome: Outcome) -> None:
        if not self.gate.release_now(self.ticket, outcome):
            self._tell(Release(self.ticket, outcome))

    def _tell(self, message: object) -> None:
        # A crashed actor has aborted its calls already; its successor holds no slot of ours.
        with contextlib.suppress(pykka.ActorDeadError):
            self.ref.tell(message)
