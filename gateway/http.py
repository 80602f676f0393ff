"""Cross-cutting HTTP concerns for both ports: error mapping, metrics, CORS, health, /metrics.

CORS headers go only on SDK routes (those added with :func:`add_sdk_route`): browsers post
events there from any site; nothing else on either port is meant to be read by a web page.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import ApiError, Unavailable, error_response
from gateway.listener import ReadTimeout
from gateway.metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
# Facts shown beside the checks (e.g. the snapshot revision served); they do not decide readiness.
ServingFacts = Callable[[], dict[str, Any]]

CORS_ALLOW_HEADERS = "Content-Type, Authorization, Content-Encoding, X-Requested-With"
CORS_MAX_AGE_S = "86400"
# Status recorded in metrics for a client that went away before its response (as nginx logs).
CLIENT_CLOSED_STATUS = 499
# Canonical paths of the app's SDK routes: the only ones with CORS headers.
SDK_ROUTES: web.AppKey[set[str]] = web.AppKey("sdk_routes")


def add_sdk_route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """A route browsers call from other origins: CORS headers and a preflight answer."""
    app.router.add_route(method, path, handler)
    if path not in app.setdefault(SDK_ROUTES, set()):
        app.router.add_route("OPTIONS", path, preflight)
        app[SDK_ROUTES].add(path)


def make_middleware(metrics: Metrics, cors_origins: tuple[str, ...]) -> Any:
    allow_any = "*" in cors_origins
    allowed = frozenset(cors_origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response: web.StreamResponse
        status: int | None = None
        try:
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc)
            if isinstance(exc, ReadTimeout):
                response.force_close()  # the rest of the body is never coming
        except ConnectionError:
            if request.transport is None or request.transport.is_closing():
                # The client went away mid-request: nobody to answer, and not our error.
                log.info("client disconnected during %s %s", request.method, request.path)
                response = web.Response(status=400)  # never delivered
                status = CLIENT_CLOSED_STATUS
            else:
                # A connection of ours failed (the catalog database, say): transient, retried.
                log.exception("connection failed handling %s %s", request.method, request.path)
                response = error_response(Unavailable("a backend connection failed; retry"))
        except web.HTTPException as exc:
            # Router-level errors (404, 405) in the same JSON shape as ours.
            response = web.json_response(
                {"code": exc.reason.lower().replace(" ", "_"), "message": exc.text or exc.reason},
                status=exc.status,
                headers={"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None,
            )
        except Exception:
            log.exception("unexpected error handling %s %s", request.method, request.path)
            response = web.json_response(
                {"code": "internal_error", "message": "internal error"}, status=500
            )
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        origin = request.headers.get("Origin")
        if origin and (allow_any or origin in allowed) and route in request.app.get(SDK_ROUTES, ()):
            # Credential-less CORS: browsers send the write key in the body or Basic header.
            response.headers["Access-Control-Allow-Origin"] = "*" if allow_any else origin
            if not allow_any:
                response.headers["Vary"] = "Origin"
        status_label = str(status or response.status)
        metrics.labelled(metrics.request_duration, route, status_label).observe(
            time.perf_counter() - started
        )
        return response

    return middleware


def basic_credentials(value: str) -> tuple[str, str] | None:
    """User and password of a Basic ``Authorization`` value (after ``Basic``), or None when it
    is not base64 of UTF-8 text. Header values may hold any character; none raises here."""
    try:
        decoded = base64.b64decode(value.strip().encode("ascii"), validate=True).decode("utf-8")
    except (UnicodeError, binascii.Error):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def json_ok(document: Any, status: int = 200) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.json_response(document, status=status, dumps=_dumps)


def _dumps(document: Any) -> str:
    return orjson.dumps(document).decode()


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight of an SDK route; the middleware adds Allow-Origin for allowed origins."""
    requested = request.headers.get("Access-Control-Request-Headers")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": requested or CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": CORS_MAX_AGE_S,
        },
    )


def add_common_routes(
    app: web.Application,
    metrics: Metrics,
    readiness: ReadinessCheck,
    facts: ServingFacts,
    *,
    serve_metrics: bool = True,
) -> None:
    async def live(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_: web.Request) -> web.Response:
        checks = await readiness()
        ok = all(checks.values())
        return web.json_response(
            {"status": "ready" if ok else "not ready", **checks, **facts()},
            status=200 if ok else 503,
        )

    async def metrics_handler(_: web.Request) -> web.Response:
        # In a thread: with many sources and plans a scrape is tens of milliseconds of work,
        # which on the event loop would stall every request in flight.
        response = web.Response(body=await asyncio.to_thread(metrics.exposition))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    if serve_metrics:
        app.router.add_get("/metrics", metrics_handler)
