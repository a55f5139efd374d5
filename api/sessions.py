"""Short-lived session tokens, so a browser can open the WebSocket without holding the API key.

A token is `<payload>.<signature>`, both base64url: the payload names the key and the expiry
(Unix seconds), the signature is HMAC-SHA256 with a secret drawn per process, so every token
dies with the server that issued it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

import orjson


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SessionSigner:
    """Issues and checks session tokens with one secret."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def _sign(self, payload: str) -> str:
        return _encode(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest())

    def issue(self, key_id: str, expires_at: int) -> str:
        payload = _encode(orjson.dumps({"k": key_id, "exp": expires_at}))
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str, now: float) -> str | None:
        """The key_id a valid, unexpired token was issued for; None for any other token."""
        payload, dot, signature = token.partition(".")
        expected = self._sign(payload).encode()
        if not dot or not hmac.compare_digest(signature.encode(), expected):
            return None
        try:
            claims = orjson.loads(_decode(payload))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(claims, dict):
            return None
        key_id, expires_at = claims.get("k"), claims.get("exp")
        if not isinstance(key_id, str) or not isinstance(expires_at, int):
            return None
        return key_id if now < expires_at else None
