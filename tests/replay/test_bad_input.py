"""Bad files and bad lines: one line on stderr, exit 2, no traceback, no half-written batch."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from eventstore import LOG_FORMAT

from .conftest import Atom

COMMANDS = {
    "verify": ["replay", "verify", "--db"],
    "export": ["replay", "export", "--db"],
    "import": ["replay", "import", "-", "--db"],
}


def _fails_with(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def _positions(atom: Atom, path: Path) -> list[int]:
    result = atom("replay", "export", "--db", str(path))
    return [orjson.loads(line)["position"] for line in result.stdout.splitlines()]


@pytest.mark.parametrize("command", ["verify", "export"])
def test_a_missing_log_is_an_error_and_is_not_created(
    atom: Atom, tmp_path: Path, command: str
) -> None:
    path = tmp_path / "missing.db"
    _fails_with(atom(*COMMANDS[command], str(path)), "missing.db: no such file")
    assert not path.exists()


def test_a_missing_import_file_is_an_error_and_creates_no_log(atom: Atom, tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    result = atom("replay", "import", "--db", str(path), str(tmp_path / "missing.jsonl"))
    _fails_with(result, "missing.jsonl: No such file or directory")
    assert not path.exists()


def _not_sqlite(path: Path) -> str:
    path.write_text("position,stream_id\n1,a\n")
    return "not an SQLite database"


def _other_sqlite(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.close()
    return "not an ATOM event log"


def _newer_log(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LOG_FORMAT + 1}")
    conn.execute("CREATE TABLE events (position INTEGER PRIMARY KEY)")
    conn.close()
    return "newer ATOM"


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("make", [_not_sqlite, _other_sqlite, _newer_log])
def test_a_file_that_is_not_a_readable_log_is_refused(
    atom: Atom, tmp_path: Path, command: str, make: Callable[[Path], str]
) -> None:
    path = tmp_path / "log.db"
    expected = make(path)
    before = path.read_bytes()
    result = atom(*COMMANDS[command], str(path), stdin='{"stream_id":"s","type":"T","data":{}}\n')
    _fails_with(result, str(path), expected)
    assert path.read_bytes() == before


def test_a_malformed_line_names_it_and_keeps_its_whole_batch_out(
    atom: Atom, tmp_path: Path
) -> None:
    lines = [
        orjson.dumps({"stream_id": f"s{i % 7}", "type": "T", "data": {"i": i}}) for i in range(1500)
    ]
    lines[1399] = b'{"stream_id": "s1", "type": "T", "data": {"i": '
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    path = tmp_path / "log.db"

    _fails_with(
        atom("replay", "import", "--db", str(path), str(source)), "line 1400: not valid JSON"
    )

    # Lines 1-1000 are the first batch, committed before line 1400 was read; 1001-1500 is not.
    assert _positions(atom, path) == list(range(1, 1001))


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"stream_id": "s", "data": {}}', "line 2: missing 'type'"),
        ('{"stream_id": "s", "type": "T", "data": [1, 2]}', "line 2: 'data' must be an object"),
        ('{"stream_id": "", "type": "T", "data": {}}', "line 2: 'stream_id' must be a non-empty"),
        ('{"stream_id": "s", "type": "T", "data": {}, "schema_version": "2"}', "line 2: 'schema"),
        ('["stream_id", "s"]', "line 2: not a JSON object"),
    ],
)
def test_a_line_without_a_valid_event_names_it_and_nothing_of_its_batch_is_appended(
    atom: Atom, tmp_path: Path, line: str, problem: str
) -> None:
    good = '{"stream_id": "s", "type": "T", "data": {"ok": true}}'
    path = tmp_path / "log.db"
    result = atom("replay", "import", "--db", str(path), "-", stdin=f"{good}\n{line}\n{good}\n")
    _fails_with(result, problem)
    assert _positions(atom, path) == []


def test_an_event_id_reused_with_other_content_is_a_conflict_naming_the_line(
    atom: Atom, log_path: Path
) -> None:
    first = orjson.loads(atom("replay", "export", "--db", str(log_path)).stdout.splitlines()[0])
    forged = {**first, "data": {"i": 0, "text": "forged"}}
    source = '{"stream_id": "new", "type": "T", "data": {}}\n' + orjson.dumps(forged).decode()

    result = atom("replay", "import", "--db", str(log_path), "-", stdin=source)

    _fails_with(result, f"line 2: event_id '{first['event_id']}'", "other content")
    exported = [
        orjson.loads(line)
        for line in atom("replay", "export", "--db", str(log_path)).stdout.splitlines()
    ]
    assert exported[0] == first
    # The batch is atomic: line 1, valid on its own, was not imported either.
    assert all(e["stream_id"] != "new" for e in exported)
    assert atom("replay", "verify", "--db", str(log_path)).returncode == 0
