"""The shared HTTP helpers: SSE decoding, error statuses, Retry-After."""

from __future__ import annotations

import email.utils
import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atom_actors.providers._errors import ErrorKind, ProviderError
from atom_actors.providers._http import (
    ServerSentEvent,
    SSEDecoder,
    error_message,
    event_json,
    kind_for_status,
    retry_after,
)

STREAM = (
    b'event: message_start\ndata: {"a": 1}\n\n'
    b": a comment, ignored\n"
    b"event: ping\r\ndata: {}\r\n\r\n"
    b"data: first line\ndata: second line\nid: 7\nretry: 100\n\n"
    b"event: empty\n\n"
    b"data: [DONE]\n\n"
)
EVENTS = [
    ServerSentEvent("message_start", b'{"a": 1}'),
    ServerSentEvent("ping", b"{}"),
    ServerSentEvent("message", b"first line\nsecond line"),
    ServerSentEvent("message", b"[DONE]"),
]


def test_decoder_reads_events_with_lf_or_crlf_and_skips_the_rest() -> None:
    assert SSEDecoder().feed(STREAM) == EVENTS


def test_decoder_keeps_an_unfinished_event_for_the_next_chunk() -> None:
    decoder = SSEDecoder()

    assert decoder.feed(b"event: ping\ndata: {") == []
    assert decoder.feed(b"}\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent("ping", b"{}")]


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_decoder_gives_the_same_events_however_the_bytes_are_split(cuts: list[int]) -> None:
    decoder = SSEDecoder()
    bounds = [0, *sorted(cuts), len(STREAM)]

    events = [e for a, b in itertools.pairwise(bounds) for e in decoder.feed(STREAM[a:b])]

    assert events == EVENTS


def test_event_json_parses_or_raises_an_upstream_error() -> None:
    assert event_json(ServerSentEvent("message", b'{"x": [1]}')) == {"x": [1]}
    with pytest.raises(ProviderError, match="malformed") as raised:
        event_json(ServerSentEvent("message", b"{oops"))
    assert raised.value.kind is ErrorKind.UPSTREAM_ERROR


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.BAD_REQUEST),
        (401, ErrorKind.AUTH),
        (403, ErrorKind.AUTH),
        (404, ErrorKind.BAD_REQUEST),
        (408, ErrorKind.TIMEOUT),
        (413, ErrorKind.BAD_REQUEST),
        (422, ErrorKind.BAD_REQUEST),
        (429, ErrorKind.RATE_LIMITED),
        (500, ErrorKind.UPSTREAM_ERROR),
        (502, ErrorKind.UPSTREAM_ERROR),
        (503, ErrorKind.OVERLOADED),
        (504, ErrorKind.UPSTREAM_ERROR),
        (529, ErrorKind.OVERLOADED),
    ],
)
def test_statuses_map_to_kinds(status: int, kind: ErrorKind) -> None:
    assert kind_for_status(status) is kind


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "Bad key", "type": "invalid_request_error"}}', "Bad key"),
        (b'{"type": "error", "error": {"type": "overloaded_error", "message": "Busy"}}', "Busy"),
        (b'{"error": "plain"}', "plain"),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"", "Service Unavailable"),
    ],
    ids=["openai", "anthropic", "string", "html", "empty"],
)
def test_error_message_reads_either_providers_body(body: bytes, message: str) -> None:
    assert error_message(body, "Service Unavailable") == message


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    in_30_s = email.utils.formatdate(time.time() + 30, usegmt=True)

    assert retry_after({"retry-after": "12"}) == 12.0
    assert retry_after({"retry-after": "0.5"}) == 0.5
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": in_30_s}) == pytest.approx(30, abs=2)
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": "nan"}) is None
    assert retry_after({"retry-after": "-3"}) == 0.0
    assert retry_after({}) is None
