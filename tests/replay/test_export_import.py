"""`atom replay export` and `atom replay import`: streaming out, round trips, idempotence."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson

from .conftest import ATOM, Atom

KEYS = ["stream_id", "stream_version", "event_id", "type", "schema_version", "data", "metadata"]


def _export(atom: Atom, location: Path | str, *args: str) -> list[dict[str, Any]]:
    result = atom("replay", "export", "--db", str(location), *args)
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def _import(atom: Atom, location: Path | str, source: Path) -> str:
    result = atom("replay", "import", "--db", str(location), str(source))
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_export_writes_every_stored_column_in_position_order(atom: Atom, log_db: str) -> None:
    lines = _export(atom, log_db)
    assert [line["position"] for line in lines] == list(range(1, 21))
    assert list(lines[0]) == ["position", *KEYS, "recorded_at", "hash"]
    assert lines[6]["stream_id"] == "request-2"
    assert lines[6]["stream_version"] == 1
    assert lines[6]["data"] == {"i": 6, "text": "żółw 6", "cost": 6 / 7, "nested": {"z": [6, None]}}
    assert lines[6]["metadata"] == {"correlation_id": "c2", "actor": "test"}


def test_export_from_a_position_is_inclusive(atom: Atom, log_db: str) -> None:
    assert [line["position"] for line in _export(atom, log_db, "--from", "18")] == [18, 19, 20]
    assert _export(atom, log_db, "--from", "21") == []


def test_an_exported_log_imported_into_a_fresh_one_is_the_same_log(
    atom: Atom, log_path: Path, log_location: str, tmp_path: Path
) -> None:
    exported = tmp_path / "export.jsonl"
    exported.write_text(atom("replay", "export", "--db", str(log_path)).stdout)

    assert _import(atom, log_location, exported) == (
        "imported: 20 lines read, 20 events appended, 0 already present\n"
    )

    verified = atom("replay", "verify", "--db", log_location)
    assert verified.returncode == 0
    assert verified.stdout == atom("replay", "verify", "--db", str(log_path)).stdout
    # Every stored column, recorded_at and hash included: the same log, hash for hash.
    assert _export(atom, log_location) == _export(atom, log_path)


def test_a_log_moves_from_sqlite_to_postgresql_and_back_through_a_pipe(
    log_path: Path, postgres_url: str, tmp_path: Path
) -> None:
    back = tmp_path / "back.db"
    for source, target in ((str(log_path), postgres_url), (postgres_url, str(back))):
        moved = subprocess.run(
            f"{ATOM} replay export --db '{source}' | {ATOM} replay import --db '{target}' -",
            shell=True,
            capture_output=True,
            text=True,
            check=True,
        )
        assert moved.stderr == "imported: 20 lines read, 20 events appended, 0 already present\n"
    exports = [
        subprocess.run(
            [ATOM, "replay", "export", "--db", location], capture_output=True, check=True
        ).stdout
        for location in (str(log_path), postgres_url, str(back))
    ]
    assert exports[0].count(b"\n") == 20
    assert exports[1] == exports[0] and exports[2] == exports[0]
    verified = {
        subprocess.run(
            [ATOM, "replay", "verify", "--db", location], capture_output=True, text=True
        ).stdout
        for location in (str(log_path), postgres_url, str(back))
    }
    assert len(verified) == 1 and verified.pop().startswith("ok: 20 events in 4 streams")


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


def test_import_reads_stdin_and_appends_to_an_existing_log(atom: Atom, log_db: str) -> None:
    result = atom(
        "replay",
        "import",
        "--db",
        log_db,
        "-",
        stdin='{"stream_id": "request-1", "type": "Late", "data": {"n": 1}}\n',
    )
    assert result.returncode == 0, result.stderr
    last = _export(atom, log_db, "--from", "21")
    assert [(e["stream_id"], e["stream_version"], e["type"]) for e in last] == [
        ("request-1", 5, "Late")
    ]
    assert atom("replay", "verify", "--db", log_db).returncode == 0
