"""`atom replay export`: the log's rows as stored, one JSON object a line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

import orjson

from eventstore import Row, open_reader


def export_lines(rows: Iterable[Row]) -> Iterator[bytes]:
    """Each row as a JSON line; data and metadata are copied as stored, not re-encoded."""
    for position, stream_id, version, event_id, type_, schema_version, data, meta, at, h in rows:
        yield orjson.dumps(
            {
                "position": position,
                "stream_id": stream_id,
                "stream_version": version,
                "event_id": event_id,
                "type": type_,
                "schema_version": schema_version,
                "data": orjson.Fragment(data),
                "metadata": orjson.Fragment(meta),
                "recorded_at": at,
                "hash": h,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )


def export_log(path: str, out: BinaryIO, start: int = 1) -> None:
    """Write the events of the log at `path`, from position `start` on, to `out`."""
    with open_reader(path) as store:
        out.writelines(export_lines(store.iter_raw(after=start - 1)))
