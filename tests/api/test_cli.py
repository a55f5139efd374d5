"""The `atom` command's top level: help, the placeholder commands, dispatch to replay."""

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
        (["serve"], ["--db"]),
        (["keys"], []),
    ],
)
def test_help(args: list[str], listed: list[str]) -> None:
    result = _atom(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {' '.join(['atom', *args])} ")
    for word in listed:
        assert word in result.stdout


@pytest.mark.parametrize("args", [[], ["bogus"], ["replay"], ["replay", "bogus"]])
def test_bad_usage_exits_2(args: list[str]) -> None:
    result = _atom(*args)
    assert result.returncode == 2
    assert "usage: atom" in result.stderr


def test_serve_opens_or_creates_the_log_and_says_the_server_is_not_built(tmp_path: Path) -> None:
    path = tmp_path / "atom.db"
    result = _atom("serve", "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "not built yet" in result.stdout
    assert str(path) in result.stdout
    assert _atom("replay", "verify", "--db", str(path)).stdout.startswith("ok: 0 events")


def test_serve_refuses_a_file_that_is_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    result = _atom("serve", "--db", str(path))
    assert result.returncode == 2
    assert result.stderr == f"atom serve: {path}: not an SQLite database\n"


def test_keys_is_not_available_yet() -> None:
    result = _atom("keys")
    assert (result.returncode, result.stderr) == (2, "atom keys: not available yet\n")


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
