"""Running a blocking provider on its worker thread and streaming its output into asyncio."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from .providers import BlockingProvider, CallParams, Event, Message

_END = object()


class _Raised:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def stream_blocking(
    provider: BlockingProvider,
    executor: ThreadPoolExecutor,
    messages: Sequence[Message],
    params: CallParams,
    cancel: threading.Event,
) -> AsyncIterator[Event]:
    """Yield what `provider.generate` yields on its thread; stop it when `cancel` is set."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def push(item: object) -> None:
        # The loop may be gone when a cancelled call's thread finally notices.
        if not loop.is_closed():
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        generator = provider.generate(messages, params)
        try:
            for item in generator:
                if cancel.is_set():
                    break
                push(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            push(_Raised(exc))
        finally:
            close = getattr(generator, "close", None)
            if close is not None:
                close()
            push(_END)

    executor.submit(work)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        cancel.set()
