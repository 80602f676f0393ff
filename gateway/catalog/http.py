"""Shared pieces of the admin HTTP API: the store key, JSON bodies and responses, auth."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.catalog.auth import TokenAuth
from gateway.catalog.store import Store
from gateway.errors import BadRequest
from gateway.http import Handler
from gateway.ingest.body import parse_json_object

STORE_KEY = web.AppKey("store", Store)
AUTH_KEY = web.AppKey("auth", TokenAuth)

MAX_BODY_BYTES = 4 * 1024 * 1024
# Paths anyone may read: probes, scrapes and the API description.
PUBLIC_PATHS = frozenset({"/health/live", "/health/ready", "/metrics", "/openapi.json"})


def _dumps(document: Any) -> str:
    return orjson.dumps(document).decode()


def json_ok(document: Any, status: int = 200) -> web.Response:
    return web.json_response(document, status=status, dumps=_dumps)


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadRequest(f"body exceeds {MAX_BODY_BYTES} bytes")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"body exceeds {MAX_BODY_BYTES} bytes")
    return parse_json_object(raw)


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method != "OPTIONS" and request.path not in PUBLIC_PATHS:
        request.app[AUTH_KEY].check(request)
    return await handler(request)
