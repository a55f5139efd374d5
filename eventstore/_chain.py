"""The hash chain: each event's hash covers the previous hash and the event's stored bytes."""

from __future__ import annotations

import hashlib

import orjson

GENESIS = "0" * 64


def event_hash(
    previous: str,
    position: int,
    stream_id: str,
    stream_version: int,
    event_id: str,
    type_: str,
    schema_version: int,
    data: str,
    metadata: str,
    recorded_at: str,
) -> str:
    """sha256(previous hash + canonical bytes), over the columns exactly as stored."""
    # data and metadata are hashed as their stored JSON text, so verifying never depends on
    # re-serialising (float formatting, key order) the way the writer happened to.
    canonical = orjson.dumps(
        [
            position,
            stream_id,
            stream_version,
            event_id,
            type_,
            schema_version,
            data,
            metadata,
            recorded_at,
        ]
    )
    return hashlib.sha256(previous.encode("ascii") + canonical).hexdigest()
