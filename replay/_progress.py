"""A progress bar on stderr when it is a terminal; nothing at all when piped or redirected."""

from __future__ import annotations

import sys
import time
from typing import Final, TextIO

_WIDTH: Final = 30
_REDRAW_S: Final = 0.1


class ProgressBar:
    """Call it with (done, total) as work advances; close it (or leave its `with`) when done.

    A `Callable[[int, int], None]`, so it fits any `progress` parameter of that shape.
    """

    __slots__ = ("_drawn", "_label", "_last", "_stream", "_visible")

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self._label = label
        self._stream = sys.stderr if stream is None else stream
        self._visible = self._stream.isatty()
        self._drawn = False
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self._visible:
            return
        now = time.monotonic()
        # A bar redrawn per event would cost more than the work it reports on.
        if done < total and now - self._last < _REDRAW_S:
            return
        self._last = now
        filled = _WIDTH * min(done, total) // total if total > 0 else _WIDTH
        bar = "#" * filled + "." * (_WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {done}/{total}")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the bar, so that what follows starts on a clean line."""
        if self._drawn:
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._drawn = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
