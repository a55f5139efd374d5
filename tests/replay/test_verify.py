"""`atom replay verify` on intact and tampered logs."""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson
import pytest

from eventstore import open_store
from tests.logs import execute

from .conftest import Atom


def _head_hash(location: str) -> str:
    return str(execute(location, "SELECT hash FROM events ORDER BY position DESC LIMIT 1")[0][0])


def test_an_intact_log_verifies_with_a_one_line_summary(atom: Atom, log_db: str) -> None:
    result = atom("replay", "verify", "--db", log_db)
    assert result.returncode == 0, result.stderr
    chain = _head_hash(log_db)[:8]
    assert result.stdout == f"ok: 20 events in 4 streams, head 20, chain {chain}…\n"


def test_json_report_of_an_intact_log(atom: Atom, log_db: str) -> None:
    result = atom("replay", "verify", "--db", log_db, "--json")
    assert result.returncode == 0
    assert orjson.loads(result.stdout) == {
        "ok": True,
        "events": 20,
        "streams": 4,
        "head": 20,
        "head_hash": _head_hash(log_db),
        "first_bad_position": None,
        "problem": None,
    }


def test_an_empty_log_verifies(atom: Atom, log_location: str) -> None:
    open_store(log_location).close()
    result = atom("replay", "verify", "--db", log_location)
    assert result.returncode == 0
    assert re.fullmatch(r"ok: 0 events in 0 streams, head 0, chain 0{8}…\n", result.stdout)


TAMPERINGS = {
    "edit": (
        """UPDATE events SET data = '{"i":7,"text":"forged"}' WHERE position = 7""",
        7,
        "hash mismatch",
    ),
    "delete": ("DELETE FROM events WHERE position = 7", 7, "position 7 is missing"),
    "swap": (
        "UPDATE events SET data = CASE position "
        "WHEN 5 THEN (SELECT data FROM events WHERE position = 12) "
        "ELSE (SELECT data FROM events WHERE position = 5) END "
        "WHERE position IN (5, 12)",
        5,
        "hash mismatch",
    ),
}


@pytest.mark.parametrize("kind", TAMPERINGS)
def test_a_tampered_log_names_the_first_bad_position(
    atom: Atom, log_db: str, tamper: Callable[[str, str], None], kind: str
) -> None:
    sql, position, problem = TAMPERINGS[kind]
    tamper(log_db, sql)

    result = atom("replay", "verify", "--db", log_db)
    assert result.returncode == 1
    assert result.stdout.startswith(f"bad: position {position}: {problem}")
    assert result.stdout.count("\n") == 1

    report = orjson.loads(atom("replay", "verify", "--db", log_db, "--json").stdout)
    assert (report["ok"], report["first_bad_position"]) == (False, position)
    assert report["events"] == position - 1
