"""Finding a request's write key and its source.

The key is, in this order: the Basic auth username (``base64("key:")``; the password is
ignored), the ``?writeKey=`` query parameter, or ``writeKey`` in the JSON body (browsers using
``sendBeacon`` cannot set headers, so analytics.js puts it there). A key in the header or the
query is checked before the body is read, so an unknown key or a disabled source costs no body.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.http import basic_credentials
from gateway.ingest.errors import SourceDisabled, Unauthorized
from gateway.plans.snapshot import Snapshot, Source


def write_key_before_body(request: web.Request) -> str | None:
    """The key from the Basic header or the query, or None when only the body can hold it."""
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        credentials = basic_credentials(header[6:])
        if credentials is None:
            raise Unauthorized("Authorization header is not valid Basic auth")
        if credentials[0]:
            return credentials[0]
    return request.query.get("writeKey") or None


def write_key_in_body(body: dict[str, Any]) -> str:
    body_key = body.get("writeKey")
    if isinstance(body_key, str) and body_key:
        return body_key
    raise Unauthorized(
        "no write key: send it as the Basic auth username, as the writeKey query parameter, "
        "or as writeKey in the body"
    )


def enabled_source(snapshot: Snapshot, write_key: str) -> Source:
    """The key's source; 401 for an unknown key, 404 for a disabled source."""
    source = snapshot.source_for_key(write_key)
    if source is None:
        raise Unauthorized("unknown write key")
    if not source.enabled:
        raise SourceDisabled(f"source {source.id} is disabled")
    return source
