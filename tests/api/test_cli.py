"""The `atom` command's top level: help, usage errors, dispatch to replay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ATOM = str(Path(sys.executable).with_name("atom"))


def _atom(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ATOM, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        ([], ["serve", "keys", "replay"]),
        (["replay"], ["verify", "export", "import"]),
        (["replay", "verify"], ["--db", "--json"]),
        (["replay", "export"], ["--db", "--from"]),
        (["replay", "import"], ["--db", "FILE.jsonl"]),
        (["serve"], ["--config", "--db", "--host", "--port", "--durability", "--grace", "--loop"]),
        (["keys"], ["create", "list", "revoke"]),
        (["keys", "create"], ["--db", "--role", "--name", "--tenant", "--budget-usd", "--period"]),
        (["keys", "list"], ["--db"]),
        (["keys", "revoke"], ["--db", "KEY_ID"]),
    ],
)
def test_help(args: list[str], listed: list[str]) -> None:
    result = _atom(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {' '.join(['atom', *args])} ")
    for word in listed:
        assert word in result.stdout


@pytest.mark.parametrize(
    "args", [[], ["bogus"], ["replay"], ["replay", "bogus"], ["keys"], ["keys", "create"]]
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    result = _atom(*args)
    assert result.returncode == 2
    assert "usage: atom" in result.stderr


def test_replay_never_imports_aiohttp(tmp_path: Path) -> None:
    code = (
        "import sys; from api.cli import main; "
        f"main(['replay', 'verify', '--db', {str(tmp_path / 'x.db')!r}]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'pykka')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "[]\n"
