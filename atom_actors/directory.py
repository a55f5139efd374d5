"""Which actor answers for each model right now, shared by the supervisor and the callers."""

from __future__ import annotations

import threading
from typing import Any

import pykka

from .model import Gate, NotAdmitted, Refusal


class Directory:
    """Model name -> running actor and its gate, or the reason there is none (restarting,
    down)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[pykka.ActorRef[Any], Gate]] = {}
        self._absent: dict[str, tuple[Refusal, str]] = {}

    def set(self, model: str, ref: pykka.ActorRef[Any], gate: Gate) -> None:
        with self._lock:
            self._entries[model] = (ref, gate)
            self._absent.pop(model, None)

    def absent(self, model: str, refusal: Refusal, reason: str) -> None:
        with self._lock:
            self._entries.pop(model, None)
            self._absent[model] = (refusal, reason)

    def ref(self, model: str) -> pykka.ActorRef[Any]:
        """The model's actor; raises NotAdmitted when it has none, KeyError when unknown."""
        return self.entry(model)[0]

    def entry(self, model: str) -> tuple[pykka.ActorRef[Any], Gate]:
        """The model's actor and its gate; NotAdmitted when it has none, KeyError if unknown."""
        entry = self._entries.get(model)
        if entry is not None:
            return entry
        with self._lock:
            if model in self._absent:
                refusal, reason = self._absent[model]
                raise NotAdmitted(model, refusal, reason)
        raise KeyError(model)

    def models(self) -> dict[str, str]:
        """Every model with 'running' or why it is not."""
        with self._lock:
            states = {name: "running" for name in self._entries}
            states.update({name: reason for name, (_, reason) in self._absent.items()})
        return states
