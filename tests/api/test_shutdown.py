"""`atom serve` stopped by SIGTERM under load: every answer given is on the record, the log
verifies, and the process exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from eventstore import SQLiteReader
from tests.api.conftest import ATOM, atom, bearer, sse_events
from tests.atom_actors.conftest import FAKE_KEY_ENV
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI

REQUESTS = 50
STREAMED = 10  # of them, as Server-Sent Events


def _config(tmp_path: Path, base_url: str) -> tuple[Path, str]:
    db = tmp_path / "atom.db"
    config = tmp_path / "atom.toml"
    config.write_text(
        f"""\
[log]
path = "{db}"
durability = "normal"

[server]
host = "127.0.0.1"
port = 0

[[models]]
name = "slowpoke"
provider = "openai"
model = "slowpoke"
base_url = "{base_url}"
api_key_env = "{FAKE_KEY_ENV}"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
max_concurrency = 64
"""
    )
    return config, str(db)


async def _start(config: Path) -> tuple[asyncio.subprocess.Process, str, str]:
    """The server process, its URL and the admin key it printed."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env[FAKE_KEY_ENV] = "sk-test"
    process = await asyncio.create_subprocess_exec(
        ATOM, "serve", "--config", str(config), "--rate-limit", "0", "--grace", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    key = None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line, "atom serve ended before serving"
        if line.startswith("atom_"):
            key = line.strip()
        if line.startswith("atom: serving on "):
            assert key is not None
            return process, line.removeprefix("atom: serving on ").strip(), key


async def _one(http: aiohttp.ClientSession, url: str, key: str, i: int) -> tuple[int, Any]:
    """One request: its status and answer (the `done` event's when streamed)."""
    body = {"model": "slowpoke", "prompt": f"request {i}", "max_tokens": 8}
    if i < STREAMED:
        body["stream"] = True
    try:
        async with http.post(url, headers=bearer(key), json=body) as response:
            if i >= STREAMED:
                return response.status, await response.json()
            events = [event async for event in sse_events(response)]
            kind, data = events[-1]
            assert kind == "done", events[-1]
            return response.status, data
    except aiohttp.ClientError as exc:
        return 0, repr(exc)


async def test_sigterm_under_load_answers_what_is_in_flight_on_the_record(
    tmp_path: Path,
) -> None:
    with FakeOpenAI.in_thread(default=Behaviour(first_token_delay=0.3, tokens_per_second=50),
                              record=True) as upstream:  # fmt: skip
        config, db = _config(tmp_path, upstream.base_url)
        process, url, key = await _start(config)
        try:
            connector = aiohttp.TCPConnector(limit=2 * REQUESTS)
            async with aiohttp.ClientSession(connector=connector) as http:
                deadline = time.monotonic() + 30
                while True:
                    async with http.get(url + "/api/advanced-ai/health") as response:
                        if response.status == 200:
                            break
                    assert time.monotonic() < deadline, "the server never became ready"
                    await asyncio.sleep(0.1)
                process_url = url + "/api/advanced-ai/process"
                calls = [
                    asyncio.create_task(_one(http, process_url, key, i)) for i in range(REQUESTS)
                ]
                # Every request has reached the upstream and waits for its first token.
                while len(upstream.requests) < REQUESTS:
                    assert time.monotonic() < deadline, len(upstream.requests)
                    await asyncio.sleep(0.01)
                # None is answered yet: all fifty are in flight when the signal comes.
                assert not any(call.done() for call in calls)
                process.send_signal(signal.SIGTERM)
                results = await asyncio.gather(*calls)
            out, err = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[-2:] == ["atom: stopping; requests in flight have 20s", "atom: stopped"]

    # In flight when the signal came, each one was answered within the grace period.
    assert [status for status, _ in results] == [200] * REQUESTS, results
    assert all(answer["latency_ms"] >= 300 for _, answer in results)
    with SQLiteReader(db) as reader:
        log = list(reader.read_all())
    completed = {e.data["request_id"]: e for e in log if e.type == "RequestCompleted"}
    for _, answer in results:
        event = completed[answer["request_id"]]
        assert event.position == answer["position"]
        assert event.data["text"] == answer["text"] != ""
    # No request was left half-told.
    received = {e.data["request_id"] for e in log if e.type == "RequestReceived"}
    failed = {e.data["request_id"] for e in log if e.type == "RequestFailed"}
    assert received == set(completed) and not failed
    verified = atom("replay", "verify", "--db", db)
    assert verified.returncode == 0, verified.stdout + verified.stderr
