"""Real event logs for the replay tests: ATOM's gateway answering a fake OpenAI upstream."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from atom_actors.answers import AnswerFormat, AnswerKind
from atom_actors.catalog import ModelSpec
from atom_actors.events import BudgetSet
from atom_actors.gateway import Gateway
from atom_actors.principal import Principal, Role
from atom_actors.projections import all_projections
from atom_actors.providers import CallParams
from atom_actors.request import GatewayError, ProcessRequest
from atom_actors.snapshot import EnsembleMethod, EnsembleSpec, Strategy
from atom_actors.system import ActorSystem
from eventstore import LiveProjections, NewEvent, SQLiteReader, SQLiteStore
from replay.cli import main
from tests.atom_actors.conftest import FAKE_KEY_ENV, fake_env_factory, network_spec
from tests.fakes.faults import Behaviour, Fault
from tests.fakes.openai_server import FakeOpenAI

ASK = [{"role": "user", "content": "What is 2 + 2?"}]
USER = Principal(key_id="key-1", role=Role.USER, tenant="acme")
NUMBER = AnswerFormat(AnswerKind.NUMBER)
PACED_REPLY = "one two three four five six"
PACED_TOKENS_PER_S = 40.0
BUDGET_PICO = 10**12


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The live projections' states and the position they had folded, after one step."""

    position: int
    states: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Story:
    """A log the gateway wrote, and the requests in it."""

    path: Path
    fallback: str
    """cost_first: "cheap" fails with 500 three times (two retries), "backup" answers "4"."""
    ensemble: str
    """majority_vote of a ("The answer is 4"), b ("4") and c ("5"); expected 4."""
    paced: str
    """"paced" streams PACED_REPLY at PACED_TOKENS_PER_S; no expected answer."""
    failed: str
    """"broken" refuses with 400: a RequestFailed."""
    cached: str
    """The paced request again at temperature 0, answered from the cache."""
    snapshots: tuple[Snapshot, ...]


def _specs(upstream: FakeOpenAI) -> list[ModelSpec]:
    prices = {
        "cheap": (0.5, 1.0),
        "backup": (3.0, 6.0),
        "dear": (30.0, 60.0),
        "a": (1.0, 2.0),
        "b": (1.0, 2.0),
        "c": (1.0, 2.0),
        "paced": (2.0, 4.0),
        "broken": (1.0, 1.0),
    }
    return [
        network_spec(name, upstream.base_url, input_usd_per_mtok=i, output_usd_per_mtok=o)
        for name, (i, o) in prices.items()
    ]


def _requests() -> dict[str, ProcessRequest]:
    paced = ProcessRequest(
        [{"role": "user", "content": "Count to six."}],
        CallParams(max_tokens=16, temperature=0.0),
        "paced",
    )
    return {
        "fallback": ProcessRequest(
            ASK,
            CallParams(max_tokens=16),
            strategy=Strategy.COST_FIRST,
            allow=frozenset({"cheap", "backup", "dear"}),
            expected="4",
            answer_format=NUMBER,
        ),
        "ensemble": ProcessRequest(
            ASK,
            CallParams(max_tokens=16),
            ensemble=EnsembleSpec(EnsembleMethod.MAJORITY_VOTE, members=("a", "b", "c")),
            expected="4",
            answer_format=NUMBER,
        ),
        "paced": paced,
        "failed": ProcessRequest(ASK, CallParams(max_tokens=16), "broken"),
        "cached": paced,
    }


async def _write(path: Path) -> Story:
    async with FakeOpenAI() as upstream:
        upstream.models.update(
            backup=Behaviour(reply="Four: 4"),
            a=Behaviour(reply="The answer is 4"),
            b=Behaviour(reply="4"),
            c=Behaviour(reply="5"),
            paced=Behaviour(reply=PACED_REPLY, tokens_per_second=PACED_TOKENS_PER_S),
        )
        upstream.fail(Fault.http_error(500), model="cheap")
        upstream.fail(Fault.http_error(400), model="broken")
        with SQLiteStore(str(path)) as store:
            await store.append_async(
                "budget-global",
                [BudgetSet(scope="global", limit_pico=BUDGET_PICO, period="total").new()],
            )
            system = ActorSystem(store, _specs(upstream), factory=fake_env_factory)
            system.start(asyncio.get_running_loop())
            projections = LiveProjections(store, all_projections())
            await projections.start()
            gateway = Gateway(store, system, projections, env={FAKE_KEY_ENV: "sk-test"})
            try:
                ids, snapshots = await _run(gateway, projections)
            finally:
                await projections.stop()
                await system.aclose()
    return Story(path, snapshots=tuple(snapshots), **ids)


async def _run(
    gateway: Gateway, projections: LiveProjections
) -> tuple[dict[str, str], list[Snapshot]]:
    ids: dict[str, str] = {}
    snapshots: list[Snapshot] = []
    for name, request in _requests().items():
        try:
            result = await gateway.process(request, USER)
            ids[name], position = result.request_id, result.position
        except GatewayError as error:
            assert error.request_id is not None
            ids[name], position = error.request_id, gateway.store.head()
        await projections.wait_until(position, timeout=5)
        # Read on the loop, where the projections fold: state and position belong together.
        states = {
            p.name: orjson.loads(orjson.dumps(projections.state(p.name))) for p in all_projections()
        }
        snapshots.append(Snapshot(projections.position, states))
    return ids, snapshots


@functools.cache
def _story(basetemp: Path) -> Story:
    directory = basetemp / "story"
    directory.mkdir()
    return asyncio.run(_write(directory / "atom.db"))


@pytest.fixture
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    """The gateway's log of the Story's requests, written once per test session: read only."""
    return _story(tmp_path_factory.getbasetemp())


def copy_log(source: Path, target: Path, until: int | None = None) -> Path:
    """A copy of the log (projections included), or, with `until`, of its events up to there,
    as a crash at that position leaves it."""
    if until is None:
        original, copy = sqlite3.connect(source), sqlite3.connect(target)
        original.backup(copy)
        original.close()
        copy.close()
        return target
    with SQLiteReader(str(source)) as reader, SQLiteStore(str(target)) as store:
        for event in reader.read_all(until=until):
            new = NewEvent(event.type, event.data, event.metadata, event.event_id)
            store.append(event.stream_id, [new])
    return target


@dataclass(frozen=True, slots=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return orjson.loads(self.out)


def replay(capsys: pytest.CaptureFixture[str], *args: str) -> Ran:
    """Run `atom replay ARGS...` in this process."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return Ran(code, out, err)


def refused(ran: Ran, *fragments: str) -> None:
    """The command failed on bad input: exit 2, nothing on stdout, one line on stderr."""
    assert ran.code == 2, ran
    assert ran.out == ""
    assert ran.err.count("\n") == 1 and "Traceback" not in ran.err, ran.err
    for fragment in fragments:
        assert fragment in ran.err, ran.err
