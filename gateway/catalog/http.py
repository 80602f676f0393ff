"""Shared pieces of the admin HTTP API: the store key, JSON bodies and responses, auth."""

from __future__ import annotations

from aiohttp import web

from gateway.catalog.auth import TOKEN_IDENTITY, Forbidden, Scope, TokenAuth
from gateway.catalog.changelog import Change, recording
from gateway.catalog.store import Store
from gateway.config import KafkaSettings
from gateway.http import Handler
from gateway.plans.providers import SNAPSHOT_PATH

STORE_KEY = web.AppKey("store", Store)
KAFKA_KEY = web.AppKey("kafka", KafkaSettings)  # what reads the gateway's topics back
AUTH_KEY = web.AppKey("auth", TokenAuth)

MAX_BODY_BYTES = 4 * 1024 * 1024
# Paths anyone may read: probes, scrapes and the API description.
PUBLIC_PATHS = frozenset({"/health/live", "/health/ready", "/metrics", "/openapi.json"})
NATIVE_PREFIX = "/api/"
SEGMENT_PREFIX = "/tracking-plans"
OWN_AUTH_PREFIXES = (NATIVE_PREFIX, SEGMENT_PREFIX)
# RudderStack's API base URL ends in /v2: its Data Catalog routes are answered there as well,
# so scripts written for https://api.rudderstack.com/v2 need only a new host.
CATALOG_PREFIX = "/catalog/"
RUDDERSTACK_BASE = "/v2"


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    # The native and Segment APIs check tokens themselves, to answer in their own envelopes.
    own = request.path.startswith(OWN_AUTH_PREFIXES)
    if request.method != "OPTIONS" and request.path not in PUBLIC_PATHS and not own:
        authorize(request)
    return await handler(request)


def authorize(request: web.Request) -> None:
    """401 without a known token; 403 for a snapshot token anywhere but ``GET`` snapshot."""
    scope = request.app[AUTH_KEY].check(request)
    if scope is Scope.SNAPSHOT and not (
        request.method in ("GET", "HEAD") and request.path == SNAPSHOT_PATH
    ):
        raise Forbidden(f"this token (admin.snapshot_tokens) may only GET {SNAPSHOT_PATH}")


@web.middleware
async def record_catalog_changes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A write through the RudderStack-compatible catalog is recorded in the change log (with
    the write, see gateway.catalog.changelog); the native API records its own."""
    resource = request.match_info.route.resource
    if request.method not in MODIFICATIONS or resource is None:
        return await handler(request)
    route = resource.canonical.removeprefix(RUDDERSTACK_BASE)
    if not route.startswith(CATALOG_PREFIX):
        return await handler(request)
    change = Change(
        token=request[TOKEN_IDENTITY],
        surface="rudderstack",
        action=f"{request.method} {route}",
        reason=None,
        targets=path_ids(request),
    )
    with recording(change):
        return await handler(request)


MODIFICATIONS = ("PUT", "POST", "PATCH", "DELETE")


NOT_IDS = frozenset({"version", "key"})  # an API version; a write key (never logged)


def path_ids(request: web.Request) -> list[str]:
    """The ids a request's path names (what a change is about, before any it creates)."""
    return [value for name, value in request.match_info.items() if name not in NOT_IDS]


def add_rudderstack_base_aliases(app: web.Application) -> None:
    """Every ``/catalog/…`` route also at ``/v2/catalog/…``, with the same handler."""
    for route in list(app.router.routes()):
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        if resource.canonical.startswith(CATALOG_PREFIX):
            app.router.add_route(route.method, RUDDERSTACK_BASE + resource.canonical, route.handler)
