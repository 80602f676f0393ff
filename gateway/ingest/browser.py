"""What browser SDKs need besides the event routes: their settings, sendBeacon and pixels.

- ``GET /v1/projects/{writeKey}/settings``: the settings document analytics.js
  (``@segment/analytics-next``) loads from its ``cdnURL``. It names this gateway as the
  ``Segment.io`` destination (``apiHost``, ``protocol``) and turns the SDK's own metrics off.
- ``GET /sourceConfig/`` (and without the slash): the source config RudderStack's SDKs load from
  their ``configUrl``, for the key in the Basic header or ``?writeKey=``; no device-mode
  destinations, so every event comes to the data plane, this gateway.
- ``POST /beacon/v1/batch?writeKey=K`` is an ordinary batch route (see ``ROUTES``).
- ``GET /pixel/v1/track`` and ``GET /pixel/v1/page``: an event in the query string, dotted
  names for nesting (``properties.plan=pro``, ``context.page.url=…``); answered with a 1x1 GIF.
- ``POST /v1/m``: the SDK metrics analytics.js may post under older settings; read and dropped.

Both documents come from the plan snapshot (no database), with an ``ETag`` and a short
``Cache-Control``; an unknown key is a 401 and a disabled source a 404, as on every route.
Where events should go is ``ingest.public_url`` or, when that is not set, the request's own
host and scheme (``X-Forwarded-Host`` / ``X-Forwarded-Proto`` believed only from
``ingest.trusted_proxies``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from gateway.body import read_body
from gateway.http import add_sdk_route
from gateway.ingest.auth import enabled_source, write_key_before_body
from gateway.ingest.errors import InvalidRequest, Unauthorized
from gateway.ingest.normalize import request_info
from gateway.ingest.routes import (
    INGEST_KEY,
    IngestContext,
    IngestRequest,
    client_ip,
    current_snapshot,
    publish_request,
)

SETTINGS_ROUTE = "/v1/projects/{writeKey}/settings"
SOURCE_CONFIG_ROUTES = ("/sourceConfig", "/sourceConfig/")
PIXEL_ROUTES = {"/pixel/v1/track": "track", "/pixel/v1/page": "page"}
SDK_METRICS_ROUTE = "/v1/m"
# SDKs fetch their settings on every page load; a minute of caching spares most of those
# requests while a disabled source or a moved gateway takes effect soon.
CONFIG_MAX_AGE_S = 60
SDK_METRICS_MAX_BYTES = 64 * 1024
# The smallest transparent GIF (1x1, one transparent colour).
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# A Host header as a browser sends it: a name or address and an optional port.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def add_browser_routes(app: web.Application) -> None:
    add_sdk_route(app, "GET", SETTINGS_ROUTE, segment_settings)
    for path in SOURCE_CONFIG_ROUTES:
        add_sdk_route(app, "GET", path, source_config)
    for path, event_type in PIXEL_ROUTES.items():
        add_sdk_route(app, "GET", path, _pixel_handler(event_type))
    add_sdk_route(app, "POST", SDK_METRICS_ROUTE, sdk_metrics)


async def segment_settings(request: web.Request) -> web.Response:
    """The analytics.js settings of the key's source: events to this gateway, metrics off."""
    ctx = request.app[INGEST_KEY]
    write_key = request.match_info["writeKey"]
    enabled_source(current_snapshot(ctx), write_key)
    scheme, base = public_base(request, ctx)
    document = {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": f"{base}/v1",
                "protocol": scheme,
                "unbundledIntegrations": [],
                "addBundledMetadata": False,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
    return _cacheable(request, ctx, document)


async def source_config(request: web.Request) -> web.Response:
    """RudderStack's source config of the key's source, with no device-mode destinations."""
    ctx = request.app[INGEST_KEY]
    write_key = write_key_before_body(request)
    if write_key is None:
        raise Unauthorized("no write key: send it as the Basic auth username or ?writeKey=")
    source = enabled_source(current_snapshot(ctx), write_key)
    document = {
        "isHosted": False,
        "source": {
            "id": source.id,
            "name": source.name,
            "writeKey": write_key,
            "enabled": True,
            "workspaceId": "",
            "config": {},
            "destinations": [],
        },
    }
    return _cacheable(request, ctx, document)


def _pixel_handler(event_type: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        return await pixel(request, event_type)

    return handle


async def pixel(request: web.Request, event_type: str) -> web.Response:
    """One event from the query string, ingested as if posted; a transparent GIF on success."""
    ctx = request.app[INGEST_KEY]
    write_key = request.query.get("writeKey")
    if not write_key:
        raise Unauthorized("no write key: send it as ?writeKey=")
    snapshot = current_snapshot(ctx)
    source = enabled_source(snapshot, write_key)
    event = query_event(request.query.items())
    hold = ctx.budget.hold()
    try:
        hold.check_room()
        hold.grow(len(request.query_string))
        info = request_info(request_ip=client_ip(ctx, request))
        req = IngestRequest(snapshot, source, [event], info)
        await publish_request(ctx, hold, req, event_type)
    finally:
        hold.release()
    return web.Response(
        body=PIXEL_GIF, content_type="image/gif", headers={"Cache-Control": "no-store"}
    )


def query_event(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The event a pixel's query string spells: ``a.b=v`` sets ``{"a": {"b": "v"}}``.

    Values stay strings, as in the URL; a later name wins over an earlier one, and a name
    under a value replaces that value with an object. The write key is not event data.
    """
    event: dict[str, Any] = {}
    for name, value in pairs:
        if name == "writeKey":
            continue
        *parents, last = name.split(".")
        node = event
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value
    return event


async def sdk_metrics(request: web.Request) -> web.Response:
    """analytics.js's own metrics (``{"series": […]}``): read within a small limit, dropped."""
    hold = request.app[INGEST_KEY].budget.hold()  # charged like any body while it is read
    try:
        hold.check_room()
        await read_body(request, SDK_METRICS_MAX_BYTES, hold)
    finally:
        hold.release()
    return web.Response(text="OK")


def public_base(request: web.Request, ctx: IngestContext) -> tuple[str, str]:
    """(scheme, host and path) where browsers reach this port; the path has no trailing slash."""
    if ctx.settings.public_url:
        url = urlsplit(ctx.settings.public_url)
        return url.scheme, url.netloc + url.path.rstrip("/")
    scheme, host = request.scheme, request.host
    if ctx.client_address.trusts(request.remote):
        proto = _first(request.headers.get("X-Forwarded-Proto")).lower()
        if proto in ("http", "https"):
            scheme = proto
        host = _first(request.headers.get("X-Forwarded-Host")) or host
    if not _HOST.fullmatch(host):
        raise InvalidRequest("the Host header is not a host name; set ingest.public_url")
    return scheme, host


def _first(header: str | None) -> str:
    return (header or "").split(",")[0].strip()


def _cacheable(request: web.Request, ctx: IngestContext, document: Any) -> web.Response:
    body = orjson.dumps(document)
    etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": f"max-age={CONFIG_MAX_AGE_S}"}
    if not ctx.settings.public_url:
        # The document names the host it was asked at.
        headers["Vary"] = "Host, X-Forwarded-Host, X-Forwarded-Proto"
    if etag in _etags(request.headers.get("If-None-Match")):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


def _etags(header: str | None) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in (header or "").split(",")]
