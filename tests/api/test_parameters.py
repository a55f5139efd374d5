"""Every parameter passed, translated or refused by name: routing leaves out the models that
cannot honour one, a named one is a 400 naming it, unless the request allows dropping it, and
then the answer says what was dropped; logprobs in OpenAI's shape from the providers that give
them."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
from openai import AsyncOpenAI, BadRequestError

from api.auth import Role
from api.routes.anthropic_compat import MESSAGES_BODY
from api.routes.embeddings import EMBEDDINGS
from api.routes.openai_compat import CHAT
from atom_actors.parameters import REFUSED, field
from tests.api.conftest import Api, StartGateway
from tests.atom_actors.conftest import gemma_spec, network_spec
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.text import logprob, tokenize
from tests.paths import ROOT

REPLY = "Mild and sunny."
ASK: Any = [{"role": "user", "content": "Weather?"}]


@dataclass
class Pair:
    """ATOM in front of gpt (an OpenAI-format upstream, the dearer) and claude (Anthropic)."""

    api: Api
    gpt: FakeOpenAI
    claude: FakeAnthropic

    def events(self, request_id: str, kind: str) -> list[dict[str, Any]]:
        stream = f"request-{request_id}"
        return [e.data for e in self.api.services.store.read_stream(stream) if e.type == kind]


@pytest.fixture
async def pair(start_gateway: StartGateway) -> AsyncIterator[Pair]:
    behaviour = Behaviour(reply=REPLY)
    async with FakeOpenAI(default=behaviour) as gpt, FakeAnthropic(default=behaviour) as claude:
        specs = [
            network_spec("gpt", gpt.base_url, input_usd_per_mtok=5.0),
            network_spec("claude", claude.base_url, provider="anthropic"),
        ]
        yield Pair(await start_gateway(specs), gpt, claude)


@pytest.fixture
async def client(pair: Pair) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=pair.api.url + "/v1", api_key=pair.api.keys[Role.USER], max_retries=0
    ) as client:
        yield client


async def test_routing_leaves_out_a_model_that_cannot_honour_a_parameter(
    pair: Pair, client: AsyncOpenAI
) -> None:
    # claude is the cheaper, but has no seed: gpt answers, and the route says why.
    plain = await client.chat.completions.create(model="atom:cost_first", messages=ASK)
    seeded = await client.chat.completions.create(
        model="atom:cost_first", messages=ASK, seed=7, logprobs=True
    )

    assert [r.path for r in pair.claude.requests] == ["/v1/messages"]
    assert plain.id != seeded.id and pair.gpt.requests[0].body["seed"] == 7
    [decided] = pair.events(seeded.id.removeprefix("chatcmpl-"), "RouteDecided")
    assert decided["chosen"] == "gpt"
    assert decided["excluded"] == [
        {"model": "claude", "reason": "parameter: logprobs, seed not supported by anthropic"}
    ]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"seed": 7}, "seed"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"temperature": 1.5}, "temperature"),
    ],
)
async def test_a_named_model_is_refused_naming_the_parameter(
    pair: Pair, extra: dict[str, Any], field: str
) -> None:
    status, error, _ = await pair.api.call(
        "POST",
        "/v1/chat/completions",
        key=pair.api.keys[Role.USER],
        json={"model": "claude", "messages": ASK, **extra},
    )

    assert (status, error["error"]["field"]) == (400, field)
    assert error["error"]["message"].startswith(f"model 'claude' cannot honour {field}: ")
    assert '"drop_params": true' in error["error"]["message"]
    assert pair.claude.requests == []


async def test_with_drop_params_the_answer_says_what_was_dropped(
    pair: Pair, client: AsyncOpenAI
) -> None:
    extra: Any = {"atom": {"drop_params": True}}
    completion = await client.chat.completions.with_raw_response.create(
        model="claude", messages=ASK, seed=7, temperature=0.2, extra_body=extra
    )
    answer = completion.parse()
    by_header = await client.chat.completions.create(
        model="claude",
        messages=ASK,
        presence_penalty=1,
        stream=True,
        extra_headers={"X-Atom-Drop-Params": "true"},
    )
    chunks = [chunk async for chunk in by_header]

    assert answer.choices[0].message.content == REPLY
    assert answer.model_extra == {"atom": {"dropped_params": ["seed"]}}
    assert completion.headers["X-Atom-Dropped-Params"] == "seed"
    sent = pair.claude.requests[0].body
    assert "seed" not in sent and sent["temperature"] == 0.2
    [completed] = pair.events(answer.id.removeprefix("chatcmpl-"), "RequestCompleted")
    assert completed["dropped_params"] == ["seed"]
    assert chunks[-1].model_extra == {"atom": {"dropped_params": ["presence_penalty"]}}


async def test_parameters_reach_openai_as_they_are_and_anthropic_translated(
    pair: Pair, client: AsyncOpenAI
) -> None:
    await client.chat.completions.create(
        model="gpt", messages=ASK, presence_penalty=0.5, frequency_penalty=-0.5,
        logit_bias={"50256": -100}, user="u-42", seed=3, stop=["\n"],
    )  # fmt: skip
    await client.chat.completions.create(
        model="claude", messages=ASK, user="u-42", stop=["\n"], temperature=0.3
    )

    sent = pair.gpt.requests[0].body
    assert (sent["presence_penalty"], sent["frequency_penalty"]) == (0.5, -0.5)
    assert (sent["logit_bias"], sent["user"], sent["seed"]) == ({"50256": -100}, "u-42", 3)
    translated = pair.claude.requests[0].body
    assert translated["metadata"] == {"user_id": "u-42"}
    assert (translated["stop_sequences"], translated["temperature"]) == (["\n"], 0.3)


async def test_logprobs_come_back_in_openais_shape_streamed_or_not(
    client: AsyncOpenAI,
) -> None:
    whole = await client.chat.completions.create(
        model="gpt", messages=ASK, logprobs=True, top_logprobs=2
    )
    async with client.chat.completions.stream(
        model="gpt", messages=ASK, logprobs=True, top_logprobs=2
    ) as stream:
        streamed = await stream.get_final_completion()

    content: Any = whole.choices[0].logprobs.content  # type: ignore[union-attr]
    assert [(t.token, t.logprob) for t in content] == [(t, logprob(t)) for t in tokenize(REPLY)]
    assert [len(t.top_logprobs) for t in content] == [2] * len(content)
    assert content[0].top_logprobs[0].token == content[0].token
    again: Any = streamed.choices[0].logprobs.content  # type: ignore[union-attr]
    assert [t.model_dump() for t in again] == [t.model_dump() for t in content]


async def test_the_local_model_gives_logprobs_and_its_likeliest_tokens(
    start_gateway: StartGateway,
) -> None:
    gemma = gemma_spec()
    api = await start_gateway([gemma])
    async with AsyncOpenAI(
        base_url=api.url + "/v1", api_key=api.keys[Role.USER], max_retries=0, timeout=120
    ) as local:
        completion = await local.chat.completions.create(
            model="gemma-3-270m", messages=ASK, max_tokens=4, temperature=0, logprobs=True,
            top_logprobs=3, presence_penalty=0.5,
        )  # fmt: skip

    content: Any = completion.choices[0].logprobs.content  # type: ignore[union-attr]
    assert completion.usage is not None
    assert len(content) == completion.usage.completion_tokens
    for token in content:
        tops = [t.logprob for t in token.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True) and tops[0] <= 0
        # Greedy: the token taken is the likeliest.
        assert token.top_logprobs[0].token == token.token
        assert token.logprob == pytest.approx(tops[0])


async def test_the_messages_route_refuses_top_k_for_an_openai_model_unless_dropped(
    pair: Pair,
) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=pair.api.url, api_key=pair.api.keys[Role.USER], max_retries=0
    ) as client:
        # This SDK release dropped top_k from its signature; the API still documents it.
        top_k: Any = {"top_k": 5}
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(model="gpt", max_tokens=20, messages=ASK, extra_body=top_k)
        dropped = await client.messages.create(
            model="gpt", max_tokens=20, messages=ASK,
            extra_body={**top_k, "atom": {"drop_params": True}},
        )  # fmt: skip
        routed = await client.messages.create(
            model="atom:cost_first", max_tokens=20, messages=ASK, extra_body=top_k
        )

    error: Any = refused.value.body
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["field"] == "top_k"
    assert dropped.model_extra == {"atom": {"dropped_params": ["top_k"]}}
    assert "top_k" not in pair.gpt.requests[0].body
    assert routed.model == "atom:cost_first" and pair.claude.requests[0].body["top_k"] == 5


async def test_top_logprobs_without_logprobs_is_refused(client: AsyncOpenAI) -> None:
    with pytest.raises(BadRequestError) as refused:
        await client.chat.completions.create(model="gpt", messages=ASK, top_logprobs=2)
    assert refused.value.body == {
        "type": "bad_request",
        "message": "top_logprobs goes with logprobs: true",
        "field": "top_logprobs",
    }


async def test_a_confidence_weighted_ensemble_asks_for_logprobs_where_given(pair: Pair) -> None:
    body = {
        "prompt": "Weather?",
        "ensemble": {"method": "confidence_weighted", "models": ["gpt", "claude"]},
    }
    status, answer, _ = await pair.api.call(
        "POST", "/api/advanced-ai/orchestrate", key=pair.api.keys[Role.USER], json=body
    )

    assert status == 200, answer
    # gpt's weight is its own confidence; claude gives no logprobs, so it weighs its
    # agreement with gpt (the same answer: 1).
    sure = math.exp(math.fsum(logprob(t) for t in tokenize(REPLY)) / len(tokenize(REPLY)))
    members = {m["model"]: m for m in answer["members"]}
    assert members["gpt"]["weight_basis"] == "logprobs"
    assert members["gpt"]["weight"] == pytest.approx(sure)
    assert (members["claude"]["weight_basis"], members["claude"]["weight"]) == ("agreement", 1.0)
    assert pair.gpt.requests[0].body["logprobs"] is True
    assert "logprobs" not in pair.claude.requests[0].body
    [combined] = pair.events(answer["request_id"], "EnsembleCombined")
    assert combined["members"] == answer["members"]
    assert combined["result"]["weight_bases"] == {"gpt#1": "logprobs", "claude#2": "agreement"}


# The parameter tables of docs/api.md, by the route whose body they describe.
TABLES: dict[str, Mapping[str, Any]] = {
    "`POST /v1/chat/completions`": CHAT,
    "`POST /v1/messages`": MESSAGES_BODY,
    "`POST /v1/embeddings`": EMBEDDINGS,
}
COLUMNS = {"openai-format": "openai", "anthropic": "anthropic", "llama.cpp": "llamacpp"}
_REFUSAL = re.compile(r"refused `([^`]+)`")
_VERDICT = re.compile(r"^(passed|translated: |refused `)")


def _tables() -> dict[str, list[dict[str, str]]]:
    """Each table of the Parameters section, as rows of cells by column name."""
    section = (ROOT / "docs" / "api.md").read_text().split("## Parameters: ", 1)[1]
    tables: dict[str, list[dict[str, str]]] = {}
    route = None
    header: list[str] = []
    for line in section.splitlines():
        if line.startswith("`POST "):
            route = next(name for name in TABLES if line.startswith(name))
            header = []
        elif line.startswith("|") and route is not None:
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            if not header:
                header = cells
            elif not set(line) <= set("|- "):
                tables.setdefault(route, []).append(dict(zip(header, cells, strict=True)))
    return tables


def test_the_parameter_tables_in_docs_api_agree_with_the_code() -> None:
    tables = _tables()
    assert set(tables) == set(TABLES)
    documented: dict[str, set[str]] = {provider: set() for provider in COLUMNS.values()}
    for route, rows in tables.items():
        # Every field of the route's body has its row, and only those.
        names = [row["parameter"].strip("`") for row in rows]
        assert sorted(names) == sorted(TABLES[route]["properties"]), route
        for row, name in zip(rows, names, strict=True):
            for column, provider in COLUMNS.items():
                cell = row[column]
                assert _VERDICT.match(cell), (route, name, column, cell)
                said = set(_REFUSAL.findall(cell))
                # A refusal in the table is one in the code, for this very field, and the
                # reverse.
                assert said == {n for n in REFUSED[provider] if field(n) == name}, (
                    route, name, column,
                )  # fmt: skip
                documented[provider] |= said
    assert documented == {provider: set(REFUSED[provider]) for provider in COLUMNS.values()}
