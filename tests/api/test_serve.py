"""`atom serve` end to end: a real process, its printed key and URL, SIGTERM, a verified log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from eventstore import LogReader
from tests.api.conftest import ATOM, atom


def _request(url: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start `atom serve` and read its output up to the line with the URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    process = subprocess.Popen(
        [ATOM, "serve", "--port", "0", "--durability", "normal", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("atom: serving on "):
        line = process.stdout.readline()
        assert line, f"atom serve ended early: {process.stderr.read() if process.stderr else ''}"
        lines.append(line.rstrip("\n"))
    return process, lines


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    return out


def test_serve_prints_an_admin_key_once_serves_and_stops_cleanly(tmp_path: Path) -> None:
    db = str(tmp_path / "atom.db")
    started = time.monotonic()
    process, lines = _start("--db", db)
    try:
        # The local model loads in the background: the server is up before it is.
        assert time.monotonic() - started < 15
        key = lines[-3]
        assert lines[-4].startswith("atom: this log had no admin key")
        assert key.startswith("atom_")
        url = lines[-1].removeprefix("atom: serving on ")
        assert lines[-2] == (
            f'atom: try it: curl -H "Authorization: Bearer {key}" '
            f"{url}/api/advanced-ai/streaming/status"
        )
        deadline = time.monotonic() + 30
        while (health := _request(f"{url}/api/advanced-ai/health"))[0] != 200:
            assert time.monotonic() < deadline, health
            time.sleep(0.2)
        assert health[1]["models"]["gemma-3-270m"]["state"] == "running"
        assert health[1]["models"]["gpt-4"] == {
            "state": "unavailable",
            "detail": "credentials: OPENAI_API_KEY not set",
        }
        assert _request(f"{url}/api/advanced-ai/streaming/status")[0] == 401
        assert _request(f"{url}/api/advanced-ai/streaming/status", key)[0] == 200
        published = _request(
            f"{url}/api/advanced-ai/streaming/events", key, {"topic": "t", "payload": {"n": 1}}
        )
        assert published[0] == 202
    finally:
        out = _stop(process)
    assert out.splitlines()[-1] == "atom: stopped"
    verified = atom("replay", "verify", "--db", db)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with LogReader(db) as reader:
        [event] = reader.read_stream("broadcast-t")
    assert event.position == published[1]["position"]

    # The log has an admin key now: a second start prints none.
    config = tmp_path / "atom.toml"
    config.write_text("models = []\n")
    process, lines = _start("--db", db, "--config", str(config))
    _stop(process)
    assert len(lines) == 1


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
