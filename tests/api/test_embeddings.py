"""POST /v1/embeddings through the official openai client: in front of an OpenAI-format
upstream and the local Gemma, on the record, priced and budgeted like any call."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from api.auth import Role
from atom_actors.cost import cost_pico
from atom_actors.events import BudgetSet
from tests.api.conftest import Api, StartGateway
from tests.atom_actors.conftest import gemma_spec, network_spec
from tests.fakes.openai_server import FakeOpenAI, fake_vector
from tests.fakes.text import tokenize

TEXTS = ["The cat sat on the mat.", "Budgets are never overspent."]


@dataclass
class Embedder:
    """ATOM in front of "embed" (an OpenAI-format embeddings model) and "chat" (no embeddings)."""

    api: Api
    upstream: FakeOpenAI
    client: AsyncOpenAI

    def events(self, request_id: str) -> dict[str, list[dict[str, Any]]]:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for event in self.api.services.store.read_stream(f"request-{request_id}"):
            by_type.setdefault(event.type, []).append({**event.data, **event.metadata})
        return by_type


@pytest.fixture
async def embedder(start_gateway: StartGateway) -> AsyncIterator[Embedder]:
    async with FakeOpenAI() as upstream:
        specs = [
            network_spec("embed", upstream.base_url, input_usd_per_mtok=0.02,
                         capabilities=frozenset({"embeddings"})),
            network_spec("chat", upstream.base_url),
        ]  # fmt: skip
        api = await start_gateway(specs)
        async with AsyncOpenAI(
            base_url=api.url + "/v1", api_key=api.keys[Role.USER], max_retries=0
        ) as client:
            yield Embedder(api, upstream, client)


async def test_the_openai_client_gets_the_upstreams_vectors_recorded_and_priced(
    embedder: Embedder,
) -> None:
    # The client asks for base64 unless told otherwise, and decodes it.
    answer = await embedder.client.embeddings.create(model="embed", input=TEXTS)
    floats = await embedder.client.embeddings.create(
        model="embed", input=TEXTS[0], encoding_format="float", dimensions=4
    )

    assert [row.index for row in answer.data] == [0, 1]
    for row, text in zip(answer.data, TEXTS, strict=True):
        assert row.embedding == pytest.approx(fake_vector(text), abs=1e-6)
    assert floats.data[0].embedding == fake_vector(TEXTS[0], 4)
    tokens = sum(len(tokenize(t)) for t in TEXTS)
    assert (answer.model, answer.usage.prompt_tokens, answer.usage.total_tokens) == (
        "embed", tokens, tokens,
    )  # fmt: skip
    # Each text is one input upstream; ATOM reads floats, whatever its client asked for.
    sent = embedder.upstream.requests[0]
    assert (sent.path, sent.body) == (
        "/v1/embeddings",
        {"model": "embed", "input": TEXTS, "encoding_format": "float"},
    )
    assert embedder.upstream.requests[1].body["dimensions"] == 4

    first = next(
        e.data["request_id"]
        for e in embedder.api.services.store.read_all()
        if e.type == "RequestReceived"
    )
    events = embedder.events(first)
    [received] = events["RequestReceived"]
    assert (received["endpoint"], received["capability"]) == ("v1/embeddings", "embeddings")
    [reserved], [settled] = events["BudgetReserved"], events["BudgetSettled"]
    [call] = events["ModelCallCompleted"]
    cost = cost_pico(network_spec("embed", "", input_usd_per_mtok=0.02), tokens, 0)
    assert (call["prompt_tokens"], call["completion_tokens"], call["cost_pico"]) == (
        tokens, 0, cost,
    )  # fmt: skip
    # Reserved before the call for the inputs alone (nothing is generated), settled by usage.
    assert 0 < cost <= reserved["amount_pico"] == settled["reserved_pico"]
    assert (settled["actual_pico"], settled["rule"]) == (cost, "usage")
    [done] = events["RequestCompleted"]
    assert (done["cost_pico"], done["prompt_tokens"], done["completion_tokens"]) == (
        cost, tokens, 0,
    )  # fmt: skip
    # Every event of the request says whose it is.
    [tenancy] = {e["tenancy"] for kind in events.values() for e in kind}
    assert tenancy.startswith("key:")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "embed"}, "input"),
        ({"model": "embed", "input": []}, "input"),
        ({"model": "embed", "input": ""}, "input"),
        ({"model": "embed", "input": [[1, 2, 3]]}, "input[0]"),
        ({"model": "embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "embed", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "embed", "input": "x", "extra": 1}, "extra"),
        # A model without the embeddings capability is refused by name.
        ({"model": "chat", "input": "x"}, "model"),
        # A vector comes from one model: no vote, no ladder.
        ({"model": "atom:ensemble:majority_vote", "input": "x"}, "model"),
        ({"model": "atom:cascade", "input": "x"}, "model"),
        ({"model": "atom:fastest", "input": "x"}, "model"),
    ],
)
async def test_bad_bodies_are_refused_naming_the_field(
    embedder: Embedder, body: dict[str, Any], field: str
) -> None:
    status, error, _ = await embedder.api.call(
        "POST", "/v1/embeddings", key=embedder.api.keys[Role.USER], json=body
    )

    assert (status, error["error"]["field"]) == (400, field), error
    assert [r.path for r in embedder.upstream.requests] == []


async def test_a_router_alias_picks_among_the_models_that_embed(embedder: Embedder) -> None:
    answer = await embedder.client.embeddings.create(
        model="atom:cost_first", input=TEXTS[0], encoding_format="float"
    )

    assert answer.model == "embed"
    assert answer.data[0].embedding == pytest.approx(fake_vector(TEXTS[0]), abs=1e-6)
    [received] = [e for e in embedder.api.services.store.read_all() if e.type == "RouteDecided"]
    excluded = {x["model"]: x["reason"] for x in received.data["excluded"]}
    assert "chat" in excluded and "embeddings" in excluded["chat"]


async def test_the_model_list_shows_each_models_capabilities(embedder: Embedder) -> None:
    listed = await embedder.client.models.list()

    capabilities = {m.id: (m.model_extra or {}).get("capabilities", []) for m in listed.data}
    assert capabilities["embed"] == ["embeddings"]
    assert "embeddings" not in capabilities["chat"]


async def test_the_local_gemma_embeds_with_its_pooled_vectors(
    start_gateway: StartGateway,
) -> None:
    gemma = gemma_spec()
    api = await start_gateway([gemma])
    async with AsyncOpenAI(
        base_url=api.url + "/v1", api_key=api.keys[Role.USER], max_retries=0, timeout=120
    ) as local:
        answer = await local.embeddings.create(
            model="gemma-3-270m", input=[*TEXTS, "A cat sat on a mat."], encoding_format="float"
        )
        status, error, _ = await api.call(
            "POST", "/v1/embeddings", key=api.keys[Role.USER],
            json={"model": "gemma-3-270m", "input": "x", "dimensions": 8},
        )  # fmt: skip

    vectors = [row.embedding for row in answer.data]
    assert [len(v) for v in vectors] == [640] * 3
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)

    def cosine(a: list[float], b: list[float]) -> float:
        return math.fsum(x * y for x, y in zip(a, b, strict=True))

    # Pooled over the text, not its last token: the paraphrase is nearer than the other text.
    assert cosine(vectors[0], vectors[2]) > cosine(vectors[1], vectors[2])
    assert answer.usage.prompt_tokens > 0
    assert (status, error["error"]["field"]) == (400, "dimensions")


async def test_an_embedding_that_does_not_fit_the_budget_is_refused_before_any_call(
    embedder: Embedder,
) -> None:
    store = embedder.api.services.store
    store.append("budget-global", [BudgetSet(scope="global", limit_pico=1, period="total").new()])
    await embedder.api.services.projections.catch_up(timeout=5)

    with pytest.raises(openai.APIStatusError) as refused:
        await embedder.client.embeddings.create(model="embed", input=TEXTS)

    assert refused.value.status_code == 402
    assert embedder.upstream.requests == []
    [failed] = [e for e in store.read_all() if e.type == "RequestFailed"]
    assert (failed.data["status"], failed.data["cost_pico"]) == (402, 0)
