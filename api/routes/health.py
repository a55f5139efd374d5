"""GET /api/advanced-ai/health: liveness and readiness, open to anyone."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web

from atom_actors.bridge import ActorGone
from atom_actors.catalog import unavailable_reason
from atom_actors.model import ModelStatus, NotAdmitted
from atom_actors.system import ActorSystem

from ..eventloop import running_loop_name
from ..probes import Check
from ..routing import Route, json_response
from ..services import Services, services_of

STATUS_TIMEOUT_S: Final = 1.0

_CHECK = {
    "type": "object",
    "required": ["ok", "detail"],
    "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
}

HEALTH: Final = {
    "type": "object",
    "required": ["status", "live", "ready", "event_loop", "checks", "models"],
    "properties": {
        "status": {"enum": ["ready", "not_ready"]},
        "live": {"type": "boolean"},
        "ready": {"type": "boolean"},
        "event_loop": {"enum": ["uvloop", "asyncio"]},
        "checks": {
            "type": "object",
            "required": ["log", "actors"],
            "properties": {"log": _CHECK, "actors": _CHECK},
        },
        "models": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["state"],
                "properties": {
                    "state": {"enum": ["running", "starting", "down", "unavailable"]},
                    "detail": {"type": "string"},
                    "health": {"type": "string"},
                    "in_flight": {"type": "integer"},
                    "queued": {"type": "integer"},
                    "peak_queued": {"type": "integer"},
                },
            },
        },
    },
}


async def _status(actors: ActorSystem, model: str) -> ModelStatus | None:
    try:
        return await asyncio.wait_for(actors.status(model), STATUS_TIMEOUT_S)
    except (TimeoutError, ActorGone, NotAdmitted, KeyError):
        return None


async def _models(services: Services) -> tuple[dict[str, dict[str, Any]], Check]:
    actors = services.actors
    states = actors.directory.models() if actors is not None else {}
    models: dict[str, dict[str, Any]] = {}
    running: list[str] = []
    for spec in services.config.models:
        # An actor may run for a model that cannot be called (no credentials): say why not.
        reason = unavailable_reason(spec)
        state = states.get(spec.name)
        if reason is not None or state is None:
            models[spec.name] = {"state": "unavailable", "detail": reason or "not started"}
        elif state != "running":
            models[spec.name] = {"state": "down", "detail": state}
        else:
            running.append(spec.name)
    if actors is None:
        return models, Check(True, "no actor system: this server runs no models")
    answers = await asyncio.gather(*(_status(actors, name) for name in running))
    for name, status in zip(running, answers, strict=True):
        if status is None:
            # A model actor answers only once its model has loaded.
            models[name] = {"state": "starting", "detail": "loading: not answering yet"}
        else:
            models[name] = {
                "state": "running",
                "health": status.health,
                "in_flight": status.in_flight,
                "queued": status.queued,
                "peak_queued": status.peak_queued,
            }
    answering = sum(status is not None for status in answers)
    return models, Check(answering > 0, f"{answering} of {len(models)} models answering")


async def health(request: web.Request) -> web.Response:
    services = services_of(request)
    log, (models, actors) = await asyncio.gather(services.log_probe.check(), _models(services))
    ready = log.ok and actors.ok
    body = {
        "status": "ready" if ready else "not_ready",
        "live": True,
        "ready": ready,
        "event_loop": running_loop_name(),
        "checks": {"log": log.to_dict(), "actors": actors.to_dict()},
        "models": models,
    }
    return json_response(body, 200 if ready else 503)


ROUTES: Final = (
    Route(
        "GET",
        "/api/advanced-ai/health",
        health,
        role=None,
        summary="Liveness and readiness",
        description=(
            "200 when ready: the event log takes writes and at least one model actor answers "
            "(a server without an actor system needs only the log). 503 with the same "
            "document otherwise. No key needed."
        ),
        response=HEALTH,
        responses={503: HEALTH},
        tag="operations",
    ),
)
