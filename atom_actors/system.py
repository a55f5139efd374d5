"""The actor system as the server uses it: supervisor, directory and caller, started and stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pykka

from eventstore import EventStore

from . import bridge
from .calls import ModelCaller
from .catalog import ModelSpec
from .circuit import DEFAULT_CIRCUIT, CircuitPolicy
from .directory import Directory
from .model import GetStatus, ModelStatus, ProviderFactory
from .providers import make_provider
from .supervisor import DEFAULT_RESTARTS, RestartPolicy, Supervisor


class ActorSystem:
    """Every configured model as a supervised actor, callable from the running event loop."""

    def __init__(
        self,
        store: EventStore,
        specs: Sequence[ModelSpec],
        *,
        factory: ProviderFactory = make_provider,
        restart_policy: RestartPolicy = DEFAULT_RESTARTS,
        circuit_policy: CircuitPolicy = DEFAULT_CIRCUIT,
    ) -> None:
        self.store = store
        self.specs = {spec.name: spec for spec in specs}
        self.directory = Directory()
        self.caller = ModelCaller(store, self.directory)
        self._factory = factory
        self._restart_policy = restart_policy
        self._circuit_policy = circuit_policy
        self._supervisor: pykka.ActorRef[Any] | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the supervisor, which starts one actor per model."""
        self._supervisor = Supervisor.start(
            list(self.specs.values()),
            self._factory,
            store=self.store,
            directory=self.directory,
            loop=loop,
            policy=self._restart_policy,
            circuit_policy=self._circuit_policy,
        )
        # Any answer comes after on_start, by which time every model has its actor.
        self._supervisor.ask("started?")

    def stop(self) -> None:
        """Stop every actor (waiting for them) and the supervisor."""
        if self._supervisor is not None and self._supervisor.is_alive():
            self._supervisor.stop()
        self._supervisor = None

    async def aclose(self) -> None:
        """Stop from the event loop, which stays free to close the network providers."""
        await asyncio.to_thread(self.stop)
        # The actors scheduled their providers' aclose() on this loop: let them run.
        for _ in range(3):
            await asyncio.sleep(0)

    async def status(self, model: str) -> ModelStatus:
        """The model actor's admission and circuit state."""
        ref = self.directory.ref(model)
        return await bridge.ask(ref, lambda reply: GetStatus(reply))
