"""GET /requests' reading of the log: backwards from the head, page by page, nothing kept.

Nothing on a request's path does any work for this list: it is read from the log when asked
for. Only rows of the request events are decoded, and at most `SCAN_ROWS` rows are looked at
per call; the answer says where to continue (`more_before`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from atom_actors.feed import STATES, combined, request_news
from atom_actors.folding import tenancy_of_event
from eventstore import EventStore

PAGE: Final = 2048
SCAN_ROWS: Final = 100_000
"""The most rows of the log one call looks at."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Wanted:
    """What the caller asked for: newest first, `limit` rows of the requests it may see."""

    visible: Callable[[str], bool]
    limit: int
    status: str | None = None
    model: str | None = None
    before: int | None = None
    since_position: int = 0
    since_time: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    position: int
    """The log position the list is true at: a live feed from there misses nothing."""
    more_before: int | None
    """Pass as `before` for older requests; None when the scan reached `since` or position 1."""


async def recent(store: EventStore, wanted: Wanted, scan_rows: int = SCAN_ROWS) -> Page:
    """The newest requests' rows, each as its newest event in the scanned part leaves it."""
    head = await asyncio.to_thread(store.head)
    top = head if wanted.before is None else min(wanted.before - 1, head)
    floor = wanted.since_position
    rows: dict[str, dict[str, Any]] = {}
    low, reached_since = top, False
    while low > floor and not reached_since and top - low < scan_rows:
        if _enough(rows, wanted):
            break
        start = max(floor, low - PAGE)
        page = await store.read_rows_async(start, low - start)
        for row in reversed(page):
            if row[4] not in STATES:
                continue
            if wanted.since_time is not None and row[8] < wanted.since_time:
                reached_since = True
                break
            event = store.to_event(row)
            if not wanted.visible(tenancy_of_event(event)):
                continue
            news = request_news(event)
            known = rows.get(news["request_id"])
            rows[news["request_id"]] = news if known is None else combined(known, news)
        low = start
    chosen = [row for row in rows.values() if _matches(row, wanted)][: wanted.limit]
    done = low <= floor or reached_since
    return Page(chosen, head if wanted.before is None else top, None if done else low + 1)


def _matches(row: dict[str, Any], wanted: Wanted) -> bool:
    return (wanted.status is None or row["state"] == wanted.status) and (
        wanted.model is None or row.get("model") == wanted.model
    )


def _enough(rows: dict[str, dict[str, Any]], wanted: Wanted) -> bool:
    return sum(1 for row in rows.values() if _matches(row, wanted)) >= wanted.limit
