"""How the shared middleware answers failures: a tiny app on a real loopback server."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.http import make_middleware
from gateway.metrics import Metrics
from tests.conftest import metric_value


async def test_a_backend_connection_failure_is_a_503_not_a_disconnect() -> None:
    """A ConnectionError from a dependency (a database refusing connections) used to be taken
    for the client going away: an empty 400 that SDKs never retry, counted as 499."""

    async def handler(_: web.Request) -> web.Response:
        raise ConnectionRefusedError("connection to the catalog database refused")

    metrics = Metrics()
    app = web.Application(middlewares=[make_middleware(metrics, ("*",))])
    app.router.add_get("/catalog/things", handler)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        aiohttp.ClientSession() as http,
        http.get(server.make_url("/catalog/things")) as resp,
    ):
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert (await resp.json())["code"] == "unavailable"
    exposition = metrics.exposition().decode()
    samples = {"route": "/catalog/things", "status": "503"}
    assert metric_value(exposition, "gateway_request_duration_seconds_count", **samples) == 1
