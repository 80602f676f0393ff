"""The native API's conventions: versions in the URL and the header, the envelope, the token
header, parameters as JSON, query or form, ``prettify`` and ``reason`` — and a version 2 of one
operation added by declaration, leaving version 1 as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.catalog import sources as service
from gateway.catalog.auth import TokenAuth
from gateway.catalog.http import AUTH_KEY, STORE_KEY
from gateway.catalog.native import Answer, Call, NativeApi, Operation, Version
from gateway.catalog.native.sources import OPERATIONS
from gateway.catalog.store import Store
from gateway.catalog.store.sources import Source
from gateway.server import Gateway
from tests.conftest import ADMIN_TOKEN, GatewayFactory

TOKEN = {"X-API-Token": ADMIN_TOKEN}


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway(
        admin={"tokens": (ADMIN_TOKEN,), "snapshot_tokens": ("replica-token",)},
        plans={"source": "local"},
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def request(
    http: aiohttp.ClientSession,
    url: str,
    method: str = "GET",
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any, bytes]:
    async with http.request(method, url, headers=TOKEN | (headers or {}), **kwargs) as resp:
        raw = await resp.read()
        assert resp.content_type == "application/json"
        return resp.status, orjson.loads(raw), raw


def url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.admin_port}{path}"


async def test_version_in_the_url(gw: Gateway, http: aiohttp.ClientSession) -> None:
    for version in ("1", "latest"):
        status, body, _ = await request(http, url(gw, f"/api/{version}/sources"))
        assert (status, body["result"], body["data"]) == (200, "success", {"sources": []})
    # Not an integer: no such path.
    for version in ("3.14", "v1", "-1", "1e3", "²"):
        status, body, _ = await request(http, url(gw, f"/api/{version}/sources"))
        assert (status, body["result"]) == (404, "error"), version
        assert "not an API version" in body["errorDetails"]
    # An integer, but no such version: the error names the versions there are.
    for version in ("0", "2", "99"):
        status, body, _ = await request(http, url(gw, f"/api/{version}/sources"))
        assert (status, body["action"]) == (404, "listSources")
        assert body["errorDetails"].endswith("versions: 1, latest"), body


async def test_version_in_the_header(gw: Gateway, http: aiohttp.ClientSession) -> None:
    for headers in ({}, {"X-API-Version": "1"}, {"X-API-Version": "latest"}):
        status, body, _ = await request(http, url(gw, "/api/sources"), headers=headers)
        assert (status, body["result"]) == (200, "success"), headers
    for bad in ("3.14", "2", "0", "one", ""):
        status, body, _ = await request(
            http, url(gw, "/api/sources"), headers={"X-API-Version": bad}
        )
        assert (status, body["result"]) == (400, "error"), bad
        assert "X-API-Version" in body["errorDetails"]
        assert body["errorDetails"].endswith("versions: 1, latest")


async def test_tokens(gw: Gateway, http: aiohttp.ClientSession) -> None:
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.get(url(gw, "/api/latest/sources"), headers=bearer) as resp:
        assert resp.status == 200
    for headers, status in (
        ({"X-API-Token": "wrong"}, 401),
        ({"X-API-Token": ""}, 401),
        ({"X-API-Token": "replica-token"}, 403),  # a snapshot token reads the snapshot only
    ):
        async with http.get(url(gw, "/api/latest/sources"), headers=headers) as resp:
            body = await resp.json()
        assert (resp.status, body["result"], body["action"]) == (status, "error", "listSources")
    async with http.get(url(gw, "/api/latest/sources")) as resp:
        assert resp.status == 401
        assert "X-API-Token" in (await resp.json())["errorDetails"]


async def test_parameters_as_json_query_or_form(gw: Gateway, http: aiohttp.ClientSession) -> None:
    sources = url(gw, "/api/latest/sources")
    status, by_query, _ = await request(
        http, sources, "PUT", params={"name": "By Query", "enabled": "false"}
    )
    assert status == 200, by_query
    status, by_form, _ = await request(
        http, sources, "PUT", data={"name": "By Form", "enabled": "false"}
    )
    assert status == 200, by_form
    # JSON without its content type is still read as JSON; with it, query parameters are
    # ignored (not mixed).
    status, by_json, _ = await request(
        http, sources, "PUT", data=b'{"name": "By JSON"}', params={"name": "Ignored"}
    )
    assert status == 200, by_json
    created = [e["data"]["sources"][0] for e in (by_query, by_form, by_json)]
    assert [(s["name"], s["enabled"]) for s in created] == [
        ("By Query", False),
        ("By Form", False),
        ("By JSON", True),
    ]
    # An update by query parameter.
    one = f"{sources}/{created[0]['id']}"
    status, updated, _ = await request(http, one, "POST", params={"enabled": "true"})
    assert (status, updated["data"]["sources"][0]["enabled"]) == (200, True)
    # Wrong values, however they come, are a 400 naming the field.
    for kwargs in (
        {"params": {"name": "X", "enabled": "maybe"}},
        {"data": {"name": "X", "enabled": "maybe"}},
        {"json": {"name": "X", "enabled": "maybe"}},
    ):
        status, body, _ = await request(http, sources, "PUT", **kwargs)
        assert (status, body["result"]) == (400, "error"), kwargs
        assert body["errorDetails"].startswith("enabled: "), body


async def test_prettify_and_reason(gw: Gateway, http: aiohttp.ClientSession) -> None:
    sources = url(gw, "/api/latest/sources")
    status, created, compact = await request(
        http, sources, "PUT", json={"name": "Pretty"}, params={"reason": "ticket 42"}
    )
    assert status == 200
    assert b"\n" not in compact
    status, listed, pretty = await request(http, sources, params={"prettify": "true"})
    assert status == 200
    assert pretty.startswith(b'{\n  "action": "listSources"')
    assert listed["data"]["sources"] == created["data"]["sources"]
    # A reason is for modifications, and bounded.
    status, body, _ = await request(
        http, sources, "PUT", json={"name": "Long"}, params={"reason": "r" * 1001}
    )
    assert (status, body["result"]) == (400, "error")
    assert "reason" in body["errorDetails"]


# --- a version 2, declared -----------------------------------------------------------------------


class SourceWithKeyCount(msgspec.Struct, rename="camel"):
    id: str
    name: str
    write_key_count: int


class SourcesV2(msgspec.Struct):
    sources: list[SourceWithKeyCount]


def _v2(source: Source) -> SourceWithKeyCount:
    return SourceWithKeyCount(source.id, source.name, len(source.write_keys))


async def get_source_v2(call: Call) -> Answer:
    source = await service.get_source(call.store, call.path["source_id"])
    return Answer(SourcesV2([_v2(source)]), source.id)


def with_get_source_v2() -> list[Operation]:
    """The shipped operations, with a version 2 of getSource: one more entry, nothing else."""
    operations = []
    for op in OPERATIONS:
        if op.action == "getSource":
            op = Operation(
                op.method,
                op.path,
                op.action,
                op.summary,
                {**op.versions, 2: Version(get_source_v2, data=SourcesV2)},
                op.errors,
            )
        operations.append(op)
    return operations


async def test_a_version_2_is_a_declaration(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'catalog.db'}")
    await store.open()
    app = web.Application()
    app[STORE_KEY] = store
    app[AUTH_KEY] = TokenAuth((ADMIN_TOKEN,))
    NativeApi(with_get_source_v2()).add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{server.port}/api"
            _, created, _ = await request(http, f"{base}/1/sources", "PUT", json={"name": "App"})
            source = created["data"]["sources"][0]
            one = "/sources/" + source["id"]
            # Version 1 is unchanged.
            _, v1, _ = await request(http, f"{base}/1{one}")
            assert v1["data"]["sources"] == [source]
            # Version 2, by URL, by header, and as latest: the new field.
            v2 = {"id": source["id"], "name": "App", "writeKeyCount": 1}
            for path, headers in (
                (f"{base}/2{one}", {}),
                (f"{base}/latest{one}", {}),
                (f"{base}{one}", {"X-API-Version": "2"}),
                (f"{base}{one}", {}),
            ):
                status, answer, _ = await request(http, path, headers=headers)
                assert (status, answer["data"]["sources"]) == (200, [v2]), path
            _, by_header_v1, _ = await request(http, f"{base}{one}", headers={"X-API-Version": "1"})
            assert by_header_v1["data"]["sources"] == [source]
            # Operations without a version 2 answer version 2 as they answer version 1.
            status, listed, _ = await request(http, f"{base}/2/sources")
            assert (status, listed["data"]["sources"]) == (200, [source])
            # And the versions an error names now include 2.
            status, body, _ = await request(http, f"{base}/3/sources")
            assert status == 404
            assert body["errorDetails"].endswith("versions: 1, 2, latest")
    finally:
        await server.close()
        await store.close()
