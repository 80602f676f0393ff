"""Scoped admin tokens: ``admin.snapshot_tokens`` may read the plan snapshot and nothing else."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.config import ConfigError, Role, load_settings
from gateway.plans.providers import SNAPSHOT_PATH
from gateway.server import Gateway
from tests.conftest import NATIVE_SOURCES, GatewayFactory, basic_auth, ingest_url

FULL_TOKEN = "full-token-for-tests"
SNAPSHOT_TOKEN = "snapshot-token-for-tests"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def admin(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway(
        admin={"tokens": (FULL_TOKEN,), "snapshot_tokens": (SNAPSHOT_TOKEN,)},
        plans={"source": "local", "refresh_interval_s": 0.2},
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def admin_url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.admin_port}{path}"


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = bearer(token) if token is not None else {}
    data = None if body is None else orjson.dumps(body)
    async with http.request(method, url, headers=headers, data=data) as resp:
        raw = await resp.read()
        return resp.status, orjson.loads(raw) if raw else None


async def test_a_snapshot_token_reads_the_snapshot_and_nothing_else(
    admin: Gateway, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, snapshot = await call(http, "GET", admin_url(admin, SNAPSHOT_PATH), SNAPSHOT_TOKEN)
    assert status == 200
    assert "revision" in snapshot

    # Every other admin operation the API documents, whatever the method: 403, JSON error.
    status, document = await call(http, "GET", admin_url(admin, "/openapi.json"), None)
    assert status == 200
    tried = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or path == SNAPSHOT_PATH:
                continue
            if {"adminBearer": []} not in operation.get("security", []):
                continue  # public (probes, metrics, this document) or the ingest port's
            url = admin_url(admin, re.sub(r"{\w+}", "x", path))
            status, body = await call(http, method.upper(), url, SNAPSHOT_TOKEN, {"name": "Zed"})
            assert status == 403, (method, path, status, body)
            if path.startswith("/api/"):  # the native API's envelope
                assert body["result"] == "error", body
                assert SNAPSHOT_PATH in body["errorDetails"]
            elif path.startswith("/tracking-plans"):  # the Segment API's
                [problem] = body["errors"]
                assert (problem["type"], problem["status"]) == ("forbidden", 403), body
                assert SNAPSHOT_PATH in problem["message"]
            else:
                assert body["code"] == "forbidden", body
                assert SNAPSHOT_PATH in body["message"]
            tried += 1
    assert tried > 30
    # Not even under another method on the snapshot path itself.
    status, body = await call(http, "DELETE", admin_url(admin, SNAPSHOT_PATH), SNAPSHOT_TOKEN)
    assert status == 403, body

    # The full token keeps every right.
    assert (await call(http, "GET", admin_url(admin, SNAPSHOT_PATH), FULL_TOKEN))[0] == 200
    status, source = await call(
        http, "PUT", admin_url(admin, NATIVE_SOURCES), FULL_TOKEN, {"name": "A"}
    )
    assert status == 200, source
    # Unknown or missing tokens are still a 401.
    for token in ("nope", None):
        status, body = await call(http, "GET", admin_url(admin, SNAPSHOT_PATH), token)
        assert (status, body["code"]) == (401, "unauthorized")

    for token in (FULL_TOKEN, SNAPSHOT_TOKEN):
        assert token not in caplog.text


async def test_an_ingest_replica_serves_with_a_snapshot_token(
    admin: Gateway, make_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    status, created = await call(
        http, "PUT", admin_url(admin, NATIVE_SOURCES), FULL_TOKEN, {"name": "Replica Source"}
    )
    assert status == 200, created
    source = created["data"]["sources"][0]
    replica = await make_gateway(
        Role.INGEST,
        plans={
            "source": f"http://127.0.0.1:{admin.admin_port}",
            "token": SNAPSHOT_TOKEN,
            "refresh_interval_s": 0.2,
        },
    )
    assert replica.cache.current is not None, "the replica could not load the snapshot"
    async with http.post(
        ingest_url(replica, "/v1/track"),
        data=orjson.dumps({"userId": "u1", "event": "Replicated"}),
        headers=basic_auth(source["writeKeys"][0]),
    ) as resp:
        assert resp.status == 200, await resp.text()


def test_a_token_cannot_have_both_scopes() -> None:
    with pytest.raises(ConfigError, match=r"admin\.snapshot_tokens"):
        load_settings(
            None,
            environ={"GATEWAY_ADMIN_TOKENS": "a,b", "GATEWAY_ADMIN_SNAPSHOT_TOKENS": "b"},
        )
