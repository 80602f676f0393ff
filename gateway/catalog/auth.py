"""Admin API authentication: bearer tokens from ``admin.tokens``.

``Authorization: Bearer <token>`` or, as RudderStack's older Tracking Plan API did, Basic
``email:token`` (the token is the password). Tokens are compared in constant time, by digest so
their lengths do not leak either, and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from aiohttp import web

from gateway.errors import Unauthorized


class TokenAuth:
    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._digests = [_digest(t) for t in tokens if t]

    def check(self, request: web.Request) -> None:
        if not self._digests:
            raise Unauthorized("the admin API has no tokens configured (admin.tokens)")
        token = _token_of(request.headers.get("Authorization", ""))
        if token is None:
            raise Unauthorized("send Authorization: Bearer <token>")
        digest = _digest(token)
        # Compare with every token, without stopping early.
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            raise Unauthorized("invalid token")


def _token_of(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
