"""A real server on 127.0.0.1 over a real log, keys of every role, and a client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from api.app import create_app
from api.auth import Role
from api.keys import issue, revoke
from api.routes import ROUTES
from api.routing import Route
from api.server import with_gateway
from api.services import Limits, Services, build_services
from atom_actors.catalog import CAPABILITIES, ModelSpec
from atom_actors.projections import all_projections
from atom_actors.system import ActorSystem
from eventstore import EventStore
from tests.atom_actors.conftest import FAKE_KEY_ENV, network_spec
from tests.fakes.openai_server import FakeOpenAI

ATOM = str(Path(sys.executable).with_name("atom"))


def atom(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real `atom` executable to completion."""
    return subprocess.run(
        [ATOM, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def issue_key(store: EventStore, role: Role, **options: Any) -> str:
    issued = issue(role, f"test {role.label}", **options)
    store.append_batch(issued.parts)
    return issued.key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Api:
    """A running app: its URL, a client session, its services and keys."""

    url: str
    server: TestServer
    http: aiohttp.ClientSession
    services: Services
    keys: dict[Role, str]
    revoked: str

    def ws_url(self, path: str = "/api/advanced-ai/streaming/ws") -> str:
        return self.url.replace("http://", "ws://") + path

    async def call(
        self, method: str, path: str, *, key: str | None = None, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """Send a request; returns the status, the JSON (or text) body and the response."""
        headers = {**kwargs.pop("headers", {}), **(bearer(key) if key else {})}
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as r:
            text = await r.text()
            body = await r.json() if r.content_type == "application/json" else text
            return r.status, body, r


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "atom.db")


@pytest.fixture
def store(db_path: str) -> Iterator[EventStore]:
    with EventStore(db_path, durability="normal") as s:
        yield s


StartApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start_api(store: EventStore) -> AsyncIterator[StartApi]:
    """Start a server over `store` (limits, routes); every role has a key, one is revoked."""
    keys = {role: issue_key(store, role) for role in Role}
    revoked = issue(Role.ADMIN, "revoked")
    store.append_batch(revoked.parts)
    revoke(store, revoked.key_id)
    servers: list[TestServer] = []
    async with aiohttp.ClientSession() as http:

        async def start(
            limits: Limits | None = None,
            routes: Sequence[Route] = ROUTES,
            services: Services | None = None,
        ) -> Api:
            services = services or build_services(store, limits=limits or Limits())
            server = TestServer(create_app(services, routes), host="127.0.0.1", port=0)
            await server.start_server()
            servers.append(server)
            url = str(server.make_url("")).rstrip("/")
            return Api(url, server, http, services, keys, revoked.key)

        yield start
        for server in servers:
            await server.close()


@pytest.fixture
async def api(start_api: StartApi) -> Api:
    return await start_api()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


StartGateway = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start_gateway(
    store: EventStore, start_api: StartApi, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StartGateway]:
    """Start a server whose gateway answers with the given models (fake upstreams, usually)."""
    monkeypatch.setenv(FAKE_KEY_ENV, "sk-test")
    systems: list[ActorSystem] = []

    async def start(specs: Sequence[ModelSpec], limits: Limits | None = None) -> Api:
        system = ActorSystem(store, specs)
        system.start(asyncio.get_running_loop())
        systems.append(system)
        services = with_gateway(
            build_services(
                store, actors=system, limits=limits or Limits(), projections=all_projections()
            )
        )
        return await start_api(services=services)

    yield start
    for system in systems:
        await system.aclose()


@pytest.fixture
async def full_api(start_gateway: StartGateway, upstream: FakeOpenAI) -> Api:
    """A server with every route live: one model, "m", behind a fake OpenAI upstream."""
    spec = network_spec("m", upstream.base_url, capabilities=CAPABILITIES)
    return await start_gateway([spec])
