"""Admin API authentication: bearer tokens, each with a scope.

``Authorization: Bearer <token>``, ``X-API-Token: <token>`` or, as RudderStack's older
Tracking Plan API did, Basic ``email:token`` (the token is the password). Tokens are compared
in constant time, by digest so their lengths do not leak either, and never logged.

Two scopes: ``admin.tokens`` may do everything; ``admin.snapshot_tokens`` may only read the plan
snapshot (``GET /internal/v1/snapshot``) — what an ingest replica needs, so one that is
compromised can neither change the catalog nor read its write keys through other routes.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

from aiohttp import web

from gateway.errors import ApiError, Unauthorized
from gateway.http import basic_credentials

# The native API's token header (Rudder's convention); accepted on every admin route.
TOKEN_HEADER = "X-API-Token"
# Who made a request, for the change log: a short digest of the token, never the token.
TOKEN_IDENTITY = web.RequestKey("token_identity", str)
IDENTITY_HEX = 12


class Forbidden(ApiError):
    """The token may not do this: an `admin.snapshot_tokens` token may only read the plan
    snapshot."""

    status = 403
    code = "forbidden"


class Scope(Enum):
    FULL = "full"
    SNAPSHOT = "snapshot"


class TokenAuth:
    def __init__(self, tokens: tuple[str, ...], snapshot_tokens: tuple[str, ...] = ()) -> None:
        self._digests = [(_digest(t), Scope.FULL) for t in tokens if t]
        self._digests += [(_digest(t), Scope.SNAPSHOT) for t in snapshot_tokens if t]

    def check(self, request: web.Request) -> Scope:
        """The scope of the request's token; 401 without a known one."""
        if not self._digests:
            raise Unauthorized("the admin API has no tokens configured (admin.tokens)")
        token = request.headers.get(TOKEN_HEADER, "").strip() or _token_of(
            request.headers.get("Authorization", "")
        )
        if not token:
            raise Unauthorized(f"send Authorization: Bearer <token> or {TOKEN_HEADER}: <token>")
        digest = _digest(token)
        # Compare with every token, without stopping early.
        scopes = {Scope.FULL: False, Scope.SNAPSHOT: False}
        for known, scope in self._digests:
            scopes[scope] |= hmac.compare_digest(digest, known)
        if not any(scopes.values()):
            raise Unauthorized("invalid token")
        request[TOKEN_IDENTITY] = "sha256:" + digest.hex()[:IDENTITY_HEX]
        return Scope.FULL if scopes[Scope.FULL] else Scope.SNAPSHOT


def _token_of(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        credentials = basic_credentials(value)
        return credentials[1] if credentials is not None and credentials[1] else None
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
