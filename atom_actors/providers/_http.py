"""HTTP plumbing shared by the network providers: pooled SSE requests, deadlines, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from atom_actors.providers._base import Delta, Deltas, ToolCallDelta
from atom_actors.providers._errors import ErrorKind, ProviderError


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds a call may take: to connect, to its first token, between chunks after it, in all."""

    connect: float = 10.0
    first_token: float = 60.0
    idle: float = 60.0
    total: float = 600.0


DEFAULT_TIMEOUTS = Timeouts()
# The end of a body follows its last event at once; past this, closing beats waiting to pool.
_DRAIN_SECONDS = 1.0
# Error bodies are a few hundred bytes; a proxy's HTML page or a runaway body is cut here.
_ERROR_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: bytes


def event_json(event: ServerSentEvent) -> Any:
    """The JSON an event carries; a malformed event is the upstream's error."""
    try:
        return orjson.loads(event.data)
    except orjson.JSONDecodeError as exc:
        message = f"a malformed {event.event!r} event: {event.data[:200]!r}"
        raise ProviderError(ErrorKind.UPSTREAM_ERROR, message) from exc


async def deltas_of(
    batches: AsyncIterator[list[ServerSentEvent]],
    take: Callable[[ServerSentEvent], Delta | None],
    clock: CallClock,
    tool_calls: list[ToolCallDelta] | None = None,
) -> AsyncGenerator[Delta | Deltas | ToolCallDelta, None]:
    """The text of each batch of events as one stream item; `take` reads an event's delta.

    With `tool_calls` (a call that offers tools), `take` puts the tool-call pieces it reads
    there, and they are handed on in their place among the text. The deltas before an event
    that fails (`take` raising ProviderError) are handed on first.
    """
    if tool_calls is not None:
        async for item in _with_tool_calls(batches, take, clock, tool_calls):
            yield item
        return
    async for events in batches:
        deltas: list[Delta] = []
        try:
            for event in events:
                if (delta := take(event)) is not None:
                    deltas.append(delta)
        except ProviderError:
            if deltas:
                yield _together(deltas)
            raise
        if deltas:
            clock.token_seen()
            yield _together(deltas)


async def _with_tool_calls(
    batches: AsyncIterator[list[ServerSentEvent]],
    take: Callable[[ServerSentEvent], Delta | None],
    clock: CallClock,
    tool_calls: list[ToolCallDelta],
) -> AsyncGenerator[Delta | Deltas | ToolCallDelta, None]:
    # A loop of its own, so that a call without tools checks nothing more per event.
    async for events in batches:
        deltas: list[Delta] = []
        try:
            for event in events:
                if (delta := take(event)) is not None:
                    deltas.append(delta)
                if tool_calls:
                    clock.token_seen()
                    if deltas:
                        yield _together(deltas)
                        deltas = []
                    pieces = tuple(tool_calls)
                    tool_calls.clear()
                    for piece in pieces:
                        yield piece
        except ProviderError:
            if deltas:
                yield _together(deltas)
            raise
        if deltas:
            clock.token_seen()
            yield _together(deltas)


def _together(deltas: list[Delta]) -> Delta | Deltas:
    return deltas[0] if len(deltas) == 1 else Deltas(tuple(deltas))


class SSEDecoder:
    """Incremental text/event-stream parser; lines may end with LF or CRLF."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Take the next bytes; return the events they complete."""
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        events = []
        for line in lines:
            line = line.removesuffix(b"\r")
            if not line:
                if self._data:
                    events.append(ServerSentEvent(self._event or "message", b"\n".join(self._data)))
                self._event, self._data = "", []
                continue
            name, _, value = line.partition(b":")
            if name == b"data":
                self._data.append(value.removeprefix(b" "))
            elif name == b"event":
                self._event = value.removeprefix(b" ").decode()
        return events


class CallClock:
    """The deadlines of one call: the first token's, then each idle gap's, always the total's."""

    __slots__ = ("_first_token_at", "_flowing", "_last_chunk", "_loop", "_timeouts", "_total_at")

    def __init__(self, timeouts: Timeouts) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._timeouts = timeouts
        self._first_token_at = now + timeouts.first_token
        self._total_at = now + timeouts.total
        self._flowing = False
        self._last_chunk = now

    def token_seen(self) -> None:
        self._flowing = True

    def chunk_seen(self) -> None:
        """Bytes arrived: an idle gap is counted from here."""
        self._last_chunk = self._loop.time()

    def deadline(self) -> float:
        """When the call is late if nothing more arrives, in loop time."""
        if self._flowing:
            return min(self._last_chunk + self._timeouts.idle, self._total_at)
        return min(self._first_token_at, self._total_at)

    def expired(self) -> ProviderError:
        """The error for the deadline that just passed."""
        if self._loop.time() >= self._total_at:
            message = f"no complete answer within {self._timeouts.total:g} s"
        elif self._flowing:
            message = f"the stream stalled for {self._timeouts.idle:g} s"
        else:
            message = f"no first token within {self._timeouts.first_token:g} s"
        return ProviderError(ErrorKind.TIMEOUT, message)

    def watch(self) -> _Watch:
        """A context in which the current task is stopped with `expired` once the call is late."""
        return _Watch(self)


class _Watch:
    """One timer for all the reads of a body, where a timer armed and cancelled around each
    read cost 4% of a streamed token's CPU: it fires when the call would be late, and only
    re-arms, at the deadline that chunks arriving since have moved, when it is not."""

    __slots__ = ("_cancelling", "_clock", "_fired", "_handle", "_task")

    def __init__(self, clock: CallClock) -> None:
        self._clock = clock
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._fired = False
        self._cancelling = 0
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> None:
        self._cancelling = self._task.cancelling()
        self._handle = self._clock._loop.call_at(self._clock.deadline(), self._check)

    def __exit__(self, kind: type[BaseException] | None, error: object, _tb: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
        # The cancellation is ours, and only ours, to turn into the deadline's error.
        mine = self._fired and kind is asyncio.CancelledError
        if mine and self._task.uncancel() <= self._cancelling:
            raise self._clock.expired() from None

    def _check(self) -> None:
        loop, due = self._clock._loop, self._clock.deadline()
        if loop.time() < due:
            self._handle = loop.call_at(due, self._check)
        else:
            self._fired = True
            self._task.cancel()


class SSEEndpoint:
    """One upstream URL answering POSTs with server-sent events, over one pooled session."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        max_connections: int,
    ) -> None:
        self.url = url
        self.timeouts = timeouts
        self._headers = dict(headers)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def events(
        self, body: Mapping[str, Any], clock: CallClock, last: Callable[[ServerSentEvent], bool]
    ) -> AsyncGenerator[list[ServerSentEvent], None]:
        """POST the body and yield the answer's events up to the `last` one, in lists: the
        events each read from the network completes, so that a burst costs one step.

        Raise ProviderError on failure; a body that ends before the last event just ends.
        """
        response = await self._send(orjson.dumps(body, default=_plain), clock)
        try:
            if response.status >= 400:
                raise await _status_error(response, clock)
            decoder = SSEDecoder()
            with clock.watch():
                while chunk := await _read(response):
                    clock.chunk_seen()
                    events = decoder.feed(chunk)
                    for index, event in enumerate(events):
                        if last(event):
                            yield events[: index + 1]
                            await _drain(response)
                            return
                    if events:
                        yield events
        finally:
            # Release pools a connection whose response was read to its end and closes any other,
            # so that the upstream sees a cancelled call go away instead of generating for nobody.
            response.release()

    async def fetch_json(self, url: str, body: Mapping[str, Any], clock: CallClock) -> Any:
        """POST the body to another URL of the same upstream, over the same pool, and read
        its whole JSON answer (an embeddings call answers in one piece)."""
        response = await self._send(orjson.dumps(body, default=_plain), clock, url)
        try:
            if response.status >= 400:
                raise await _status_error(response, clock)
            data = b""
            with clock.watch():
                while chunk := await _read(response):
                    data += chunk
        finally:
            response.release()
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            message = f"a malformed answer: {data[:200]!r}"
            raise ProviderError(ErrorKind.UPSTREAM_ERROR, message) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(
        self, payload: bytes, clock: CallClock, url: str | None = None
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeouts.connect),
                headers=self._headers,
            )
        try:
            async with asyncio.timeout_at(clock.deadline()):
                # Another URL answers in JSON, not in events.
                accept = None if url is None else {"Accept": "application/json"}
                return await self._session.post(url or self.url, data=payload, headers=accept)
        except aiohttp.ServerTimeoutError as exc:
            message = f"cannot connect within {self.timeouts.connect:g} s"
            raise ProviderError(ErrorKind.TIMEOUT, message) from exc
        except TimeoutError as exc:
            raise clock.expired() from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise _connection_error(exc) from exc


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read what ends a finished body (the chunked terminator), so its connection is pooled."""
    if response.content.at_eof():  # it came with the last event, as it mostly does
        return
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            await response.content.read()


def _plain(value: Any) -> Any:
    """What orjson cannot serialize itself: messages may be any Mapping, not only dicts."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


async def _read(response: aiohttp.ClientResponse) -> bytes:
    """The bytes received next (b"" at the end); the caller's watch keeps the deadline."""
    try:
        return await response.content.readany()
    except (aiohttp.ClientError, OSError) as exc:
        raise _connection_error(exc) from exc


def _connection_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, aiohttp.ClientConnectorError):
        message = f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}"
    else:
        message = f"the connection failed: {exc!r}"
    return ProviderError(ErrorKind.UPSTREAM_ERROR, message)


async def _status_error(response: aiohttp.ClientResponse, clock: CallClock) -> ProviderError:
    body = await _read_error_body(response, clock)
    return ProviderError(
        kind_for_status(response.status),
        error_message(body, response.reason or ""),
        status=response.status,
        retry_after=retry_after(response.headers),
    )


async def _read_error_body(response: aiohttp.ClientResponse, clock: CallClock) -> bytes:
    body = b""
    with clock.watch():
        while len(body) < _ERROR_BODY_LIMIT and (chunk := await _read(response)):
            body += chunk
    return body


def kind_for_status(status: int) -> ErrorKind:
    """The kind of failure an HTTP error status means, the same for every provider."""
    if status in (401, 403):
        return ErrorKind.AUTH
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in (503, 529):
        return ErrorKind.OVERLOADED
    if status == 408:
        return ErrorKind.TIMEOUT
    if status < 500:
        return ErrorKind.BAD_REQUEST
    return ErrorKind.UPSTREAM_ERROR


def error_message(body: bytes, fallback: str) -> str:
    """The message of an error body in OpenAI's or Anthropic's shape, else the body itself."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")[:500] or fallback
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return body.decode(errors="replace")[:500]


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from retry-after-ms or Retry-After (seconds or an HTTP date)."""
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    seconds = _number(value)
    if value is None or seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _number(value: str | None) -> float | None:
    """A finite number no less than zero, if the header holds one."""
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return max(number, 0.0) if math.isfinite(number) else None
