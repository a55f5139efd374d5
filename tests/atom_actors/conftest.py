"""Shared catalog, hypothesis strategies, and the actor system's fixtures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from atom_actors.catalog import CAPABILITIES, ModelSpec, default_catalog
from atom_actors.cost import PromptSize
from atom_actors.gateway import Gateway
from atom_actors.projections import all_projections
from atom_actors.providers import AsyncProvider, BlockingProvider, make_provider
from atom_actors.providers.llamacpp import default_model_path
from atom_actors.quality import Evidence
from atom_actors.snapshot import Health, ModelFigures, RouteRequest, RouteSnapshot, Strategy
from atom_actors.system import ActorSystem
from eventstore import EventStore, LiveProjections, SQLiteStore
from tests.fakes.openai_server import FakeOpenAI

ALL = frozenset(CAPABILITIES)
TEXT_ONLY = frozenset({"text_generation", "summarization", "streaming"})


def spec(
    name: str,
    input_usd: float,
    output_usd: float,
    *,
    context: int = 128_000,
    prior: float = 0.5,
    capabilities: frozenset[str] = ALL,
    provider: str = "openai",
) -> ModelSpec:
    return ModelSpec(
        name=name,
        provider=provider,
        model=name,
        capabilities=capabilities,
        input_usd_per_mtok=input_usd,
        output_usd_per_mtok=output_usd,
        context_window=context,
        quality_prior=prior,
    )


# The default catalog's models at their list prices.
DEFAULT_CATALOG = (
    spec("gpt-4", 30, 60, context=8192, prior=0.85),
    spec("gpt-4-turbo", 10, 30, prior=0.85),
    spec("claude-3-opus", 15, 75, context=200_000, prior=0.88, provider="anthropic"),
    spec("claude-3-sonnet", 3, 15, context=200_000, prior=0.78, provider="anthropic"),
    spec("claude-3-haiku", 0.25, 1.25, context=200_000, prior=0.65, provider="anthropic"),
    spec(
        "gemma-3-270m", 0, 0, context=32_768, prior=0.2, capabilities=TEXT_ONLY, provider="llamacpp"
    ),
)


@pytest.fixture
def catalog() -> tuple[ModelSpec, ...]:
    return DEFAULT_CATALOG


# Prices as they are quoted (a few decimals per million tokens) and as arbitrary floats.
prices = st.one_of(
    st.integers(0, 100_000_000).map(lambda micro: micro / 1_000_000),
    st.floats(0, 200, allow_nan=False, allow_infinity=False),
)
probabilities = st.floats(0, 1, allow_nan=False)
names = st.sampled_from([f"m{i}" for i in range(8)])
capability_names = st.sampled_from(sorted(CAPABILITIES))


@st.composite
def model_specs(draw: st.DrawFn, name: str) -> ModelSpec:
    return spec(
        name,
        draw(prices),
        draw(prices),
        context=draw(st.integers(4_096, 200_000)),
        prior=draw(probabilities),
        capabilities=frozenset(draw(st.sets(capability_names, min_size=5))),
        provider=draw(st.sampled_from(["openai", "anthropic", "llamacpp"])),
    )


@st.composite
def evidence(draw: st.DrawFn) -> Evidence:
    scores = draw(st.lists(probabilities, max_size=6))
    return Evidence(sum(scores), len(scores))


@st.composite
def model_figures(draw: st.DrawFn) -> ModelFigures:
    return ModelFigures(
        quality=draw(st.dictionaries(capability_names, evidence(), max_size=3)),
        ttft_ms=draw(st.none() | st.floats(0, 5_000)),
        tokens_per_s=draw(st.none() | st.floats(1, 500)),
    )


@st.composite
def snapshots(draw: st.DrawFn) -> RouteSnapshot:
    chosen = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    catalog = tuple(draw(model_specs(name)) for name in chosen)
    some = st.sampled_from(chosen)
    return RouteSnapshot(
        catalog=catalog,
        health=draw(st.dictionaries(some, st.sampled_from(Health), max_size=3)),
        figures=draw(st.dictionaries(some, model_figures(), max_size=6)),
        unavailable=draw(st.dictionaries(some, st.just("OPENAI_API_KEY not set"), max_size=1)),
        headroom_usd=draw(st.none() | st.floats(0, 0.5)),
        round_robin_counter=draw(st.integers(0, 1_000)),
    )


@st.composite
def prompt_sizes(draw: st.DrawFn) -> PromptSize:
    """A prompt's estimate, and a bound of up to four bytes a character above it."""
    estimate = draw(st.integers(0, 8_000))
    return PromptSize(estimate, draw(st.integers(estimate, 16 * estimate)), draw(st.integers(0, 2)))


@st.composite
def route_requests(draw: st.DrawFn, strategy: Strategy | None = None) -> RouteRequest:
    return RouteRequest(
        capability=draw(capability_names),
        prompt=draw(prompt_sizes()),
        max_tokens=draw(st.none() | st.integers(1, 4_000)),
        strategy=strategy or draw(st.sampled_from(Strategy)),
        allow=draw(st.none() | st.frozensets(names, min_size=3)),
        deny=draw(st.frozensets(names, max_size=1)),
        min_quality=draw(st.none() | probabilities),
        max_cost_usd=draw(st.none() | st.floats(0, 0.5)),
        deadline_ms=draw(st.none() | st.floats(100, 200_000)),
    )


# ------------------------------------------------------------------ the actor system's fixtures

FAKE_KEY_ENV = "ATOM_TEST_FAKE_KEY"


def story(log: EventStore, request_id: str) -> list[str]:
    """The types of a request's events, in the order the log holds them."""
    return [e.type for e in log.read_stream(f"request-{request_id}")]


def gemma_spec() -> ModelSpec:
    """The catalog's embedded Gemma 3 270M, as `atom serve` configures it by default."""
    (gemma,) = [m for m in default_catalog(str(default_model_path())) if m.name == "gemma-3-270m"]
    return gemma


def network_spec(name: str, base_url: str, **options: Any) -> ModelSpec:
    """A catalog entry for a model served by a fake upstream on loopback."""
    values: dict[str, Any] = {
        "name": name,
        "provider": "openai",
        "model": name,
        "capabilities": frozenset({"text_generation"}),
        "input_usd_per_mtok": 1.0,
        "output_usd_per_mtok": 2.0,
        "context_window": 8192,
        "max_concurrency": 4,
        "base_url": base_url,
        "api_key_env": FAKE_KEY_ENV,
        "timeout_connect_s": 2.0,
        "timeout_first_token_s": 10.0,
        "timeout_total_s": 20.0,
    }
    values.update(options)
    return ModelSpec(**values)


def fake_env_factory(spec: ModelSpec) -> AsyncProvider | BlockingProvider:
    return make_provider(spec, {FAKE_KEY_ENV: "sk-test"})


@pytest.fixture
def log(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EventStore]:
    # Durability full unless a test asks for another (parametrize "log", indirect=True).
    durability = getattr(request, "param", "full")
    with SQLiteStore(str(tmp_path / "log.db"), durability=durability) as store:
        yield store


@pytest.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def make_system(log: EventStore) -> AsyncIterator[Callable[..., ActorSystem]]:
    """Start actor systems on the running loop; all are stopped after the test."""
    systems: list[ActorSystem] = []

    def make(specs: Sequence[ModelSpec], **options: Any) -> ActorSystem:
        options.setdefault("factory", fake_env_factory)
        system = ActorSystem(log, specs, **options)
        system.start(asyncio.get_running_loop())
        systems.append(system)
        return system

    yield make
    for system in systems:
        await system.aclose()


@pytest.fixture
async def make_gateway(
    log: EventStore, make_system: Callable[..., ActorSystem]
) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """A gateway over an actor system of the given models, with live projections."""
    running: list[LiveProjections] = []

    async def make(specs: Sequence[ModelSpec], **options: Any) -> Gateway:
        system = make_system(specs)
        projections = LiveProjections(log, all_projections())
        await projections.start()
        running.append(projections)
        return Gateway(log, system, projections, env={FAKE_KEY_ENV: "sk-test"}, **options)

    yield make
    for projections in running:
        await projections.stop()
