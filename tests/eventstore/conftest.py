from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import EventStore


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "log.db")


@pytest.fixture
def store(db_path: str) -> Iterator[EventStore]:
    with EventStore(db_path) as s:
        yield s
