"""The machinery every fake upstream shares: lifecycle, recording, faults, pacing, SSE writing."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, Self

import orjson
from aiohttp import web

from tests.fakes.faults import ArmedFault, Behaviour, Fault, FaultKind
from tests.fakes.text import (
    Completion,
    Ending,
    ToolOffer,
    complete,
    echo_reply,
    make_calls,
    plan_calls,
    tokenize,
)

_DEFAULT = Behaviour()
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the fake received it; header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    # The client's TCP port tells which pooled connection carried the request.
    client_port: int


@dataclass(frozen=True, slots=True)
class Call:
    """What a generation request asks for, read from either wire format."""

    model: str
    stream: bool
    prompt: str
    prompt_tokens: int
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    include_usage: bool = False
    # The tools offered, and whether the conversation ends with a tool's result.
    tools: ToolOffer | None = None
    after_result: bool = False


@dataclass(frozen=True, slots=True)
class Bill:
    """What the real upstream would charge for one generation request: the prompt and the
    tokens it sent, nothing for a request it failed before any output."""

    model: str
    prompt: str
    prompt_tokens: int
    completion_tokens: int
    complete: bool = False


@dataclass(frozen=True, slots=True)
class Frames:
    """A streamed answer as wire bytes: opening events, one per token, closing events."""

    head: bytes
    tokens: Sequence[bytes]
    tail: bytes


class BadRequest(Exception):
    """A request the real upstream would refuse; the fake answers with the status given."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class FakeServer(ABC):
    """A local upstream on 127.0.0.1 that records requests and fails on demand."""

    malformed_frame: bytes = b"data: {not json\n\n"

    def __init__(
        self,
        *,
        default: Behaviour = _DEFAULT,
        models: Mapping[str, Behaviour] | None = None,
        api_key: str | None = None,
        record: bool = True,
        port: int = 0,
    ) -> None:
        self.default = default
        self.models: dict[str, Behaviour] = dict(models or {})
        self.api_key = api_key
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.disconnects: list[RecordedRequest] = []
        self.bills: list[Bill] = []
        self._faults: list[ArmedFault] = []
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """The base URL the provider's own SDK expects."""
        return self.origin

    def fail(self, fault: Fault, *, model: str | None = None, times: int | None = None) -> None:
        """Fail requests to `model` (all unless `times` is given), or the next `times` (1) ones."""
        if model is None and times is None:
            times = 1
        self._faults.append(ArmedFault(fault, model, times))

    def clear_faults(self) -> None:
        self._faults.clear()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(self.routes())
        # Handler cancellation is how the fake notices a client that went away mid-answer.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True, backlog=2048)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @classmethod
    @contextmanager
    def in_thread(cls, **options: Any) -> Iterator[Self]:
        """Run a fake on its own loop in a background thread, for blocking clients."""
        server = cls(**options)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=cls.__name__, daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    async def wait_for_disconnects(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until the fake has seen `count` clients go away mid-answer."""
        async with asyncio.timeout(timeout):
            while len(self.disconnects) < count:
                await asyncio.sleep(0.005)

    @abstractmethod
    def routes(self) -> list[web.RouteDef]: ...

    @abstractmethod
    def tool_call_ids(self) -> Iterator[str]:
        """Ids for the tool calls the fake makes, in the provider's style."""

    @abstractmethod
    def authorized(self, request: web.Request) -> bool:
        """Whether the request carries the key this fake expects."""

    @abstractmethod
    def parse(self, request: web.Request, body: Any) -> Call:
        """Read a generation request; raise BadRequest as the real upstream would refuse it."""

    @abstractmethod
    def answer(self, call: Call, completion: Completion, behaviour: Behaviour) -> Mapping[str, Any]:
        """The non-streaming JSON answer."""

    @abstractmethod
    def frames(self, call: Call, completion: Completion, behaviour: Behaviour) -> Frames:
        """The streamed answer."""

    @abstractmethod
    def error_body(self, status: int, message: str) -> Mapping[str, Any]:
        """The provider's JSON error body for a status."""

    @abstractmethod
    def error_frame(self, status: int) -> bytes:
        """The provider's in-stream error event for a status."""

    def error(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            body=orjson.dumps(self.error_body(status, message)),
            status=status,
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    async def generate(self, request: web.Request) -> web.StreamResponse:
        """The generation endpoint: record, check, pick a fault, then answer or fail."""
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        recorded = self.remember(request, body)
        if not self.authorized(request):
            return self.error(401, "Invalid authentication credentials.")
        if not isinstance(body, dict):
            return self.error(400, "The request body is not valid JSON.")
        try:
            call = self.parse(request, body)
        except BadRequest as refused:
            return self.error(refused.status, refused.message)
        fault = self._claim(call.model)
        sent = _Sent()
        try:
            return await self._answer(request, call, fault, sent)
        except (asyncio.CancelledError, ConnectionResetError):
            if recorded is not None and (fault is None or fault.kind is not FaultKind.RESET):
                self.disconnects.append(recorded)
            raise
        finally:
            billed = sent.tokens is not None and (sent.tokens > 0 or sent.complete)
            self.bills.append(
                Bill(
                    call.model,
                    call.prompt,
                    call.prompt_tokens if billed else 0,
                    (sent.tokens or 0) if billed else 0,
                    sent.complete,
                )
            )

    def remember(self, request: web.Request, body: Any) -> RecordedRequest | None:
        """Record a request, unless recording is off (as for benchmarks)."""
        if not self.record:
            return None
        headers = {name.lower(): value for name, value in request.headers.items()}
        peer = request.transport.get_extra_info("peername") if request.transport else None
        recorded = RecordedRequest(
            request.method, request.path, headers, body, peer[1] if peer else 0
        )
        self.requests.append(recorded)
        return recorded

    def _claim(self, model: str) -> Fault | None:
        for armed in self._faults:
            if armed.claim(model):
                return armed.fault
        return None

    async def _answer(
        self, request: web.Request, call: Call, fault: Fault | None, sent: _Sent
    ) -> web.StreamResponse:
        behaviour = self.models.get(call.model, self.default)
        planned = plan_calls(call.tools, call.after_result, behaviour.tool_calls)
        if planned:
            said = tuple(tokenize(behaviour.reply or ""))
            made = make_calls(planned, self.tool_call_ids())
            completion = Completion(said, Ending.TOOL_CALLS, calls=made)
        else:
            reply = next(
                (r for part, r in behaviour.replies if part in call.prompt), behaviour.reply
            )
            if reply is None:
                reply = echo_reply(call.prompt)
            completion = complete(reply, call.max_tokens, call.stop)
        if fault is not None and fault.after is None:
            return await self._fail_before_headers(request, fault)
        if not call.stream:
            answered = await self._answer_json(request, call, completion, behaviour, fault)
            ok = answered.status == 200 and not fault
            sent.finish(completion.output_tokens if ok else 0)
            return answered
        frames = self.frames(call, completion, behaviour)
        paced = behaviour.first_token_delay or behaviour.tokens_per_second or behaviour.end_delay
        if fault is None and not paced:
            # The benchmark's fast path: one write, no per-token awaits.
            body = b"".join((frames.head, *frames.tokens, frames.tail))
            sent.finish(len(frames.tokens))
            return web.Response(body=body, headers=_SSE_HEADERS)
        return await self._stream(request, frames, behaviour, fault, sent)

    async def _fail_before_headers(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind is FaultKind.HTTP_ERROR:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return self.error(fault.status, "Injected failure.", headers)
        if fault.kind is FaultKind.RESET:
            _reset(request)
        await _never()

    async def _answer_json(
        self,
        request: web.Request,
        call: Call,
        completion: Completion,
        behaviour: Behaviour,
        fault: Fault | None,
    ) -> web.StreamResponse:
        delay = behaviour.first_token_delay
        if behaviour.tokens_per_second:
            delay += len(completion.tokens) / behaviour.tokens_per_second
        if delay:
            await asyncio.sleep(delay)
        body = orjson.dumps(self.answer(call, completion, behaviour))
        if fault is not None:
            if fault.kind is FaultKind.ERROR_EVENT:
                return self.error(fault.status, "Injected failure.")
            if fault.kind in (FaultKind.HANG, FaultKind.RESET):
                return await self._fail_before_headers(request, fault)
            body = body[: len(body) // 2]
        return web.Response(body=body, headers={"Content-Type": "application/json"})

    async def _stream(
        self,
        request: web.Request,
        frames: Frames,
        behaviour: Behaviour,
        fault: Fault | None,
        sent: _Sent,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        await response.write(frames.head)
        sent.tokens = 0
        if behaviour.first_token_delay:
            await asyncio.sleep(behaviour.first_token_delay)
        interval = 1 / behaviour.tokens_per_second if behaviour.tokens_per_second else 0.0
        count = len(frames.tokens)
        strike_at = None if fault is None or fault.after is None else min(fault.after, count)
        for index, frame in enumerate([*frames.tokens, frames.tail]):
            if index == strike_at and fault:
                await self._strike(request, response, fault)
                return response
            if 0 < index < count and interval:
                await asyncio.sleep(interval)
            await response.write(frame)
            if index < count:
                sent.tokens += 1
        sent.complete = True
        if behaviour.end_delay:
            await asyncio.sleep(behaviour.end_delay)
        await response.write_eof()
        return response

    async def _strike(
        self, request: web.Request, response: web.StreamResponse, fault: Fault
    ) -> None:
        """Fail an open stream, and end it."""
        if fault.kind is FaultKind.MALFORMED:
            # A corrupted stream: what follows never reaches the client as an answer.
            await response.write(self.malformed_frame)
        elif fault.kind is FaultKind.ERROR_EVENT:
            await response.write(self.error_frame(fault.status))
        elif fault.kind is FaultKind.HANG:
            await _never()
        elif fault.kind is FaultKind.RESET:
            _reset(request)
            await _never()
        await response.write_eof()


@dataclass(slots=True)
class _Sent:
    """How far an answer got: tokens written (None until the response started), and whether
    it ended as the provider ends an answer."""

    tokens: int | None = None
    complete: bool = False

    def finish(self, tokens: int) -> None:
        self.tokens, self.complete = tokens, tokens > 0


async def _never() -> NoReturn:
    """Wait until cancelled: by the client going away or the server stopping."""
    await asyncio.Event().wait()
    raise AssertionError("an event nobody sets never fires")


def _reset(request: web.BaseRequest) -> None:
    """Abort the connection with a TCP RST, as a crashed proxy or upstream would."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def sse(data: Mapping[str, Any], event: str | None = None) -> bytes:
    """One server-sent event carrying JSON data."""
    frame = b"data: " + orjson.dumps(data) + b"\n\n"
    return frame if event is None else b"event: " + event.encode() + b"\n" + frame
