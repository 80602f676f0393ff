"""Admin writes cannot break the plan snapshot (issue case 8).

A rule that cannot be compiled, or nests too deep to be written into the snapshot, is refused
at write time on every path that stores rules; and if the snapshot still fails to build, the
admin side says so (readiness, a metric, a log line) while ingest keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from sqlalchemy import Text, event, literal, update

from gateway.catalog import rules as rules_module
from gateway.catalog.rules import MAX_RULE_DEPTH
from gateway.catalog.store import schema
from gateway.config import Role
from gateway.errors import BadRequest
from gateway.plans.providers import SNAPSHOT_PATH
from gateway.server import READY_CACHE_S, Gateway
from tests.conftest import (
    ADMIN_BEARER,
    ADMIN_TOKEN,
    Admin,
    GatewayFactory,
    basic_auth,
    ingest_url,
    metric_value,
)

PLANS = "/catalog/tracking-plans"


def nested(levels: int) -> dict[str, Any]:
    """A valid JSON schema ``levels`` objects deep: {"not": {"not": ... {} }}."""
    rule: dict[str, Any] = {}
    for _ in range(levels - 1):
        rule = {"not": rule}
    return rule


def deep_value(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


async def track(http: aiohttp.ClientSession, gw: Gateway, key: str) -> int:
    async with http.post(
        ingest_url(gw, "/v1/track"),
        data=orjson.dumps({"userId": "u1", "event": "Probe"}),
        headers=basic_auth(key),
    ) as resp:
        return resp.status


async def until_status(
    http: aiohttp.ClientSession, gw: Gateway, key: str, wanted: int, timeout_s: float = 20
) -> None:
    status = None
    try:
        async with asyncio.timeout(timeout_s):
            while (status := await track(http, gw, key)) != wanted:
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"write key still answered {status}, not {wanted}, after {timeout_s}s")


async def test_a_rule_too_deep_for_the_snapshot_is_refused_and_deleted_keys_stop_working(
    api: Admin,
) -> None:
    source = await api.source("Deep Source")
    key = source["writeKeys"][0]
    async with aiohttp.ClientSession() as http:
        await until_status(http, api.gw, key, 200)
        plan = await api.ok("POST", PLANS, {"name": "Deep Plan"})

        status, body = await api(
            "PATCH",
            f"{PLANS}/{plan['id']}/events",
            {"name": "Deep Event", "eventType": "track", "rules": nested(250)},
        )
        assert status == 400, body
        assert body["code"] == "bad_request"
        assert f"deeper than {MAX_RULE_DEPTH}" in body["message"]

        status, _ = await api("GET", SNAPSHOT_PATH)
        assert status == 200
        await api.ok("DELETE", f"/api/latest/sources/{source['id']}")
        await until_status(http, api.gw, key, 401)


async def test_rules_at_the_depth_limit_are_stored_and_served(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Limit Plan"})
    await api.ok(
        "PATCH",
        f"{PLANS}/{plan['id']}/events",
        {"name": "Limit Event", "eventType": "track", "rules": nested(MAX_RULE_DEPTH)},
    )
    status, body = await api(
        "PATCH",
        f"{PLANS}/{plan['id']}/events",
        {"name": "Limit Event", "eventType": "track", "rules": nested(MAX_RULE_DEPTH + 1)},
    )
    assert status == 400, body
    status, snapshot = await api("GET", SNAPSHOT_PATH)
    assert status == 200
    (served,) = [p for p in snapshot["trackingPlans"] if p["id"] == plan["id"]]
    assert served["events"][0]["rules"] == nested(MAX_RULE_DEPTH)


async def test_a_rule_that_does_not_compile_is_refused(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Broken Plan"})
    for rules in (
        {"type": "not-a-type"},
        {"properties": {"properties": {"type": "object", "minProperties": -1}}},
        {"$ref": "https://example.com/remote.json"},
    ):
        status, body = await api(
            "PATCH",
            f"{PLANS}/{plan['id']}/events",
            {"name": "Broken Event", "eventType": "track", "rules": rules},
        )
        assert status == 400, (rules, body)
        assert body["code"] == "bad_request"
        assert body["message"].startswith("rules: "), body
    document = await api.ok("GET", f"{PLANS}/{plan['id']}")
    assert document["events"] == []
    assert document["version"] == 1


async def test_every_write_path_that_feeds_rules_refuses_what_cannot_be_served(
    api: Admin,
) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Paths Plan"})
    too_deep = deep_value(MAX_RULE_DEPTH + 5)
    refused = [
        # Properties by name, created with the event (POST).
        (
            "POST",
            f"{PLANS}/{plan['id']}/events",
            {
                "name": "Paths Event",
                "eventType": "track",
                "properties": [{"name": "deep", "type": "array", "propConfig": {"enum": too_deep}}],
            },
        ),
        (
            "POST",
            f"{PLANS}/{plan['id']}/events",
            {
                "name": "Paths Event",
                "eventType": "track",
                "properties": [{"name": "bad", "type": "string", "propConfig": {"pattern": "("}}],
            },
        ),
        # Catalog properties and custom types, whose rules are inlined into events.
        ("POST", "/catalog/properties", prop("deep", "array", {"enum": too_deep})),
        ("POST", "/catalog/properties", prop("bad", "string", {"pattern": "("})),
        ("POST", "/catalog/custom-types", custom_type("DeepType", {"enum": too_deep})),
        ("POST", "/catalog/custom-types", custom_type("BadType", {"pattern": "("})),
    ]
    for method, path, body in refused:
        status, answer = await api(method, path, body)
        assert status == 400, (path, body, answer)
        assert answer["code"] == "bad_request"

    # Updates are checked too.
    fine = await api.ok("POST", "/catalog/properties", prop("fine", "string", {}))
    status, _ = await api(
        "PUT", f"/catalog/properties/{fine['id']}", {"propConfig": {"pattern": "("}}
    )
    assert status == 400
    kind = await api.ok("POST", "/catalog/custom-types", custom_type("FineType", {}))
    status, _ = await api(
        "PUT", f"/catalog/custom-types/{kind['id']}", custom_type("FineType", {"enum": too_deep})
    )
    assert status == 400
    # PUT …/events (catalog ids) builds from those, which stayed servable: accepted.
    event = await api.ok("POST", "/catalog/events", {"name": "Ids Event", "eventType": "track"})
    await api.ok(
        "PUT",
        f"{PLANS}/{plan['id']}/events",
        {"id": event["id"], "properties": [{"id": fine["id"], "required": True}]},
    )
    status, _ = await api("GET", SNAPSHOT_PATH)
    assert status == 200


async def test_a_snapshot_that_fails_to_build_is_reported_while_ingest_keeps_serving(
    api: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    source = await api.source("Kept Source")
    key = source["writeKeys"][0]
    plan = await api.ok("POST", PLANS, {"name": "Corrupt Plan"})
    await api.ok(
        "PATCH",
        f"{PLANS}/{plan['id']}/events",
        {"name": "Corrupt Event", "eventType": "track", "rules": {"type": "object"}},
    )
    gw = api.gw
    admin = f"http://127.0.0.1:{gw.admin_port}"
    async with aiohttp.ClientSession() as http:
        await until_status(http, gw, key, 200)
        # What no admin write can store any more, written behind the API's back (an older
        # version, a manual fix in the database...): a rule too deep to be served. As raw
        # text, past the column's JSON type.
        assert gw.store is not None
        te = schema.tracking_plan_events
        async with gw.store.write() as conn:
            await conn.execute(
                update(te)
                .where(te.c.plan_id == plan["id"])
                .values(rules=literal(_deep_text(300), Text))
            )

        status, body = await api("GET", SNAPSHOT_PATH)
        assert status == 503, body
        assert body["code"] == "snapshot_unavailable"
        async with http.get(f"{admin}/health/ready") as resp:
            ready = await resp.json()
            assert resp.status == 503, ready
        assert ready["snapshotBuild"] is False
        async with http.get(f"{admin}/metrics") as resp:
            errors = metric_value(await resp.text(), "gateway_snapshot_build_errors_total")
        assert errors >= 1
        assert any(
            r.levelno == logging.ERROR and "snapshot" in r.getMessage() for r in caplog.records
        )
        # The data plane keeps serving the last good snapshot.
        async with http.get(ingest_url(gw, "/health/ready")) as resp:
            assert resp.status == 200
        assert await track(http, gw, key) == 200

        # Repaired through the API: served again, ready again.
        events = (await api.ok("GET", "/catalog/events"))["data"]
        (event,) = [e for e in events if e["name"] == "Corrupt Event"]
        await api.ok("DELETE", f"{PLANS}/{plan['id']}/events/{event['id']}")
        status, _ = await api("GET", SNAPSHOT_PATH)
        assert status == 200
        # Readiness is cached for a second: the repair shows once that has passed.
        async with asyncio.timeout(10):
            while True:
                async with http.get(f"{admin}/health/ready") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.2)


async def test_admin_readiness_queries_the_catalog_at_most_once_a_second(
    database_url: str, make_gateway: GatewayFactory
) -> None:
    gw = await make_gateway(
        Role.ADMIN, admin={"tokens": (ADMIN_TOKEN,)}, catalog={"database_url": database_url}
    )
    assert gw.store is not None
    state_queries = 0

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal state_queries
        # Store.state(): the query behind every snapshot check (and, after a write, the build).
        if "catalog_state.workspace_id" in statement:
            state_queries += 1

    event.listen(gw.store.engine.sync_engine, "before_cursor_execute", count)
    url = f"http://127.0.0.1:{gw.admin_port}/health/ready"
    async with aiohttp.ClientSession() as http:

        async def ready() -> None:
            async with http.get(url) as resp:
                assert resp.status == 200, await resp.text()

        await ready()
        async with gw.store.write():
            pass  # a catalog write: the next snapshot check rebuilds the snapshot
        state_queries = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(5):
            await asyncio.gather(*(ready() for _ in range(40)))
        elapsed = loop.time() - started
    assert state_queries <= 1 + int(elapsed / READY_CACHE_S), (state_queries, elapsed)


async def test_rules_are_compiled_before_the_write_transaction_takes_the_lock(
    tmp_path: Path, make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compiling a large rule takes a while: meanwhile other admin writes must not wait on
    SQLite's write lock (nor a PostgreSQL transaction stay open)."""
    db_file = tmp_path / "locks.db"
    gw = await make_gateway(
        Role.ADMIN,
        admin={"tokens": (ADMIN_TOKEN,)},
        catalog={"database_url": f"sqlite:///{db_file}"},
    )
    lock_held_while_compiling: list[bool] = []
    real_check = rules_module._servable_error

    def observed(rules: Any) -> str | None:
        # Runs where the compilation runs: can another connection take the write lock now?
        other = sqlite3.connect(db_file, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.rollback()
            lock_held_while_compiling.append(False)
        except sqlite3.OperationalError:
            lock_held_while_compiling.append(True)
        finally:
            other.close()
        return real_check(rules)

    monkeypatch.setattr(rules_module, "_servable_error", observed)
    async with aiohttp.ClientSession() as http:
        api = Admin(gw, http)
        plan = await api.ok("POST", PLANS, {"name": "Lock Plan"})
        events = f"{PLANS}/{plan['id']}/events"
        # PATCH: a new catalog event is inserted before the rules are stored.
        await api.ok(
            "PATCH",
            events,
            {"name": "Lock Event", "eventType": "track", "rules": {"type": "object"}},
        )
        status, _ = await api(
            "PATCH", events, {"name": "Lock Bad", "eventType": "track", "rules": {"type": "x"}}
        )
        assert status == 400
        # POST: a new catalog property is created before the rules are stored.
        await api.ok(
            "POST",
            events,
            {
                "name": "Lock Props",
                "eventType": "track",
                "properties": [{"name": "fresh", "type": "string", "propConfig": {}}],
            },
        )
        kind = await api.ok("POST", "/catalog/custom-types", custom_type("LockType", {}))
        await api.ok(
            "PUT", f"/catalog/custom-types/{kind['id']}", custom_type("LockType", {"minLength": 1})
        )
        fresh = (await api.ok("GET", "/catalog/properties"))["data"]
        catalog_event = await api.ok(
            "POST", "/catalog/events", {"name": "Lock Ids", "eventType": "track"}
        )
        await api.ok(
            "PUT",
            events,
            {"id": catalog_event["id"], "properties": [{"id": fresh[0]["id"], "required": True}]},
        )
        # Refused rules store nothing.
        document = await api.ok("GET", f"{PLANS}/{plan['id']}")
        assert sorted(e["name"] for e in document["events"]) == [
            "Lock Event",
            "Lock Ids",
            "Lock Props",
        ]
    assert len(lock_held_while_compiling) >= 6
    assert not any(lock_held_while_compiling), lock_held_while_compiling


async def test_rules_that_changed_after_the_check_are_checked_again() -> None:
    """The catalog changed between the check and the write: what is stored is checked too."""
    checked = {"type": "string"}
    await rules_module.recheck(dict(checked), checked)  # unchanged: not compiled again
    with pytest.raises(BadRequest, match=r"^rules: "):
        await rules_module.recheck({"type": "not-a-type"}, checked)


def prop(name: str, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "type": kind, "propConfig": config}


def custom_type(name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "type": "string", "config": config}


def _deep_text(levels: int) -> str:
    return "[" * levels + "]" * levels


async def test_bodies_nested_past_any_decoder_are_a_400_not_a_500(api: Admin) -> None:
    # Free-form fields (propConfig, a custom type's config) take any JSON value: one nested far
    # past what the decoder recurses into must be refused as a bad request, like any other.
    depth = 50_000
    deep = "[" * depth + "]" * depth
    prop = await api.ok("POST", "/catalog/properties", {"name": "shallow", "type": "string"})
    for method, path, body in (
        (
            "POST",
            "/catalog/properties",
            f'{{"name": "p", "type": "string", "propConfig": {{"a": {deep}}}}}',
        ),
        ("PUT", f"/catalog/properties/{prop['id']}", f'{{"propConfig": {{"a": {deep}}}}}'),
        (
            "POST",
            "/catalog/custom-types",
            f'{{"name": "Deep", "type": "string", "config": {{"a": {deep}}}}}',
        ),
        ("PUT", "/api/latest/sources", f'{{"name": {deep}}}'),
    ):
        url = f"http://127.0.0.1:{api.gw.admin_port}{path}"
        async with api.http.request(method, url, data=body.encode(), headers=ADMIN_BEARER) as resp:
            document = await resp.json()
            assert resp.status == 400, (path, resp.status, document)
