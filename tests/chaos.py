"""The gateway under chaos, as users run it: `atom serve` killed under load and restarted,
upstreams that fail every way they can, two tenancies that must not see each other.

Shared by tests/api/test_chaos.py and bench/chaos.py. The fake upstreams run on this process's
event loop; `atom serve` runs as a process of its own, killed with SIGKILL mid-traffic. What is
checked afterwards is read from the log alone (and `atom replay`), never from the server.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from eventstore import open_reader
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.faults import Behaviour, Fault
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import FakeServer

ATOM: Final = str(Path(sys.executable).with_name("atom"))
KEY_ENV: Final = "ATOM_CHAOS_UPSTREAM_KEY"
API: Final = "/api/advanced-ai"
REPLY: Final = " ".join(f"word{i}" for i in range(24))
TTL_S: Final = 10.0
"""How long a reservation a kill left unsettled counts, in the chaos configuration."""
LIMITS_USD: Final = {"global": 0.15, "tenant:acme": 0.06}
# Each upstream fault, and whether the upstream had begun its answer when it struck.
FAULTS: Final[dict[str, tuple[Fault | None, Behaviour | None]]] = {
    "429 with Retry-After": (Fault.http_error(429, retry_after="1"), None),
    "500": (Fault.http_error(500), None),
    "529 overloaded": (Fault.http_error(529), None),
    "hang before the first byte": (Fault.hang(), None),
    "hang mid-stream": (Fault.hang(after=3), None),
    "cut stream": (Fault.truncate(after=3), None),
    "malformed chunk": (Fault.malformed(after=3), None),
    "connection reset": (Fault.reset(after=2), None),
    "very slow trickle": (None, Behaviour(reply=REPLY, tokens_per_second=4)),
}
DEADLINE_MS: Final = 2500.0
DEADLINE_MARGIN_S: Final = 0.5
"""Time an answer may take past its deadline: the HTTP round trip and the failure's record."""


def _model(name: str, provider: str, base_url: str, **more: Any) -> str:
    fields = {
        "name": name,
        "provider": provider,
        "model": name,
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "input_usd_per_mtok": 1.0,
        "output_usd_per_mtok": 3.0,
        "max_concurrency": 128,
        "max_output_tokens": 40,
        "timeout_first_token_s": 0.6,
        "timeout_total_s": 1.2,
        **more,
    }
    lines = [f"{name} = {orjson.dumps(value).decode()}\n" for name, value in fields.items()]
    return "[[models]]\n" + "".join(lines)


def bad_model(wire: str, fault: str) -> str:
    """The cheap model that fails one way on one wire format: one each, so that a circuit one
    fault opened does not keep the next from being tried."""
    return f"{wire}-bad-{list(FAULTS).index(fault)}"


def write_config(
    folder: Path, openai: FakeServer, anthropic: FakeServer, ttl_s: float = TTL_S
) -> Path:
    """A configuration of models on both wire formats, and a cheap twin for each fault."""
    config = folder / "atom.toml"
    models = [
        _model("o", "openai", openai.base_url),
        _model("a", "anthropic", anthropic.base_url, input_usd_per_mtok=2.0),
    ]
    for fault in FAULTS:
        for wire, fake in (("openai", openai), ("anthropic", anthropic)):
            models.append(
                _model(bad_model(wire, fault), wire, fake.base_url, input_usd_per_mtok=0.1)
            )
    config.write_text(
        f'[log]\npath = "{folder / "atom.db"}"\n\n[server]\nhost = "127.0.0.1"\nport = 0\n\n'
        f"[budgets]\nreservation_ttl_s = {ttl_s}\n\n" + "\n".join(models)
    )
    return config


@dataclass
class Server:
    """A running `atom serve`: its process, URL and the admin key it printed (first start)."""

    process: asyncio.subprocess.Process
    url: str
    admin_key: str | None


async def start_server(config: Path, durability: str = "full", *more: str) -> Server:
    """`atom serve` on `config` (and `more` options), once it says it serves."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env[KEY_ENV] = "sk-chaos"
    process = await asyncio.create_subprocess_exec(
        ATOM, "serve", "--config", str(config), "--rate-limit", "0", "--durability", durability,
        *more, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    key = None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        if not line:
            raise RuntimeError("atom serve ended before serving")
        if line.startswith("atom_"):
            key = line.strip()
        if line.startswith("atom: serving on "):
            return Server(process, line.removeprefix("atom: serving on ").strip(), key)


async def kill(server: Server) -> None:
    server.process.send_signal(signal.SIGKILL)
    await server.process.wait()


async def stop(server: Server) -> None:
    if server.process.returncode is None:
        server.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(server.process.wait(), 30)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Received:
    """An answer a client received whole: the gateway acknowledged it."""

    request_id: str
    text: str


async def _sse(response: aiohttp.ClientResponse) -> list[tuple[str, Any]]:
    events, kind, data = [], "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event:"):
            kind = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data += line.removeprefix("data:").strip()
        elif not line and data:
            events.append((kind, data if data == "[DONE]" else orjson.loads(data)))
            kind, data = "message", ""
    return events


async def ask(http: aiohttp.ClientSession, url: str, key: str, n: int) -> Received | None:
    """One request of four kinds by n: /process or the OpenAI route, streamed or not; the
    answer if it came whole, else None (the server died under it)."""
    model = "oa"[n % 2]
    prompt = f"client request {n}"
    route, stream = divmod(n // 2 % 4, 2)
    try:
        if route == 0:
            body = {"model": model, "prompt": prompt, "stream": bool(stream)}
            async with http.post(url + API + "/process", json=body, headers=auth(key)) as r:
                if r.status != 200:
                    return None
                if not stream:
                    answer = await r.json()
                    return Received(answer["request_id"], answer["text"])
                events = await _sse(r)
                if not events or events[-1][0] != "done":
                    return None
                tokens = "".join(d["text"] for k, d in events if k == "token")
                done = events[-1][1]
                assert tokens == done["text"], "the tokens streamed are the answer"
                return Received(done["request_id"], done["text"])
        body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        if stream:
            body["stream"] = True
        async with http.post(url + "/v1/chat/completions", json=body, headers=auth(key)) as r:
            if r.status != 200:
                return None
            if not stream:
                answer = await r.json()
                text = answer["choices"][0]["message"]["content"]
                return Received(answer["id"].removeprefix("chatcmpl-"), text)
            events = await _sse(r)
            if not events or events[-1][1] != "[DONE]":
                return None
            chunks = [d for _, d in events[:-1] if isinstance(d, dict) and d.get("choices")]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
            return Received(chunks[0]["id"].removeprefix("chatcmpl-"), text)
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError):
        return None


async def load(
    url: str, keys: Sequence[str], clients: int, stop: asyncio.Event, received: list[Received]
) -> None:
    """`clients` loops, each asking again as soon as it has its answer, until `stop`."""
    counter = iter(range(10**9))
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:

        async def client(i: int) -> None:
            while not stop.is_set():
                answer = await ask(http, url, keys[i % len(keys)], next(counter))
                if answer is not None:
                    received.append(answer)
                else:
                    await asyncio.sleep(0.02)

        await asyncio.gather(*(client(i) for i in range(clients)))


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ATOM, "replay", *args], capture_output=True, text=True, timeout=120, check=False
    )


@dataclass
class Audit:
    """What the log says after a restart, against what the clients were told."""

    acknowledged: int = 0
    acknowledged_lost: int = 0
    verify_failures: int = 0
    rebuild_diffs: int = 0
    orphaned_reservations: int = 0
    orphans_counted: int = 0
    overspend_usd: float = 0.0
    messages: list[str] = field(default_factory=list)


def unsettled(db: str) -> list[dict[str, Any]]:
    """The reservations of the log that no settlement followed."""
    with open_reader(db) as reader:
        reserved: dict[str, dict[str, Any]] = {}
        for e in reader.read_all():
            if e.type == "BudgetReserved":
                reserved[e.data["reservation_id"]] = e.data
            elif e.type == "BudgetSettled":
                reserved.pop(e.data["reservation_id"], None)
    return list(reserved.values())


def counted_between(
    orphans: Sequence[dict[str, Any]], since: float, until: float
) -> tuple[float, float]:
    """What the orphans can count for in USD when read between two moments: those alive at
    the end at least, those alive at the start at most."""
    least = sum(r["amount_pico"] for r in orphans if r["expires_at"] > until)
    most = sum(r["amount_pico"] for r in orphans if r["expires_at"] > since)
    return least / 1e12, most / 1e12


def audit_log(db: str, received: Sequence[Received], audit: Audit) -> None:
    """Check the acknowledged answers, verify and rebuild the log, measure the overspend."""
    with open_reader(db) as reader:
        events = list(reader.read_all())
    completed = {
        e.data["request_id"]: e.data["text"] for e in events if e.type == "RequestCompleted"
    }
    audit.acknowledged += len(received)
    for answer in received:
        if completed.get(answer.request_id) != answer.text:
            audit.acknowledged_lost += 1
            audit.messages.append(f"acknowledged but not on the record: {answer.request_id}")
    verified = replay("verify", "--db", db)
    if verified.returncode != 0:
        audit.verify_failures += 1
        audit.messages.append(verified.stdout + verified.stderr)
    rebuilt = replay("rebuild", "--db", db)
    if rebuilt.returncode != 0:
        audit.rebuild_diffs += 1
        audit.messages.append(rebuilt.stdout + rebuilt.stderr)
    spent: dict[str, int] = defaultdict(int)
    for e in events:
        if e.type == "BudgetSettled":
            for scope in e.data["scopes"]:
                spent[scope] += e.data["actual_pico"]
    for scope, limit in LIMITS_USD.items():
        audit.overspend_usd += max(0.0, spent[scope] / 1e12 - limit)


async def budget_reserved(url: str, admin: str, scope: str) -> float:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}{API}/admin/budgets/{scope}", headers=auth(admin)) as r,
    ):
        return float((await r.json())["reserved_usd"])


async def setup_keys(url: str, admin: str) -> list[str]:
    """The budgets, and keys of two tenancies: acme's, and a key of its own."""
    keys = []
    async with aiohttp.ClientSession() as http:
        for scope, usd in LIMITS_USD.items():
            async with http.put(
                f"{url}{API}/admin/budgets/{scope}", json={"usd": usd}, headers=auth(admin)
            ) as r:
                assert r.status == 200, await r.text()
        for body in ({"role": "user", "tenant": "acme"}, {"role": "user"}):
            async with http.post(f"{url}{API}/admin/keys", json=body, headers=auth(admin)) as r:
                assert r.status == 201, await r.text()
                keys.append((await r.json())["key"])
    return keys


@dataclass
class Kills:
    """The outcome of a run of kills."""

    kills: int
    audit: Audit
    released: bool


async def kill_runs(folder: Path, trials: int, clients: int, seed: int = 0) -> Kills:
    """`trials` times: traffic from `clients` clients, SIGKILL at a random moment, restart,
    audit. The last restart also waits for the crash's reservations to expire."""
    rng = random.Random(seed)
    audit = Audit()
    seen: set[str] = set()
    released = False
    async with FakeOpenAI() as openai, FakeAnthropic() as anthropic:
        for fake in (openai, anthropic):
            fake.record = False
            fake.default = Behaviour(reply=REPLY, tokens_per_second=300)
        config = write_config(folder, openai, anthropic)
        db = str(folder / "atom.db")
        server = await start_server(config)
        assert server.admin_key is not None
        admin = server.admin_key
        keys = await setup_keys(server.url, admin)
        try:
            for trial in range(trials):
                received: list[Received] = []
                stopped = asyncio.Event()
                traffic = asyncio.create_task(load(server.url, keys, clients, stopped, received))
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                await kill(server)
                stopped.set()
                await traffic
                server = await start_server(config, ("full", "normal")[trial % 2])
                # Until they expire, a crash's reservations count against their budgets.
                since = time.time()
                counted = await budget_reserved(server.url, admin, "global")
                orphans = unsettled(db)
                least, most = counted_between(orphans, since, time.time())
                new = [r for r in orphans if r["reservation_id"] not in seen]
                seen.update(r["reservation_id"] for r in new)
                audit.orphaned_reservations += len(new)
                if least <= counted <= most:
                    audit.orphans_counted += len(new)
                audit_log(db, received, audit)
            if audit.orphaned_reservations:
                await asyncio.sleep(TTL_S + 0.5)
                released = await budget_reserved(server.url, admin, "global") == 0.0
            else:
                released = True
        finally:
            await stop(server)
    return Kills(trials, audit, released)


@dataclass(frozen=True)
class FaultOutcome:
    fault: str
    wire: str
    status: int
    seconds: float
    kind: str
    settled_rules: tuple[str, ...]


async def fault_runs(folder: Path) -> list[FaultOutcome]:
    """Every fault on both wire formats: a request whose cheaper model fails that way, with
    a working model to fall back on, within a deadline."""
    outcomes = []
    async with FakeOpenAI() as openai, FakeAnthropic() as anthropic:
        for fake in (openai, anthropic):
            fake.default = Behaviour(reply=REPLY, tokens_per_second=300)
        config = write_config(folder, openai, anthropic)
        server = await start_server(config)
        assert server.admin_key is not None
        try:
            async with aiohttp.ClientSession() as http:
                for name, (fault, behaviour) in FAULTS.items():
                    for wire, fake, good in (
                        ("openai", openai, "o"),
                        ("anthropic", anthropic, "a"),
                    ):
                        bad = bad_model(wire, name)
                        if fault is not None:
                            fake.fail(fault, model=bad)
                        if behaviour is not None:
                            fake.models[bad] = behaviour
                        body = {
                            "prompt": f"{name} on {wire}",
                            "strategy": "cost_first",
                            "allow": [bad, good],
                            "constraints": {"deadline_ms": DEADLINE_MS},
                        }
                        started = time.monotonic()
                        async with http.post(
                            server.url + API + "/process", json=body, headers=auth(server.admin_key)
                        ) as r:
                            answer = await r.json()
                            status = r.status
                        seconds = time.monotonic() - started
                        fake.clear_faults()
                        fake.models.pop(bad, None)
                        request_id = answer.get("request_id") or _request_of(answer)
                        outcomes.append(
                            FaultOutcome(
                                name, wire, status, seconds,
                                "" if status == 200 else answer["error"]["type"],
                                _rules(str(folder / "atom.db"), request_id, bad),
                            )
                        )  # fmt: skip
        finally:
            await stop(server)
    return outcomes


def _request_of(answer: dict[str, Any]) -> str:
    message: str = answer["error"]["message"]
    return message.rsplit("(request ", 1)[1].rstrip(")")


def _rules(db: str, request_id: str, model: str) -> tuple[str, ...]:
    with open_reader(db) as reader:
        stream = reader.read_stream(f"request-{request_id}")
    return tuple(
        e.data["rule"] for e in stream if e.type == "BudgetSettled" and e.data["model"] == model
    )


def past_deadline(outcomes: Sequence[FaultOutcome]) -> list[FaultOutcome]:
    return [o for o in outcomes if o.seconds > DEADLINE_MS / 1000 + DEADLINE_MARGIN_S]


async def seal_run(folder: Path) -> tuple[int, int]:
    """Two tenancies through `atom serve`: tenant B's traffic carries a marker; then every GET
    route of the server's OpenAPI document, read with tenant A's keys, is scanned for B's
    marker, request ids, key id and tenant name. How many of them leaked, of how many."""
    marker, tenant_b = "ZEBRA-5150-MARKER", "tenant-b-chaos"
    async with FakeOpenAI() as openai, FakeAnthropic() as anthropic:
        config = write_config(folder, openai, anthropic)
        server = await start_server(config)
        assert server.admin_key is not None
        admin = server.admin_key
        try:
            async with aiohttp.ClientSession() as http:
                made = {}
                for name, body in (
                    ("a", {"role": "viewer", "tenant": "tenant-a"}),
                    ("b", {"role": "user", "tenant": tenant_b}),
                ):
                    async with http.post(
                        f"{server.url}{API}/admin/keys", json=body, headers=auth(admin)
                    ) as r:
                        made[name] = await r.json()
                ids = []
                for n in range(6):
                    answer = await ask(http, server.url, made["b"]["key"], n)
                    assert answer is not None
                    ids.append(answer.request_id)
                for scope in (f"tenant:{tenant_b}", f"key:{made['b']['key_id']}"):
                    async with http.put(
                        f"{server.url}{API}/admin/budgets/{scope}",
                        json={"usd": 1},
                        headers=auth(admin),
                    ) as r:
                        assert r.status == 200
                async with http.post(
                    server.url + API + "/process",
                    json={"model": "o", "prompt": f"{marker} private"},
                    headers=auth(made["b"]["key"]),
                ) as r:
                    ids.append((await r.json())["request_id"])
                # A failure too, whose request id the failures' lists hold.
                openai.fail(Fault.http_error(400), model="o", times=1)
                async with http.post(
                    server.url + API + "/process",
                    json={"model": "o", "prompt": f"{marker} refused"},
                    headers=auth(made["b"]["key"]),
                ) as r:
                    ids.append(_request_of(await r.json()))
                async with http.get(server.url + API + "/openapi.json", headers=auth(admin)) as r:
                    paths = [p for p, ops in (await r.json())["paths"].items() if "get" in ops]
                seen = []
                for path in paths:
                    for filled in _filled(path, ids, made["b"]["key_id"], tenant_b):
                        url = server.url + filled + "?consistent=true"
                        async with http.get(url, headers=auth(made["a"]["key"])) as r:
                            seen.append(await r.text())
            secrets = [marker, tenant_b, made["b"]["key_id"], *ids]
            text = "\n".join(seen)
            return sum(1 for secret in secrets if secret in text), len(secrets)
        finally:
            await stop(server)


def _filled(path: str, ids: Sequence[str], key_id: str, tenant: str) -> list[str]:
    """A path with its parameters filled with another tenancy's ids, every way."""
    values = {
        "{scope}": [f"tenant:{tenant}", f"key:{key_id}"],
        "{key_id}": [key_id],
        "{id}": list(ids),
        "{request_id}": list(ids),
    }
    paths = [path]
    for name, options in values.items():
        if name in path:
            paths = [p.replace(name, v) for p in paths for v in options]
    return paths
