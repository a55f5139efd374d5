"""In-process providers with a script: tokens at a pace, a crash or a stall on demand.

They implement the real provider interface, for the paths no network fake reaches: a blocking
provider on an actor's worker thread, and a provider that breaks in ways no provider should.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from atom_actors.catalog import ModelSpec
from atom_actors.providers import CallParams, Delta, Event, Finish, Message, Usage


@dataclass(frozen=True, slots=True)
class Script:
    """What the next calls do: `tokens` at `seconds_per_token`, then crash or stall if asked."""

    tokens: tuple[str, ...] = ("Hello", " world", "!")
    seconds_per_token: float = 0.0
    crash_after: int | None = None
    stall_after: int | None = None


class ScriptedProvider:
    """A BlockingProvider that follows its factory's current script."""

    def __init__(self, name: str, factory: ScriptedFactory) -> None:
        self.name = name
        self.factory = factory
        self.calls: list[str] = []
        self.closed = False
        self.release = threading.Event()

    def generate(self, messages: Sequence[Message], params: CallParams) -> Iterator[Event]:
        script = self.factory.script
        self.calls.append(str(messages[-1].get("content", "")))
        for i, token in enumerate(script.tokens):
            if script.crash_after is not None and i == script.crash_after:
                raise RuntimeError("scripted crash: the model's state is corrupt")
            if script.stall_after is not None and i == script.stall_after:
                # Stalls until released (or the provider is closed): a hung local model.
                self.release.wait(timeout=30)
            if script.seconds_per_token:
                time.sleep(script.seconds_per_token)
            yield Delta(token)
        yield Finish(Usage(3, len(script.tokens)), "stop")

    def close(self) -> None:
        self.closed = True
        self.release.set()


class ScriptedFactory:
    """A provider factory for the actors; set `script` to change what the next calls do."""

    def __init__(self) -> None:
        self.script = Script()
        self.built: list[ScriptedProvider] = []
        self.fail_loading = False

    def __call__(self, spec: ModelSpec) -> ScriptedProvider:
        if self.fail_loading:
            raise OSError(f"{spec.path}: not a GGUF file")
        self.built.append(ScriptedProvider(spec.name, self))
        return self.built[-1]
