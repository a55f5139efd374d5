"""A real server on 127.0.0.1 over a real log, keys of every role, and a client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
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
from eventstore import EventStore, SQLiteStore
from tests.atom_actors.conftest import FAKE_KEY_ENV, network_spec
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI

if TYPE_CHECKING:
    from tests.api.conformance import Served

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


# ATOM's error types as the Anthropic-compatible routes name them (api/errors.py).
ANTHROPIC_TYPES = {
    "bad_request": "invalid_request_error",
    "unauthorized": "authentication_error",
    "forbidden": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
}


def error_type(path: str, answer: Any) -> str:
    """An error's type as ATOM names it, whichever shape the route answered in."""
    if path.startswith("/v1/messages"):
        assert answer["type"] == "error", answer
        back = {anthropic: atom for atom, anthropic in ANTHROPIC_TYPES.items()}
        return back[answer["error"]["type"]]
    return str(answer["error"]["type"])


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
    with SQLiteStore(db_path, durability="normal") as s:
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


# ------------------------------------------------- end to end: several fake models, one server

ANSWER = "The answer is 42."
DISSENT = "The answer is 41."
INSIGHT = {
    "insight": "Revenue grew fastest in the north region",
    "evidence": "north rose 30% against 5% elsewhere",
    "confidence": 0.8,
    "recommendation": "move sales staff north",
}


def insight_reply(*insights: dict[str, Any]) -> str:
    """A member's reply to /insights/generate: the JSON the schema asks for."""
    return orjson.dumps({"insights": list(insights)}).decode()


@dataclass
class Fleet:
    """A server whose gateway routes to several fake models with their own prices and answers.

    cheap (0.5/1 USD per Mtok, prior 0.5) and mid (3/15, 0.7) answer ANSWER, dear (30/60, 0.9)
    answers DISSENT, analyst (1/2, 0.6, business_analysis only) answers one INSIGHT.
    """

    api: Api
    upstream: FakeOpenAI

    @property
    def key(self) -> str:
        return self.api.keys[Role.USER]

    @property
    def store(self) -> EventStore:
        return self.api.services.store

    async def post(self, path: str, body: Any, key: str | None = None) -> tuple[int, Any]:
        status, answer, _ = await self.api.call("POST", path, key=key or self.key, json=body)
        return status, answer

    async def get(self, path: str, key: str | None = None) -> tuple[int, Any]:
        status, answer, _ = await self.api.call("GET", path, key=key or self.key)
        return status, answer

    def events(self, request_id: str) -> list[Any]:
        return self.store.read_stream(f"request-{request_id}")


FLEET_REPLIES = {
    "cheap": Behaviour(reply=ANSWER),
    "mid": Behaviour(reply=ANSWER),
    "dear": Behaviour(reply=DISSENT),
    "analyst": Behaviour(reply=insight_reply(INSIGHT)),
}


def fleet_specs(base_url: str) -> list[ModelSpec]:
    every = frozenset(CAPABILITIES)
    return [
        network_spec("cheap", base_url, input_usd_per_mtok=0.5, output_usd_per_mtok=1.0,
                     quality_prior=0.5, capabilities=every, max_concurrency=64),
        network_spec("mid", base_url, input_usd_per_mtok=3.0, output_usd_per_mtok=15.0,
                     quality_prior=0.7, max_concurrency=64,
                     capabilities=frozenset({"text_generation", "summarization", "reasoning",
                                             "streaming"})),
        network_spec("dear", base_url, input_usd_per_mtok=30.0, output_usd_per_mtok=60.0,
                     quality_prior=0.9, capabilities=every, max_concurrency=64),
        network_spec("analyst", base_url, input_usd_per_mtok=1.0, output_usd_per_mtok=2.0,
                     quality_prior=0.6, capabilities=frozenset({"business_analysis"})),
    ]  # fmt: skip


@pytest.fixture
async def fleet_upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(models=FLEET_REPLIES) as fake:
        yield fake


@pytest.fixture
async def fleet(start_gateway: StartGateway, fleet_upstream: FakeOpenAI) -> Fleet:
    """The fleet behind one server, without a rate limit."""
    api = await start_gateway(fleet_specs(fleet_upstream.base_url), Limits(rate=None))
    return Fleet(api, fleet_upstream)


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """Server-Sent Events as (event, JSON data), yielded as each one is complete."""
    event, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data += line.removeprefix("data:").strip()
        elif not line and data:
            yield event, orjson.loads(data) if data != "[DONE]" else data
            event, data = "message", ""


# ------------------------------------------- conformance: one `atom serve` for both SDKs' files


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real `atom serve` in front of a fake OpenAI (gpt) and a fake Anthropic (claude)."""
    from tests.api.conformance import serving

    with serving(tmp_path_factory.mktemp("conformance")) as running:
        yield running
