"""`atom serve` end to end: a real process, its printed key and URL, SIGTERM, a verified log."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.server import GC_THRESHOLDS, _collecting_less
from eventstore import SQLiteReader
from tests.api.conftest import ATOM, atom, bearer, sse_events


class Serving:
    """An `atom serve` process, read up to the line with its URL."""

    def __init__(self, process: asyncio.subprocess.Process, lines: list[str]) -> None:
        self.process = process
        self.lines = lines
        self.url = lines[-1].removeprefix("atom: serving on ")

    @classmethod
    async def start(cls, *args: str) -> Serving:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        process = await asyncio.create_subprocess_exec(
            ATOM, "serve", "--port", "0", "--durability", "normal", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("atom: serving on "):
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "atom serve ended before serving"
            lines.append(line.decode().rstrip("\n"))
        return cls(process, lines)

    async def stop(self) -> list[str]:
        """SIGTERM; returns the rest of stdout once the process has exited 0."""
        self.process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(self.process.communicate(), 30)
        assert self.process.returncode == 0, err.decode()
        return out.decode().splitlines()


async def _get(http: aiohttp.ClientSession, url: str, key: str | None = None) -> tuple[int, Any]:
    async with http.get(url, headers=bearer(key) if key else {}) as response:
        return response.status, await response.json()


async def test_serve_prints_an_admin_key_once_serves_and_stops_cleanly(tmp_path: Path) -> None:
    db = str(tmp_path / "atom.db")
    started = time.monotonic()
    server = await Serving.start("--db", db)
    # The local model loads in the background: the server is up before it is.
    assert time.monotonic() - started < 15
    intro, key, try_it, _ = server.lines[-4:]
    assert intro.startswith("atom: this log had no admin key")
    assert key.startswith("atom_")
    assert try_it == (
        f'atom: try it: curl -H "Authorization: Bearer {key}" '
        f"{server.url}/api/advanced-ai/streaming/status"
    )
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 30
        while (health := await _get(http, f"{server.url}/api/advanced-ai/health"))[0] != 200:
            assert time.monotonic() < deadline, health
            await asyncio.sleep(0.2)
        assert health[1]["models"]["gemma-3-270m"]["state"] == "running"
        assert health[1]["event_loop"] == "uvloop"  # installed, so chosen by default
        assert health[1]["models"]["gpt-4"] == {
            "state": "unavailable",
            "detail": "credentials: OPENAI_API_KEY not set",
        }
        # The local model's tokens come from llama.cpp's thread to this loop, and out as SSE.
        body = {"model": "gemma-3-270m", "prompt": "Name a colour.", "max_tokens": 4,
                "temperature": 0, "stream": True}  # fmt: skip
        async with http.post(
            f"{server.url}/api/advanced-ai/process", headers=bearer(key), json=body
        ) as response:
            assert response.status == 200
            events = [event async for event in sse_events(response)]
        tokens = [data["text"] for _, data in events[:-1]]
        assert [name for name, _ in events] == ["token"] * len(tokens) + ["done"]
        done = events[-1][1]
        assert (done["model"], done["text"]) == ("gemma-3-270m", "".join(tokens))
        assert 1 <= len(tokens) <= 4 and done["text"].strip()
        status_url = f"{server.url}/api/advanced-ai/streaming/status"
        assert (await _get(http, status_url))[0] == 401
        assert (await _get(http, status_url, key))[0] == 200
        async with http.post(
            f"{server.url}/api/advanced-ai/streaming/events",
            headers=bearer(key),
            json={"topic": "t", "payload": {"n": 1}},
        ) as response:
            assert response.status == 202
            published = await response.json()
        ws_url = server.url.replace("http", "ws", 1) + "/api/advanced-ai/streaming/ws"
        async with http.ws_connect(ws_url, headers=bearer(key)) as ws:
            stopping = asyncio.create_task(server.stop())
            message = await ws.receive(timeout=15)
            assert (message.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 1001)
            # No longer accepting: the listening socket closed before the sockets were.
            with pytest.raises(aiohttp.ClientConnectionError):
                await _get(http, status_url, key)
        rest = await stopping
    assert rest[-1] == "atom: stopped"
    verified = atom("replay", "verify", "--db", db)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with SQLiteReader(db) as reader:
        [event] = reader.read_stream("broadcast-t")
    assert event.position == published["position"]

    # The log has an admin key now: a second start prints none.
    config = tmp_path / "atom.toml"
    config.write_text("models = []\n")
    server = await Serving.start("--db", db, "--config", str(config), "--loop", "asyncio")
    async with aiohttp.ClientSession() as http:
        _, health = await _get(http, f"{server.url}/api/advanced-ai/health")
    await server.stop()
    assert len(server.lines) == 1
    assert health["event_loop"] == "asyncio"  # not ready (no model), but it says which loop


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    config = tmp_path / "atom.toml"
    config.write_text("models = []\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = atom("serve", "--db", str(tmp_path / "a.db"), "--config", str(config),
                      "--port", port)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("atom serve: ")
    assert "address already in use" in result.stderr


def test_serve_refuses_a_file_that_is_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    config = tmp_path / "atom.toml"
    config.write_text("models = []\n")
    result = atom("serve", "--db", str(path), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == f"atom serve: {path}: not an SQLite database\n"


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "atom.toml"
    config.write_text("[server]\nport = 'eighty'\n")
    result = atom("serve", "--config", str(config))
    assert result.returncode == 2
    assert "field 'port'" in result.stderr


def test_while_serving_the_collector_runs_rarely_and_start_up_is_frozen() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with _collecting_less():
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > frozen
    # Whoever called serve() gets its collector back as it was.
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
