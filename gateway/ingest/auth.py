"""Finding a request's write key: Basic auth, ``writeKey`` in the body, or ``?writeKey=``.

Basic auth carries the key as the username (``base64("key:")``; the password is ignored).
Browsers using ``sendBeacon`` cannot set headers, so analytics.js puts the key in the body.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from gateway.ingest.errors import Unauthorized
from gateway.plans.snapshot import Snapshot, Source


def write_key_of(request: web.Request, body: dict[str, Any]) -> str:
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("Authorization header is not valid Basic auth") from None
        key = decoded.split(":", 1)[0]
        if key:
            return key
    body_key = body.get("writeKey")
    if isinstance(body_key, str) and body_key:
        return body_key
    query_key = request.query.get("writeKey", "")
    if query_key:
        return query_key
    raise Unauthorized(
        "no write key: send it as the Basic auth username, as writeKey in the body, "
        "or as the writeKey query parameter"
    )


def source_of(snapshot: Snapshot, write_key: str) -> Source:
    source = snapshot.source_for_key(write_key)
    if source is None:
        raise Unauthorized("unknown write key")
    return source
