"""Schemathesis over the OpenAPI document: generated requests, valid and not, never get a 500."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from api.app import create_app
from api.auth import Role
from api.openapi import document
from api.routes import ROUTES
from api.services import Limits, build_services
from eventstore import EventStore
from tests.api.conftest import bearer, issue_key

# An HTTP fuzzer cannot speak WebSocket: test_ws.py covers that route.
WEBSOCKETS = [route.path for route in ROUTES if route.websocket]
schema = schemathesis.openapi.from_dict(document(ROUTES)).exclude(path=WEBSOCKETS)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A server on its own thread and loop (schemathesis calls it synchronously), and a key."""
    db = Path(tmp_path_factory.mktemp("fuzz")) / "atom.db"
    store = EventStore(str(db), durability="normal")
    key = issue_key(store, Role.ADMIN)
    # No rate limit: the fuzzer would spend its examples on 429s.
    runner = web.AppRunner(create_app(build_services(store, limits=Limits(rate=None))))
    loop = asyncio.new_event_loop()

    async def start() -> str:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    yield url, key
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
    store.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(
    case: schemathesis.Case[Any], live: tuple[str, str]
) -> None:
    url, key = live
    case.call_and_validate(base_url=url, headers=bearer(key))
