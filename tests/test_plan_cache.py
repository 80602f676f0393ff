"""The plan snapshot and its cache : hot reload, outages, persistence, providers."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from gateway.broker import EmbeddedBroker, free_port
from gateway.metrics import Metrics
from gateway.plans.cache import CHILD_PARSE_BYTES, PERSISTED_NAME, PlanCache
from gateway.plans.document import Fetched, check_document, compact_snapshot_of_json
from gateway.plans.providers import HttpProvider, provider_from_source
from gateway.plans.snapshot import (
    Snapshot,
    SnapshotError,
    compact_snapshot,
    parse_snapshot,
)
from gateway.server import Gateway
from tests.conftest import (
    DISABLED_KEY,
    SOURCE_ID,
    WRITE_KEY,
    GatewayFactory,
    basic_auth,
    consume,
    gateway_settings,
    headers_of,
    ingest_url,
    metric_value,
    snapshot_doc,
    write_snapshot,
)

REFRESH_S = 0.2  # the conftest gateways refresh their snapshot every 0.2 s
# A change must be visible within a few refresh intervals (jitter + a worker-thread parse).
CHANGE_DEADLINE_S = 3.0
POLL_STEP_S = 0.05
MAX_POLLS = int(CHANGE_DEADLINE_S / POLL_STEP_S) + 20

NEW_KEY = "wk_new_source"
NEW_SOURCE_ID = "src_new"

TRACK = {"userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}}


def plan_doc(plan_id: str = "tp_1", version: int = 1) -> dict[str, Any]:
    return {
        "id": plan_id,
        "name": "Plan",
        "version": version,
        "events": [
            {
                "name": "Signed Up",
                "eventType": "track",
                "identitySection": "properties",
                "rules": {"type": "object"},
            }
        ],
    }


def source_doc(
    source_id: str, keys: list[str], *, enabled: bool = True, plan_id: str | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": source_id,
        "name": source_id,
        "enabled": enabled,
        "writeKeys": keys,
    }
    if plan_id is not None:
        doc["trackingPlan"] = {"id": plan_id, "version": 1, "config": {}}
    return doc


async def post_track(
    http: aiohttp.ClientSession, gw: Gateway, key: str = WRITE_KEY, body: dict[str, Any] = TRACK
) -> tuple[int, str, dict[str, str]]:
    async with http.post(ingest_url(gw, "/v1/track"), json=body, headers=basic_auth(key)) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def wait_for(
    check: Callable[[], Awaitable[bool]], what: str, deadline_s: float = CHANGE_DEADLINE_S
) -> float:
    """Poll ``check`` until it is true; bounded in time and count. Returns the seconds it took."""
    started = time.monotonic()
    for _ in range(MAX_POLLS):
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started > deadline_s:
            break
        await asyncio.sleep(POLL_STEP_S)
    pytest.fail(f"timed out after {time.monotonic() - started:.1f}s waiting for {what}")


def refresh_count(metrics_text: str, result: str) -> float:
    match = re.search(
        rf'^gateway_plan_refresh_total\{{result="{result}"\}} (\S+)$', metrics_text, re.M
    )
    return float(match.group(1)) if match else 0.0


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


# --- hot reload through a running gateway -------------------------------------------------


async def test_new_write_key_is_accepted_without_restart(gateway: Gateway, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        status, _, _ = await post_track(http, gateway, NEW_KEY)
        assert status == 401

        doc = snapshot_doc(revision="r2")
        doc["sources"].append(source_doc(NEW_SOURCE_ID, [NEW_KEY]))
        write_snapshot(tmp_path / "snapshot.json", doc)

        async def accepted() -> bool:
            status, text, _ = await post_track(http, gateway, NEW_KEY, {**TRACK, "userId": "u-new"})
            assert status in (200, 401), text
            return status == 200

        took = await wait_for(accepted, "the new write key to be accepted")
        assert took < CHANGE_DEADLINE_S
        assert gateway.cache.current is not None
        assert gateway.cache.current.revision == "r2"
        # The old key keeps working across the swap.
        status, _, _ = await post_track(http, gateway, WRITE_KEY, {**TRACK, "userId": "u-old"})
        assert status == 200

    s = gateway.settings.kafka
    records = await consume(s.bootstrap_servers, s.events_topic, 2)
    by_key = {r.key: headers_of(r) for r in records}
    assert by_key[b"u-new"]["source-id"] == NEW_SOURCE_ID
    assert by_key[b"u-old"]["source-id"] == SOURCE_ID


async def test_disabling_a_source_turns_requests_into_404(gateway: Gateway, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        status, _, _ = await post_track(http, gateway)
        assert status == 200
        status, _, _ = await post_track(http, gateway, DISABLED_KEY)
        assert status == 404

        write_snapshot(
            tmp_path / "snapshot.json",
            snapshot_doc(
                revision="r2",
                sources=[
                    source_doc(SOURCE_ID, [WRITE_KEY], enabled=False),
                    source_doc("src_off", [DISABLED_KEY], enabled=False),
                ],
            ),
        )

        async def disabled() -> bool:
            status, text, _ = await post_track(http, gateway)
            assert status in (200, 404), text
            return status == 404

        await wait_for(disabled, "the disabled source to answer 404")
        async with http.post(
            ingest_url(gateway, "/v1/track"), json=TRACK, headers=basic_auth()
        ) as resp:
            assert resp.status == 404
            body = await resp.json()
        assert set(body) == {"code", "message"}


BROKEN_DOCUMENTS = {
    "invalid-json": b'{"revision": "r2", "sources": [',
    "missing-plan": (
        b'{"revision": "r2", "sources": [{"id": "src_new", "enabled": true, '
        b'"writeKeys": ["wk_new_source"], "trackingPlan": {"id": "tp_missing"}}], '
        b'"trackingPlans": []}'
    ),
}


@pytest.mark.parametrize("content", BROKEN_DOCUMENTS.values(), ids=BROKEN_DOCUMENTS.keys())
async def test_broken_snapshot_keeps_last_good_one_serving(
    gateway: Gateway, tmp_path: Path, content: bytes
) -> None:
    metrics_url = ingest_url(gateway, "/metrics")
    async with aiohttp.ClientSession() as http:
        status, _, _ = await post_track(http, gateway)
        assert status == 200
        async with http.get(metrics_url) as resp:
            errors_before = refresh_count(await resp.text(), "error")
        assert errors_before == 0

        snapshot_file = tmp_path / "snapshot.json"
        tmp = snapshot_file.with_suffix(".tmp")
        tmp.write_bytes(content)
        tmp.replace(snapshot_file)

        async def refresh_failed() -> bool:
            async with http.get(metrics_url) as resp:
                assert resp.status == 200
                return refresh_count(await resp.text(), "error") >= 1

        await wait_for(refresh_failed, 'gateway_plan_refresh_total{result="error"} to count')

        # The last good snapshot keeps serving: the old key works, the new one is unknown.
        assert gateway.cache.current is not None
        assert gateway.cache.current.revision == "r1"
        status, text, _ = await post_track(http, gateway)
        assert (status, text) == (200, "OK")
        status, _, _ = await post_track(http, gateway, NEW_KEY)
        assert status == 401
        status, ready = await get_json(http, ingest_url(gateway, "/health/ready"))
        assert status == 200
        assert ready["snapshot"] is True


# --- provider unreachable at startup ------------------------------------------------------


def unreachable_source(kind: str, tmp_path: Path) -> str:
    if kind == "missing-file":
        return f"file:{tmp_path / 'no-such-snapshot.json'}"
    if kind == "broken-file":
        broken = tmp_path / "broken-snapshot.json"
        broken.write_bytes(b"{not json")
        return f"file:{broken}"
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


async def persist_a_snapshot(broker: EmbeddedBroker, tmp_path: Path) -> Path:
    """Run a gateway once against the good snapshot file so it persists it; return cache_dir."""
    first = Gateway(gateway_settings(broker, tmp_path))
    await first.start()
    try:
        assert await first.publisher.wait_connected(15)
        assert first.cache.current is not None
    finally:
        await first.stop()
    cache_dir = Path(first.settings.plans.cache_dir)
    assert (cache_dir / PERSISTED_NAME).is_file()
    return cache_dir


@pytest.mark.parametrize("kind", ["missing-file", "broken-file", "closed-port"])
async def test_persisted_snapshot_serves_when_provider_is_unreachable_at_start(
    broker: EmbeddedBroker, make_gateway: GatewayFactory, tmp_path: Path, kind: str
) -> None:
    cache_dir = await persist_a_snapshot(broker, tmp_path)
    gw = await make_gateway(
        plans={"source": unreachable_source(kind, tmp_path), "cache_dir": str(cache_dir)}
    )
    async with aiohttp.ClientSession() as http:
        status, ready = await get_json(http, ingest_url(gw, "/health/ready"))
        assert status == 200, ready
        assert ready["snapshot"] is True
        status, text, _ = await post_track(http, gw)
        assert (status, text) == (200, "OK")
        status, _, _ = await post_track(http, gw, DISABLED_KEY)
        assert status == 404
        # Failed refreshes do not throw the persisted snapshot away.
        errors = 0.0
        for _ in range(MAX_POLLS):  # however slowly the refreshes come round
            async with http.get(ingest_url(gw, "/metrics")) as resp:
                errors = refresh_count(await resp.text(), "error")
            if errors >= 2:
                break
            await asyncio.sleep(POLL_STEP_S)
        status, text, _ = await post_track(http, gw, body={**TRACK, "userId": "u2"})
        assert (status, text) == (200, "OK")
        assert errors >= 2

    s = gw.settings.kafka
    records = await consume(s.bootstrap_servers, s.events_topic, 2)
    assert {r.key for r in records} == {b"u1", b"u2"}


@pytest.mark.parametrize("kind", ["missing-file", "closed-port"])
async def test_no_snapshot_at_all_is_not_ready_and_ingest_answers_503(
    make_gateway: GatewayFactory, tmp_path: Path, kind: str
) -> None:
    cache_dir = tmp_path / "empty-cache"
    gw = await make_gateway(
        plans={"source": unreachable_source(kind, tmp_path), "cache_dir": str(cache_dir)}
    )
    async with aiohttp.ClientSession() as http:
        status, ready = await get_json(http, ingest_url(gw, "/health/ready"))
        assert status == 503
        assert ready["snapshot"] is False
        status, text, headers = await post_track(http, gw)
        assert status == 503, text
        assert int(headers["Retry-After"]) > 0

        if kind == "missing-file":
            # The provider comes back: the snapshot loads and ingest recovers without restart.
            write_snapshot(tmp_path / "no-such-snapshot.json", snapshot_doc())

            async def recovered() -> bool:
                status, text, _ = await post_track(http, gw)
                assert status in (200, 503), text
                return status == 200

            await wait_for(recovered, "ingest to recover once the snapshot file exists")
            status, ready = await get_json(http, ingest_url(gw, "/health/ready"))
            assert status == 200
            assert ready["snapshot"] is True


async def test_staleness_of_a_persisted_snapshot_is_visible(
    broker: EmbeddedBroker, make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Serving a persisted copy while the provider is down is stale: the age gauge must say so.

    An alert on gateway_plan_snapshot_age_seconds must fire for a replica that started during
    a control-plane outage, not read 0 for as long as the outage lasts.
    """
    cache_dir = await persist_a_snapshot(broker, tmp_path)
    gw = await make_gateway(
        plans={"source": unreachable_source("missing-file", tmp_path), "cache_dir": str(cache_dir)}
    )
    assert gw.cache.current is not None
    await asyncio.sleep(REFRESH_S * 3)
    async with aiohttp.ClientSession() as http, http.get(ingest_url(gw, "/metrics")) as resp:
        age = metric_value(await resp.text(), "gateway_plan_snapshot_age_seconds")
    assert age >= REFRESH_S * 3


# --- HttpProvider against a real HTTP server ----------------------------------------------


@dataclass
class SnapshotServer:
    url: str
    document: bytes = b""
    etag: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


@pytest.fixture
async def snapshot_server() -> AsyncIterator[SnapshotServer]:
    server = SnapshotServer(url="")

    async def handle(request: web.Request) -> web.Response:
        server.requests.append(dict(request.headers))
        if request.headers.get("If-None-Match") == server.etag:
            server.statuses.append(304)
            return web.Response(status=304, headers={"ETag": server.etag})
        server.statuses.append(200)
        return web.Response(
            body=server.document, content_type="application/json", headers={"ETag": server.etag}
        )

    app = web.Application()
    app.router.add_get("/internal/v1/snapshot", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        server.url = f"http://{host}:{port}"
        yield server
    finally:
        await runner.cleanup()


def serve(server: SnapshotServer, etag: str, **doc: Any) -> None:
    server.document = orjson.dumps(snapshot_doc(**doc))
    server.etag = etag


async def test_http_provider_conditional_fetch_and_bearer_token(
    snapshot_server: SnapshotServer, tmp_path: Path
) -> None:
    serve(snapshot_server, '"etag-1"', revision="r1")
    provider = provider_from_source(snapshot_server.url, token="s3cret-token")
    assert isinstance(provider, HttpProvider)
    assert provider.url == snapshot_server.url + "/internal/v1/snapshot"
    cache = PlanCache(
        provider, cache_dir=tmp_path / "cache", refresh_interval_s=60, metrics=Metrics()
    )
    try:
        assert await cache.refresh_once() == "updated"
        first = cache.current
        assert first is not None
        assert first.revision == "r1"
        assert "If-None-Match" not in snapshot_server.requests[0]

        # Unchanged: the second fetch is conditional, the server answers 304, nothing swaps.
        assert await cache.refresh_once() == "not_modified"
        assert snapshot_server.requests[1]["If-None-Match"] == '"etag-1"'
        assert snapshot_server.statuses == [200, 304]
        assert cache.current is first

        # Changed: the new document is swapped in, and its ETag is used next time.
        serve(
            snapshot_server,
            '"etag-2"',
            revision="r2",
            sources=[source_doc(NEW_SOURCE_ID, [NEW_KEY])],
        )
        assert await cache.refresh_once() == "updated"
        assert cache.current is not None
        assert cache.current.revision == "r2"
        assert cache.current.source_for_key(NEW_KEY) is not None
        assert cache.current.source_for_key(WRITE_KEY) is None
        assert await cache.refresh_once() == "not_modified"
        assert snapshot_server.requests[-1]["If-None-Match"] == '"etag-2"'
        assert snapshot_server.statuses == [200, 304, 200, 304]

        # The bearer token went with every request.
        assert [r.get("Authorization") for r in snapshot_server.requests] == [
            "Bearer s3cret-token"
        ] * 4
        # The good document was persisted for a restart while the admin side is down.
        assert b'"r2"' in (tmp_path / "cache" / PERSISTED_NAME).read_bytes()
    finally:
        await cache.stop()


async def test_gateway_serves_from_an_http_snapshot_source(
    snapshot_server: SnapshotServer, make_gateway: GatewayFactory
) -> None:
    serve(snapshot_server, '"etag-1"', revision="r1")
    gw = await make_gateway(plans={"source": snapshot_server.url, "token": "tok"})
    async with aiohttp.ClientSession() as http:
        status, text, _ = await post_track(http, gw)
        assert (status, text) == (200, "OK")

        async def polled_conditionally() -> bool:
            return 304 in snapshot_server.statuses

        await wait_for(polled_conditionally, "a conditional refresh answered 304")
    assert all(r.get("Authorization") == "Bearer tok" for r in snapshot_server.requests)


# --- YAML snapshot files ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
async def test_yaml_snapshot_file_loads(
    make_gateway: GatewayFactory, tmp_path: Path, suffix: str
) -> None:
    doc = snapshot_doc(
        revision="yaml-1",
        sources=[source_doc(SOURCE_ID, [WRITE_KEY], plan_id="tp_1")],
    )
    doc["trackingPlans"] = [plan_doc("tp_1", 2)]
    plans_file = tmp_path / f"plans{suffix}"
    plans_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    gw = await make_gateway(plans={"source": f"file:{plans_file}"})
    snapshot = gw.cache.current
    assert snapshot is not None
    assert snapshot.revision == "yaml-1"
    assert snapshot.tracking_plans["tp_1"].version == 2
    source = snapshot.source_for_key(WRITE_KEY)
    assert source is not None
    assert snapshot.plan_for(source) is snapshot.tracking_plans["tp_1"]
    async with aiohttp.ClientSession() as http:
        status, text, _ = await post_track(http, gw)
        assert (status, text) == (200, "OK")


async def test_yaml_without_revision_gets_a_derived_one(tmp_path: Path) -> None:
    plans_file = tmp_path / "plans.yaml"
    plans_file.write_text(
        yaml.safe_dump({"sources": [source_doc(SOURCE_ID, [WRITE_KEY])], "trackingPlans": []})
    )
    cache = PlanCache(
        provider_from_source(f"file:{plans_file}"),
        cache_dir=tmp_path / "cache",
        refresh_interval_s=60,
        metrics=Metrics(),
    )
    try:
        assert await cache.refresh_once() == "updated"
        assert cache.current is not None
        assert cache.current.revision.startswith("sha256:")
        assert await cache.refresh_once() == "not_modified"
    finally:
        await cache.stop()


# --- parse_snapshot and Snapshot ----------------------------------------------------------


def test_duplicate_write_key_across_sources_is_rejected() -> None:
    doc = snapshot_doc(
        sources=[source_doc("src_a", ["k1", "shared"]), source_doc("src_b", ["shared"])]
    )
    with pytest.raises(SnapshotError, match=r"^sources\[1\]\.writeKeys: .*already used"):
        parse_snapshot(doc)


def test_unknown_plan_reference_is_rejected() -> None:
    doc = snapshot_doc(sources=[source_doc("src_a", ["k1"], plan_id="tp_missing")])
    with pytest.raises(SnapshotError, match=r"^sources\[0\]\.trackingPlan\.id: plan 'tp_missing'"):
        parse_snapshot(doc)


@pytest.mark.parametrize("event_type", ["Track", "alias", "purchase", ""])
def test_bad_event_type_is_rejected(event_type: str) -> None:
    plan = plan_doc()
    plan["events"].append({"name": "X", "eventType": event_type, "rules": {}})
    doc = snapshot_doc(sources=[])
    doc["trackingPlans"] = [plan]
    with pytest.raises(SnapshotError, match=r"^trackingPlans\[0\]\.events\[1\]\.eventType: "):
        parse_snapshot(doc)


def test_source_for_key_finds_sources_by_any_key() -> None:
    doc = snapshot_doc(
        sources=[
            source_doc("src_a", ["a1", "a2", "a3"]),
            source_doc("src_b", ["b1"], enabled=False),
        ]
    )
    snapshot = parse_snapshot(doc)
    assert isinstance(snapshot, Snapshot)
    for key in ("a1", "a2", "a3"):
        found = snapshot.source_for_key(key)
        assert found is not None
        assert found.id == "src_a"
    disabled = snapshot.source_for_key("b1")
    assert disabled is not None
    assert (disabled.id, disabled.enabled) == ("src_b", False)
    for unknown in ("", "a", "a1 ", "A1", "b2", "src_a"):
        assert snapshot.source_for_key(unknown) is None


# --- large snapshots: decoded in a child process ---------------------------------------------


def large_doc(plans: int, revision: str | None = "large-1") -> dict[str, Any]:
    """Over CHILD_PARSE_BYTES: many plans, most sharing one rule, as catalogs do."""
    shared = {"properties": {"properties": {"required": ["plan"], "padding": "x" * 200}}}
    docs = []
    for p in range(plans):
        events = [{"name": f"Event {e}", "eventType": "track", "rules": shared} for e in range(20)]
        events.append(
            {
                "name": "Signed Up",
                "eventType": "track",
                "rules": {"properties": {"properties": {"required": [f"field_{p}"]}}},
            }
        )
        docs.append({"id": f"tp_{p}", "name": "Plan", "version": 1, "events": events})
    doc = snapshot_doc(sources=[source_doc(SOURCE_ID, [WRITE_KEY], plan_id="tp_7")])
    doc["trackingPlans"] = docs
    if revision is None:
        del doc["revision"]
    else:
        doc["revision"] = revision
    return doc


def large_cache(tmp_path: Path, doc: dict[str, Any]) -> PlanCache:
    plans_file = tmp_path / "plans.json"
    content = orjson.dumps(doc)
    assert len(content) >= CHILD_PARSE_BYTES
    plans_file.write_bytes(content)
    return PlanCache(
        provider_from_source(f"file:{plans_file}"),
        cache_dir=tmp_path / "cache",
        refresh_interval_s=60,
        metrics=Metrics(),
    )


async def test_large_snapshot_loads_with_equal_rules_shared(tmp_path: Path) -> None:
    cache = large_cache(tmp_path, large_doc(400))
    try:
        assert await cache.refresh_once() == "updated"
        snapshot = cache.current
        assert snapshot is not None
        assert snapshot.revision == "large-1"
        assert len(snapshot.tracking_plans) == 400
        plan = snapshot.tracking_plans["tp_7"]
        assert plan.event("track", "Signed Up").rules == {  # type: ignore[union-attr]
            "properties": {"properties": {"required": ["field_7"]}}
        }
        # The rule 20 events of every plan share is one object, with one digest.
        shared = [e for p in snapshot.tracking_plans.values() for e in p.events[:20]]
        assert len({id(e.rules) for e in shared}) == 1
        assert len({e.fingerprint for e in shared}) == 1
        source = snapshot.source_for_key(WRITE_KEY)
        assert source is not None
        assert snapshot.plan_for(source) is plan
        # The persisted copy is the document itself.
        persisted = orjson.loads((tmp_path / "cache" / PERSISTED_NAME).read_bytes())
        assert persisted == large_doc(400)
        assert await cache.refresh_once() == "not_modified"
    finally:
        await cache.stop()


async def test_large_snapshot_without_revision_gets_a_derived_one(tmp_path: Path) -> None:
    cache = large_cache(tmp_path, large_doc(400, revision=None))
    try:
        assert await cache.refresh_once() == "updated"
        assert cache.current is not None
        assert cache.current.revision.startswith("sha256:")
        persisted = orjson.loads((tmp_path / "cache" / PERSISTED_NAME).read_bytes())
        assert persisted["revision"] == cache.current.revision
    finally:
        await cache.stop()


async def test_malformed_large_snapshot_is_an_error_and_keeps_nothing(tmp_path: Path) -> None:
    doc = large_doc(400)
    doc["trackingPlans"][123]["events"][4]["eventType"] = "alias"
    cache = large_cache(tmp_path, doc)
    try:
        assert await cache.refresh_once() == "error"
        assert cache.current is None
        assert not (tmp_path / "cache" / PERSISTED_NAME).exists()
    finally:
        await cache.stop()


def rich_doc() -> dict[str, Any]:
    """A document using every part of the format that names a rule."""
    rules = {"type": "object", "properties": {"properties": {"required": ["sku"]}}}
    event = {
        "name": "Order Completed",
        "eventType": "track",
        "identitySection": "properties",
        "rules": rules,
        "ruleVersion": 2,
        "otherVersions": {"3": {"required": ["properties"]}},
    }
    identify = {"eventType": "identify", "rules": {"required": ["traits"]}}
    common = {"version": 4, "rules": {"properties": {"context": {"type": "object"}}}}
    plan = {
        "id": "tp_rich",
        "name": "Rich",
        "version": 3,
        "events": [event, identify, {**event, "name": "Order Refunded", "rules": True}],
        "commonRule": common,
        "pastVersions": [
            {"version": 1, "events": [identify]},
            {"version": 2, "events": [event], "commonRule": common},
        ],
        "description": "not read",
    }
    doc = snapshot_doc(sources=[source_doc(SOURCE_ID, [WRITE_KEY], plan_id="tp_rich")])
    doc["trackingPlans"] = [plan, plan_doc("tp_other")]
    doc["sources"][0]["trackingPlan"]["shadow"] = {"id": "tp_rich", "version": 2}
    return doc


def checked(content: bytes) -> bytes | str:
    """check_document's compact form, or its error."""
    try:
        return check_document(Fetched(content, ""))[0]
    except SnapshotError as exc:
        return str(exc)


def decoded_whole(content: bytes) -> bytes | str:
    """What checking the whole decoded document gives (the path for YAML, and for JSON before
    rules were left undecoded)."""
    try:
        return compact_snapshot(orjson.loads(content))
    except orjson.JSONDecodeError:
        return "not JSON"
    except SnapshotError as exc:
        return str(exc)


def test_json_rules_left_undecoded_check_alike() -> None:
    for doc in (rich_doc(), large_doc(50)):
        content = orjson.dumps(doc)
        fast = compact_snapshot_of_json(content)  # each distinct rule decoded once
        assert fast is not None
        assert fast == decoded_whole(content) == checked(content)


def _with(doc: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> bytes:
    change(doc)
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["trackingPlans"][0]["events"][1].update(eventType="alias"),
        lambda d: d["trackingPlans"][0]["events"][0].update(rules=3),
        lambda d: d["trackingPlans"][0]["events"][0]["otherVersions"].update({"1": {}}),
        lambda d: d["trackingPlans"][0].update(events={"not": "a list"}),
        lambda d: d["trackingPlans"][0]["pastVersions"][1].update(version=7),
        lambda d: d["trackingPlans"][0].update(commonRule={"rules": []}),
        lambda d: d["sources"][0]["trackingPlan"]["shadow"].update(version=9),
        lambda d: d.update(trackingPlans={}),
    ],
)
def test_malformed_json_documents_get_the_same_errors(
    change: Callable[[dict[str, Any]], None],
) -> None:
    content = _with(rich_doc(), change)
    error = checked(content)
    assert isinstance(error, str)
    assert error == decoded_whole(content)


def test_values_orjson_refuses_get_the_same_errors() -> None:
    # msgspec takes integers beyond 64 bits, orjson reads them as floats: the document is then
    # checked whole, as before (the version is not an integer).
    content = orjson.dumps(rich_doc()).replace(b'"version":3', b'"version":' + b"9" * 30, 1)
    assert compact_snapshot_of_json(content) is None
    assert (
        checked(content) == decoded_whole(content) == "trackingPlans[0].version: must be an integer"
    )
    broken = checked(b'{"revision": "r", "trackingPlans": [')
    assert isinstance(broken, str)
    assert broken.startswith("snapshot is not valid JSON")


# --- replaced snapshots: released piecewise once nothing uses them ---------------------------


async def test_replaced_snapshot_is_kept_while_in_use_then_released(tmp_path: Path) -> None:
    plans_file = tmp_path / "plans.json"
    doc = snapshot_doc(sources=[source_doc(SOURCE_ID, [WRITE_KEY], plan_id="tp_1")])
    doc["trackingPlans"] = [plan_doc()]
    write_snapshot(plans_file, doc)
    cache = PlanCache(
        provider_from_source(f"file:{plans_file}"),
        cache_dir=tmp_path / "cache",
        refresh_interval_s=60,
        metrics=Metrics(),
    )
    try:
        assert await cache.refresh_once() == "updated"
        in_use = cache.current  # as a request in flight holds it
        assert in_use is not None
        plans = in_use.tracking_plans
        write_snapshot(plans_file, {**doc, "revision": "r2"})
        assert await cache.refresh_once() == "updated"
        assert cache.current is not None
        assert cache.current.revision == "r2"
        await asyncio.sleep(0.5)  # several release polls
        # Still whole for whoever uses it.
        source = in_use.source_for_key(WRITE_KEY)
        assert source is not None
        held_plan = in_use.plan_for(source)
        assert held_plan is not None
        assert held_plan.id == "tp_1"
        del in_use, source, held_plan
        # Once nothing refers to it, it is emptied (and so freed) from the background thread.
        for _ in range(MAX_POLLS):
            if not plans:
                break
            await asyncio.sleep(POLL_STEP_S)
        assert plans == {}
        assert cache.current.tracking_plans["tp_1"].id == "tp_1"  # the new one is untouched
    finally:
        await cache.stop()
