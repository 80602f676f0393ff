"""Admin API: auth, sources and write keys, the snapshot endpoint — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.broker import EmbeddedBroker
from gateway.catalog.snapshot_builder import LocalProvider, SnapshotBuilder
from gateway.catalog.store import Store
from gateway.catalog.store.snapshot import read_snapshot_document
from gateway.config import Role
from gateway.metrics import Metrics
from gateway.plans.snapshot import parse_snapshot
from gateway.server import Gateway
from tests.conftest import ADMIN_TOKEN, GatewayFactory, basic_auth, consume, ingest_url

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SOURCES = "/api/latest/sources"


def admin_url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.admin_port}{path}"


@pytest.fixture
async def admin(
    database_url: str, make_gateway: GatewayFactory, tmp_path: Path
) -> AsyncIterator[tuple[Gateway, aiohttp.ClientSession]]:
    gw = await make_gateway(
        admin={"tokens": (ADMIN_TOKEN, "second-token")},
        catalog={"database_url": database_url},
        plans={"source": "local", "refresh_interval_s": 0.2},
    )
    async with aiohttp.ClientSession() as http:
        yield gw, http


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    async with http.request(method, url, data=data, headers=headers or BEARER) as resp:
        raw = await resp.read()
        return resp.status, orjson.loads(raw) if raw else None


async def native(
    http: aiohttp.ClientSession, gw: Gateway, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """A call to the native API (``/api/latest`` + path): status and envelope."""
    return await call(http, method, admin_url(gw, SOURCES + path), body)


async def created_source(http: aiohttp.ClientSession, gw: Gateway, name: str) -> dict[str, Any]:
    status, envelope = await native(http, gw, "PUT", "", {"name": name})
    assert status == 200, envelope
    source: dict[str, Any] = envelope["data"]["sources"][0]
    return source


async def test_admin_bodies_are_read_whole_gzip_accepted_oversize_413(
    admin: tuple[Gateway, aiohttp.ClientSession],
) -> None:
    gw, http = admin
    url = admin_url(gw, SOURCES)
    # Megabytes arrive in many chunks; the whole body is read, not what happens to be buffered.
    big = io.BytesIO(b'{"name": "Big"' + b" " * 2_000_000 + b"}")
    async with http.put(url, data=big, headers=BEARER) as resp:
        assert resp.status == 200
        assert (await resp.json())["data"]["sources"][0]["name"] == "Big"
    zipped = gzip.compress(orjson.dumps({"name": "Zipped"}))
    status, created = await call(http, "PUT", url, zipped, {**BEARER, "Content-Encoding": "gzip"})
    assert (status, created["data"]["sources"][0]["name"]) == (200, "Zipped")
    oversize = io.BytesIO(b'{"name": "Huge"' + b" " * (5 * 1024 * 1024) + b"}")
    async with http.put(url, data=oversize, headers=BEARER) as resp:
        assert resp.status == 413
        envelope = await resp.json()
        assert (envelope["result"], envelope["action"]) == ("error", "createSource")
        assert "exceeds the limit" in envelope["errorDetails"]


async def test_sources_lifecycle(admin: tuple[Gateway, aiohttp.ClientSession]) -> None:
    gw, http = admin
    status, envelope = await native(http, gw, "PUT", "", {"name": "Web app"})
    assert status == 200
    web = envelope["data"]["sources"][0]
    assert envelope == {
        "action": "createSource",
        "id": web["id"],
        "result": "success",
        "data": {"sources": [web]},
    }
    assert web["id"].startswith("src_")
    assert web["name"] == "Web app"
    assert web["enabled"] is True
    assert len(web["writeKeys"]) == 1
    assert web["createdAt"] == web["updatedAt"]
    assert web["createdAt"].endswith("Z")

    status, envelope = await native(http, gw, "PUT", "", {"name": "iOS", "enabled": False})
    ios = envelope["data"]["sources"][0]
    assert (status, ios["enabled"]) == (200, False)

    status, listing = await native(http, gw, "GET", "")
    assert status == 200
    assert listing["action"] == "listSources"
    assert "id" not in listing
    assert [s["id"] for s in listing["data"]["sources"]] == [web["id"], ios["id"]]

    status, got = await native(http, gw, "GET", f"/{web['id']}")
    assert (status, got["data"]["sources"], got["id"]) == (200, [web], web["id"])

    status, renamed = await native(
        http, gw, "POST", f"/{web['id']}", {"name": "Website", "enabled": False}
    )
    assert status == 200
    renamed = renamed["data"]["sources"][0]
    assert (renamed["name"], renamed["enabled"]) == ("Website", False)
    assert renamed["writeKeys"] == web["writeKeys"]

    # Rotation: add a key, then remove the old one.
    status, rotated = await native(http, gw, "PUT", f"/{web['id']}/write-keys")
    assert (status, rotated["action"]) == (200, "createWriteKey")
    rotated = rotated["data"]["sources"][0]
    assert rotated["writeKeys"][0] == web["writeKeys"][0]
    assert len(rotated["writeKeys"]) == 2
    old = web["writeKeys"][0]
    status, after = await native(http, gw, "DELETE", f"/{web['id']}/write-keys/{old}")
    assert status == 200
    assert after["data"]["sources"][0]["writeKeys"] == rotated["writeKeys"][1:]

    status, deleted = await native(http, gw, "DELETE", f"/{web['id']}")
    assert (status, deleted["action"], deleted["data"]["sources"][0]["id"]) == (
        200,
        "deleteSource",
        web["id"],
    )
    status, body = await native(http, gw, "GET", f"/{web['id']}")
    assert status == 404
    assert body == {
        "action": "getSource",
        "id": web["id"],
        "result": "error",
        "errorDetails": f"source {web['id']} not found",
    }
    status, listing = await native(http, gw, "GET", "")
    assert [s["id"] for s in listing["data"]["sources"]] == [ios["id"]]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "", {}, 400),
        ("PUT", "", {"name": ""}, 400),
        ("PUT", "", {"name": "   "}, 400),
        ("PUT", "", {"name": 5}, 400),
        ("PUT", "", {"name": "x" * 201}, 400),
        ("PUT", "", {"name": "ok", "enabled": "yes"}, 400),
        ("PUT", "", {"name": "ok", "colour": "red"}, 400),
        ("PUT", "", b"not json", 400),
        ("PUT", "", b"{not json", 400),
        ("PUT", "", [1, 2], 400),
        ("GET", "/src_missing", None, 404),
        ("POST", "/src_missing", {"name": "x"}, 404),
        ("DELETE", "/src_missing", None, 404),
        ("PUT", "/src_missing/write-keys", None, 404),
        ("DELETE", "/src_missing/write-keys/k", None, 404),
    ],
)
async def test_source_errors(
    admin: tuple[Gateway, aiohttp.ClientSession],
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    gw, http = admin
    got_status, got = await native(http, gw, method, path, body)
    assert got_status == status
    assert got["result"] == "error"
    assert set(got) <= {"action", "id", "result", "errorDetails"}
    assert got["errorDetails"]


async def test_update_needs_a_field_and_unknown_key_is_404(
    admin: tuple[Gateway, aiohttp.ClientSession],
) -> None:
    gw, http = admin
    source = await created_source(http, gw, "App")
    status, body = await native(http, gw, "POST", f"/{source['id']}", {})
    assert status == 400
    assert "at least one" in body["errorDetails"]
    status, _ = await native(http, gw, "DELETE", f"/{source['id']}/write-keys/not-a-key")
    assert status == 404


async def test_auth(admin: tuple[Gateway, aiohttp.ClientSession]) -> None:
    gw, http = admin
    url = admin_url(gw, "/catalog/tracking-plans")
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer"},
        {"Authorization": "Token " + ADMIN_TOKEN},
        {"Authorization": "Basic !!!"},
    ):
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 401, headers
            assert (await resp.json())["code"] == "unauthorized"
    basic = base64.b64encode(f"me@example.com:{ADMIN_TOKEN}".encode()).decode()
    for headers in ({"Authorization": f"Basic {basic}"}, {"Authorization": "Bearer second-token"}):
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200
    # Probes and scrapes need no token.
    for path in ("/health/live", "/health/ready", "/metrics"):
        async with http.get(admin_url(gw, path)) as resp:
            assert resp.status == 200, path


async def test_admin_without_tokens_refuses_everything(
    database_url: str, make_gateway: GatewayFactory
) -> None:
    gw = await make_gateway(catalog={"database_url": database_url}, plans={"source": "local"})
    async with aiohttp.ClientSession() as http:
        status, body = await call(http, "GET", admin_url(gw, "/catalog/tracking-plans"))
        assert status == 401
        assert "admin.tokens" in body["message"]
        status, body = await call(http, "GET", admin_url(gw, SOURCES))
    assert status == 401
    assert "admin.tokens" in body["errorDetails"]


async def test_snapshot_endpoint_etag(admin: tuple[Gateway, aiohttp.ClientSession]) -> None:
    gw, http = admin
    url = admin_url(gw, "/internal/v1/snapshot")
    async with http.get(url) as resp:
        assert resp.status == 401
    async with http.get(url, headers=BEARER) as resp:
        assert resp.status == 200
        first = await resp.json()
        etag = resp.headers["ETag"]
    assert first["sources"] == []
    async with http.get(url, headers={**BEARER, "If-None-Match": etag}) as resp:
        assert resp.status == 304
    # Catalog entries the snapshot does not show leave its revision alone.
    for path, body in (
        ("/catalog/categories", {"name": "Checkout"}),
        ("/catalog/properties", {"name": "coupon", "type": "string"}),
        ("/catalog/events", {"name": "Unused Event"}),
    ):
        status, _ = await call(http, "POST", admin_url(gw, path), body)
        assert status == 200, path
        async with http.get(url, headers={**BEARER, "If-None-Match": etag}) as resp:
            assert resp.status == 304, path
    source = await created_source(http, gw, "App")
    async with http.get(url, headers={**BEARER, "If-None-Match": etag}) as resp:
        assert resp.status == 200
        second = await resp.json()
        assert resp.headers["ETag"] != etag
    assert second["revision"] != first["revision"]
    [entry] = second["sources"]
    assert entry == {
        "id": source["id"],
        "name": "App",
        "enabled": True,
        "writeKeys": source["writeKeys"],
        "trackingPlan": None,
    }
    # The document is a valid snapshot for the data plane.
    assert parse_snapshot(second).source_for_key(source["writeKeys"][0]) is not None


async def wait_for_status(http: aiohttp.ClientSession, gw: Gateway, key: str, want: int) -> None:
    """Post with ``key`` until the answer is ``want`` (the data plane refreshes in the back)."""
    status = None
    async with asyncio.timeout(15):
        while status != want:
            async with http.post(
                ingest_url(gw, "/v1/track"),
                json={"userId": "u1", "event": "Signed Up"},
                headers=basic_auth(key),
            ) as resp:
                status = resp.status
            if status != want:
                await asyncio.sleep(0.1)


async def test_local_provider_feeds_ingest(admin: tuple[Gateway, aiohttp.ClientSession]) -> None:
    gw, http = admin
    source = await created_source(http, gw, "App")
    key = source["writeKeys"][0]
    await wait_for_status(http, gw, key, 200)
    kafka = gw.settings.kafka
    [record] = await consume(kafka.bootstrap_servers, kafka.events_topic, 1)
    assert dict(record.headers)["source-id"] == source["id"].encode()
    await native(http, gw, "POST", f"/{source['id']}", {"enabled": False})
    await wait_for_status(http, gw, key, 404)
    await native(http, gw, "DELETE", f"/{source['id']}")
    await wait_for_status(http, gw, key, 401)


async def test_ingest_replica_reads_the_admin_snapshot_over_http(
    broker: EmbeddedBroker, database_url: str, make_gateway: GatewayFactory
) -> None:
    admin_gw = await make_gateway(
        Role.ADMIN,
        admin={"tokens": (ADMIN_TOKEN,)},
        catalog={"database_url": database_url},
    )
    ingest_gw = await make_gateway(
        Role.INGEST,
        plans={
            "source": f"http://127.0.0.1:{admin_gw.admin_port}",
            "token": ADMIN_TOKEN,
            "refresh_interval_s": 0.2,
        },
    )
    assert ingest_gw.admin_port is None
    async with aiohttp.ClientSession() as http:
        source = await created_source(http, admin_gw, "App")
        await wait_for_status(http, ingest_gw, source["writeKeys"][0], 200)
        async with http.get(ingest_url(ingest_gw, "/health/ready")) as resp:
            assert resp.status == 200
            body = await resp.json()
            assert body == {
                "status": "ready",
                "kafka": True,
                "snapshot": True,
                "snapshotRevision": body["snapshotRevision"],
            }
            assert isinstance(body["snapshotRevision"], str)
            assert body["snapshotRevision"]
        async with http.get(admin_url(admin_gw, "/health/ready")) as resp:
            assert await resp.json() == {"status": "ready", "catalog": True, "snapshotBuild": True}


def test_local_role_ingest_is_a_clear_error(broker: EmbeddedBroker, tmp_path: Path) -> None:
    from gateway.config import ConfigError
    from tests.conftest import gateway_settings

    settings = gateway_settings(broker, tmp_path, plans={"source": "local"})
    with pytest.raises(ConfigError, match=r"plans\.source") as from_gateway:
        Gateway(settings, Role.INGEST)
    # One check, one message: the one `gateway serve` prints.
    with pytest.raises(ConfigError) as from_settings:
        settings.check_role(Role.INGEST)
    assert str(from_gateway.value) == str(from_settings.value)


async def test_store_reopens_with_data_and_migrations_applied_once(database_url: str) -> None:
    store = Store(database_url)
    await store.open()
    workspace, revision = await store.state()
    provider = LocalProvider(SnapshotBuilder(store, Metrics()))
    fetched = await provider.fetch(None)
    assert fetched is not None
    assert await provider.fetch(fetched.etag) is None  # unchanged catalog
    await store.close()

    again = Store(database_url)
    await again.open()  # migrations already applied: nothing to do, nothing lost
    assert await again.state() == (workspace, revision)
    document = await read_snapshot_document(again)
    assert document == {"revision": str(revision), "sources": [], "trackingPlans": []}
    await again.close()
