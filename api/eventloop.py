"""The event loop `atom serve` runs on: uvloop where it is installed, else asyncio's own."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

LOOPS: Final = ("auto", "uvloop", "asyncio")
"""What `--loop` accepts; auto is uvloop when it can be imported."""


class LoopUnavailable(RuntimeError):
    """The loop asked for is not installed here."""


def resolve(choice: str) -> str:
    """The loop a choice stands for: 'uvloop' or 'asyncio'."""
    if choice not in LOOPS:
        raise ValueError(f"unknown event loop {choice!r}: choose one of {', '.join(LOOPS)}")
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise LoopUnavailable("--loop uvloop: uvloop is not installed (pip install uvloop)")
    return "uvloop" if choice == "uvloop" or (choice == "auto" and installed) else "asyncio"


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    """Run `main` to completion on a new loop of the kind `resolve` named."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def running_loop_name() -> str:
    """'uvloop' or 'asyncio': which implementation the running loop is."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
