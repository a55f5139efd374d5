"""Fixtures of the network provider tests: fake upstreams on loopback, and addresses that fail."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from atom_actors.providers._http import Timeouts
from atom_actors.providers.anthropic import AnthropicProvider
from atom_actors.providers.openai import OpenAIProvider
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

API_KEY = "sk-test-key"
# Generous enough for a loaded 2-core machine, short enough that a hang fails the test fast.
QUICK = Timeouts(connect=2.0, first_token=5.0, idle=5.0, total=10.0)


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def make_openai(openai_fake: FakeOpenAI) -> AsyncIterator[Callable[..., OpenAIProvider]]:
    """Build OpenAI providers pointed at the fake (unless told otherwise); all closed after."""
    providers: list[OpenAIProvider] = []

    def make(model: str = "fake-gpt", **options: Any) -> OpenAIProvider:
        options = {
            "api_key": API_KEY,
            "base_url": openai_fake.base_url,
            "timeouts": QUICK,
            **options,
        }
        providers.append(OpenAIProvider(model, **options))
        return providers[-1]

    yield make
    for provider in providers:
        await provider.aclose()


@pytest.fixture
async def make_anthropic(
    anthropic_fake: FakeAnthropic,
) -> AsyncIterator[Callable[..., AnthropicProvider]]:
    """Build Anthropic providers pointed at the fake (unless told otherwise); all closed after."""
    providers: list[AnthropicProvider] = []

    def make(model: str = "fake-claude", **options: Any) -> AnthropicProvider:
        options = {
            "api_key": API_KEY,
            "base_url": anthropic_fake.base_url,
            "timeouts": QUICK,
            **options,
        }
        providers.append(AnthropicProvider(model, **options))
        return providers[-1]

    yield make
    for provider in providers:
        await provider.aclose()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def blackhole_url() -> Iterator[str]:
    """A loopback URL where connecting hangs: the listener's backlog is full and never accepted."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        host, port = listener.getsockname()
        yield f"http://{host}:{port}"
