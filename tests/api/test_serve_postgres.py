"""`atom serve` and `atom keys` on a log in PostgreSQL: the same commands, a URL for --db."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from eventstore import open_reader
from tests.api.conftest import atom, bearer
from tests.api.test_serve import Serving


async def test_serve_and_keys_work_on_a_postgresql_log(postgres_url: str, tmp_path: Path) -> None:
    created = atom("keys", "create", "--db", postgres_url, "--role", "operator", "--name", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[-1]

    config = tmp_path / "atom.toml"
    config.write_text("models = []\n")
    server = await Serving.start("--db", postgres_url, "--config", str(config))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/advanced-ai/health") as response:
            health = await response.json()
        # A key made before the server started, by another process, is known to it.
        async with http.post(
            f"{server.url}/api/advanced-ai/streaming/events",
            headers=bearer(key),
            json={"topic": "t", "payload": {"n": 1}},
        ) as response:
            assert response.status == 202
            published = await response.json()
    assert (await server.stop())[-1] == "atom: stopped"
    assert health["checks"]["log"] == {"ok": True, "detail": "writable"}

    listed = atom("keys", "list", "--db", postgres_url)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == ["operator", "admin"]
    verified = atom("replay", "verify", "--db", postgres_url)
    assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified.stdout
    with open_reader(postgres_url) as reader:
        [event] = reader.read_stream("broadcast-t")
    assert event.position == published["position"]
