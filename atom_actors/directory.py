"""Which actor answers for each model right now, shared by the supervisor and the callers."""

from __future__ import annotations

import threading
from typing import Any

import pykka

from .model import NotAdmitted, Refusal


class Directory:
    """Model name -> running actor, or the reason there is none (restarting, down)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._absent: dict[str, tuple[Refusal, str]] = {}

    def set(self, model: str, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            self._refs[model] = ref
            self._absent.pop(model, None)

    def absent(self, model: str, refusal: Refusal, reason: str) -> None:
        with self._lock:
            self._refs.pop(model, None)
            self._absent[model] = (refusal, reason)

    def ref(self, model: str) -> pykka.ActorRef[Any]:
        """The model's actor; raises NotAdmitted when it has none, KeyError when unknown."""
        ref = self._refs.get(model)
        if ref is not None:
            return ref
        with self._lock:
            if model in self._absent:
                refusal, reason = self._absent[model]
                raise NotAdmitted(model, refusal, reason)
        raise KeyError(model)

    def models(self) -> dict[str, str]:
        """Every model with 'running' or why it is not."""
        with self._lock:
            states = {name: "running" for name in self._refs}
            states.update({name: reason for name, (_, reason) in self._absent.items()})
        return states
