"""`atom replay export` and `atom replay import`: streaming out, round trips, idempotence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from .conftest import Atom

KEYS = ["stream_id", "stream_version", "event_id", "type", "schema_version", "data", "metadata"]


def _export(atom: Atom, path: Path, *args: str) -> list[dict[str, Any]]:
    result = atom("replay", "export", "--db", str(path), *args)
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def _import(atom: Atom, path: Path, source: Path) -> str:
    result = atom("replay", "import", "--db", str(path), str(source))
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_export_writes_every_stored_column_in_position_order(atom: Atom, log_path: Path) -> None:
    lines = _export(atom, log_path)
    assert [line["position"] for line in lines] == list(range(1, 21))
    assert list(lines[0]) == ["position", *KEYS, "recorded_at", "hash"]
    assert lines[6]["stream_id"] == "request-2"
    assert lines[6]["stream_version"] == 1
    assert lines[6]["data"] == {"i": 6, "text": "żółw 6", "cost": 6 / 7, "nested": {"z": [6, None]}}
    assert lines[6]["metadata"] == {"correlation_id": "c2", "actor": "test"}


def test_export_from_a_position_is_inclusive(atom: Atom, log_path: Path) -> None:
    assert [line["position"] for line in _export(atom, log_path, "--from", "18")] == [18, 19, 20]
    assert _export(atom, log_path, "--from", "21") == []


def test_an_exported_log_imported_into_a_fresh_one_is_the_same_log(
    atom: Atom, log_path: Path, tmp_path: Path
) -> None:
    exported = tmp_path / "export.jsonl"
    exported.write_text(atom("replay", "export", "--db", str(log_path)).stdout)
    target = tmp_path / "target.db"

    assert _import(atom, target, exported) == (
        "imported: 20 lines read, 20 events appended, 0 already present\n"
    )

    assert atom("replay", "verify", "--db", str(target)).returncode == 0
    before, after = _export(atom, log_path), _export(atom, target)
    assert [[e[k] for k in ["position", *KEYS]] for e in after] == [
        [e[k] for k in ["position", *KEYS]] for e in before
    ]


def test_importing_the_same_file_twice_adds_nothing(atom: Atom, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    # No event_ids: import derives them from line number and content, so a repeated line
    # is a second event while a re-imported file is the same events.
    source.write_text(
        '{"stream_id": "s", "type": "Said", "data": {"text": "hi"}}\n'
        "\n"
        '{"stream_id": "s", "type": "Said", "data": {"text": "hi"}}\n'
        '{"stream_id": "t", "type": "Did", "data": {}, "metadata": {"actor": "x"}, '
        '"schema_version": 2, "event_id": "mine", "position": 99, "hash": "ignored"}\n'
    )
    target = tmp_path / "target.db"
    assert _import(atom, target, source).startswith("imported: 3 lines read, 3 events appended")
    first = _export(atom, target)

    assert _import(atom, target, source) == (
        "imported: 3 lines read, 0 events appended, 3 already present\n"
    )
    assert _export(atom, target) == first
    assert [(e["stream_id"], e["stream_version"], e["position"]) for e in first] == [
        ("s", 0, 1),
        ("s", 1, 2),
        ("t", 0, 3),
    ]
    assert first[0]["event_id"] != first[1]["event_id"]
    assert (first[2]["event_id"], first[2]["schema_version"]) == ("mine", 2)


def test_import_reads_stdin_and_appends_to_an_existing_log(
    atom: Atom, log_path: Path, tmp_path: Path
) -> None:
    result = atom(
        "replay",
        "import",
        "--db",
        str(log_path),
        "-",
        stdin='{"stream_id": "request-1", "type": "Late", "data": {"n": 1}}\n',
    )
    assert result.returncode == 0, result.stderr
    last = _export(atom, log_path, "--from", "21")
    assert [(e["stream_id"], e["stream_version"], e["type"]) for e in last] == [
        ("request-1", 5, "Late")
    ]
    assert atom("replay", "verify", "--db", str(log_path)).returncode == 0
