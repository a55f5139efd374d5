"""Schemathesis over the OpenAPI document: generated requests, valid and not, never get a 500.

The server runs a real gateway over a fake upstream, so the model routes answer for real.
Gateway statuses such as 503 ("no model can serve this request", when the generated
constraints exclude every model) are answers, not server errors: the check is for 500.
"""

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
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from api.auth import Role
from api.openapi import document
from api.routes import ROUTES
from api.server import with_gateway
from api.services import Limits, build_services
from atom_actors.catalog import CAPABILITIES
from atom_actors.projections import all_projections
from atom_actors.system import ActorSystem
from eventstore import SQLiteStore
from tests.api.conftest import bearer, issue_key
from tests.atom_actors.conftest import fake_env_factory, network_spec
from tests.fakes.openai_server import FakeOpenAI

# An HTTP fuzzer cannot speak WebSocket: test_ws.py covers that route.
WEBSOCKETS = [route.path for route in ROUTES if route.websocket]
schema = schemathesis.openapi.from_dict(document(ROUTES)).exclude(path=WEBSOCKETS)
# A body too long for its schema is often too large for the server as well: 413 rejects it.
schema.config.checks.negative_data_rejection.expected_statuses.append("413")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A server on its own thread and loop (schemathesis calls it synchronously), and a key."""
    db = Path(tmp_path_factory.mktemp("fuzz")) / "atom.db"
    store = SQLiteStore(str(db), durability="normal")
    key = issue_key(store, Role.ADMIN)
    # No rate limit: the fuzzer would spend its examples on 429s.
    loop = asyncio.new_event_loop()
    upstream = FakeOpenAI(record=False)
    system = ActorSystem(store, [], factory=fake_env_factory)
    runner: web.AppRunner | None = None

    async def start() -> str:
        nonlocal runner, system
        await upstream.start()
        spec = network_spec("m", upstream.base_url, capabilities=CAPABILITIES)
        system = ActorSystem(store, [spec], factory=fake_env_factory)
        system.start(asyncio.get_running_loop())
        services = with_gateway(
            build_services(
                store, actors=system, limits=Limits(rate=None), projections=all_projections()
            )
        )
        runner = web.AppRunner(create_app(services))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def stop() -> None:
        assert runner is not None
        await runner.cleanup()
        await system.aclose()
        await upstream.stop()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    yield url, key
    asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
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
    case.call_and_validate(
        base_url=url,
        headers=bearer(key),
        # A few rules span fields (`answer_field` goes with answer_format "json"; a
        # json_schema response format needs its schema), which the schema subset cannot say:
        # such a body is refused with a 400 naming the field, which is right.
        excluded_checks=[not_a_server_error, positive_data_acceptance],
        additional_checks=[not_a_500],
    )


def not_a_500(ctx: Any, response: Any, case: schemathesis.Case[Any]) -> bool | None:
    """No input may make the server fail: every answer is a deliberate status."""
    if response.status_code == 500:
        raise AssertionError(f"500 for {case.method} {case.path}: {response.text[:500]}")
    return None
