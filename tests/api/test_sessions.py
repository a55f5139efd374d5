"""Session tokens: signed, expiring, bound to the process that issued them."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.sessions import SessionSigner


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_stands_for_its_key_until_it_expires() -> None:
    signer = SessionSigner()
    token = signer.issue("k1", expires_at=1000)
    assert signer.verify(token, now=999.9) == "k1"
    assert signer.verify(token, now=1000) is None


def test_another_process_secret_refuses_the_token() -> None:
    token = SessionSigner().issue("k1", expires_at=2**40)
    assert SessionSigner().verify(token, now=0) is None


def test_a_changed_payload_breaks_the_signature() -> None:
    signer = SessionSigner()
    payload, signature = signer.issue("k1", expires_at=1000).split(".")
    forged = _b64(b'{"k":"k1","exp":99999}')
    assert signer.verify(f"{forged}.{signature}", now=0) is None
    assert signer.verify(f"{payload}.{signature[:-2]}", now=0) is None


@pytest.mark.parametrize(
    "claims", [b'["k1", 5]', b'{"k": 1, "exp": 5}', b'{"k": "k1", "exp": "5"}', b"not json"]
)
def test_well_signed_nonsense_is_refused(claims: bytes) -> None:
    signer = SessionSigner()
    payload = _b64(claims)
    signature = _b64(hmac.new(signer.secret, payload.encode(), hashlib.sha256).digest())
    assert signer.verify(f"{payload}.{signature}", now=0) is None


@given(st.text())
def test_any_string_is_refused_without_raising(token: str) -> None:
    assert SessionSigner().verify(token, now=0) is None
