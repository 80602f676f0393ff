"""Data Catalog API: tracking plans, plan events, connections — on SQLite and PostgreSQL.

Ends with the whole path: a plan built through the API, a source connected to it, and an event
sent through ingest showing the expected violations in Kafka.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.conftest import Admin, basic_auth, consume, ingest_url

PLANS = "/catalog/tracking-plans"

ORDER_RULES = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"amount": {"type": "number"}},
            "required": ["amount"],
            "additionalProperties": False,
        }
    },
}
IDENTIFY_RULES = {
    "type": "object",
    "properties": {
        "traits": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    },
}


PLAN_FIELDS = {
    "id",
    "name",
    "description",
    "version",
    "workspaceId",
    "creationType",
    "createdAt",
    "updatedAt",
}


async def test_plan_lifecycle_and_history(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Product Ordered Plan", "description": "Orders"})
    assert set(plan) == PLAN_FIELDS
    assert plan["id"].startswith("tp_")
    assert (plan["version"], plan["creationType"]) == (1, "BackendAPI")
    plan_id = plan["id"]

    v2 = await api.ok("PUT", f"{PLANS}/{plan_id}", {"description": "All orders"})
    assert (v2["version"], v2["description"], v2["name"]) == (2, "All orders", plan["name"])
    v3 = await api.ok(
        "PATCH",
        f"{PLANS}/{plan_id}/events",
        {"name": "Order Completed", "description": "Paid", "rules": ORDER_RULES},
    )
    assert v3["version"] == 3
    v4 = await api.ok(
        "PATCH",
        f"{PLANS}/{plan_id}/events",
        {"name": "", "eventType": "identify", "rules": IDENTIFY_RULES},
    )
    assert v4["version"] == 4
    changed = {**ORDER_RULES, "required": ["properties"]}
    v5 = await api.ok(
        "PATCH", f"{PLANS}/{plan_id}/events", {"name": "Order Completed", "rules": changed}
    )
    assert v5["version"] == 5
    events = await api.ok("GET", f"{PLANS}/{plan_id}/events")
    identify_id = next(e["id"] for e in events["data"] if e["eventType"] == "identify")
    await api.ok("DELETE", f"{PLANS}/{plan_id}/events/{identify_id}")
    v7 = await api.ok("PUT", f"{PLANS}/{plan_id}", {"name": "Orders Plan"})
    assert v7["version"] == 7

    # Every historical version reads back exactly as it was.
    history = {n: await api.ok("GET", f"{PLANS}/{plan_id}?version={n}") for n in range(1, 8)}
    assert [h["version"] for h in history.values()] == list(range(1, 8))
    assert history[1]["events"] == []
    assert history[1]["description"] == "Orders"
    assert history[2]["description"] == "All orders"
    assert history[2]["events"] == []
    [order3] = history[3]["events"]
    assert (order3["name"], order3["rules"]) == ("Order Completed", ORDER_RULES)
    assert order3["additionalProperties"] is False
    assert [e["eventType"] for e in history[4]["events"]] == ["track", "identify"]
    assert history[5]["events"][0]["rules"] == changed
    assert [e["eventType"] for e in history[6]["events"]] == ["track"]
    assert history[7]["name"] == "Orders Plan"
    assert await api.ok("GET", f"{PLANS}/{plan_id}") == history[7]
    for n, earlier in history.items():  # reading again changes nothing
        assert await api.ok("GET", f"{PLANS}/{plan_id}?version={n}") == earlier

    listing = await api.ok("GET", PLANS)
    assert [p["id"] for p in listing["trackingPlans"]] == [plan_id]
    assert set(listing["trackingPlans"][0]) == PLAN_FIELDS

    deleted = await api.ok("DELETE", f"{PLANS}/{plan_id}")
    assert deleted["name"] == "Orders Plan"
    status, _ = await api("GET", f"{PLANS}/{plan_id}")
    assert status == 404
    assert (await api.ok("GET", PLANS))["trackingPlans"] == []


async def test_plan_events_listing_and_single(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Paging Plan"})
    for i in range(53):
        await api.ok(
            "PATCH",
            f"{PLANS}/{plan['id']}/events",
            {"name": f"Event {i:02d}", "rules": ORDER_RULES},
        )
    first = await api.ok("GET", f"{PLANS}/{plan['id']}/events")
    assert (first["total"], first["currentPage"], first["pageSize"]) == (53, 1, 50)
    assert len(first["data"]) == 50
    assert "rules" not in first["data"][0]
    assert first["data"][0]["identitySection"] == "properties"
    second = await api.ok("GET", f"{PLANS}/{plan['id']}/events?page=2")
    assert [e["name"] for e in second["data"]] == ["Event 50", "Event 51", "Event 52"]
    event = await api.ok("GET", f"{PLANS}/{plan['id']}/events/{first['data'][0]['id']}")
    assert event["id"].startswith("ev_")
    assert (event["name"], event["eventType"], event["rules"]) == ("Event 00", "track", ORDER_RULES)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", PLANS, {}, 400),
        ("POST", PLANS, {"name": "ab"}, 400),
        ("POST", PLANS, {"name": "1abc"}, 400),
        ("POST", PLANS, {"name": "Bad/Name"}, 400),
        ("POST", PLANS, {"name": "x" * 66}, 400),
        ("POST", PLANS, {"name": "Good", "description": 3}, 400),
        ("GET", f"{PLANS}/tp_missing", None, 404),
        ("GET", f"{PLANS}/{{plan}}?version=abc", None, 400),
        ("GET", f"{PLANS}/{{plan}}?version=99", None, 404),
        ("PUT", f"{PLANS}/{{plan}}", {}, 400),
        ("PUT", f"{PLANS}/{{plan}}", {"name": "no"}, 400),
        ("PUT", f"{PLANS}/tp_missing", {"name": "Valid"}, 404),
        ("DELETE", f"{PLANS}/tp_missing", None, 404),
        ("PATCH", f"{PLANS}/{{plan}}/events", {"name": "Order Completed"}, 400),
        ("PATCH", f"{PLANS}/{{plan}}/events", {"name": "Order Completed", "rules": {}}, 400),
        ("PATCH", f"{PLANS}/{{plan}}/events", {"name": "x", "rules": ORDER_RULES}, 400),
        (
            "PATCH",
            f"{PLANS}/{{plan}}/events",
            {"name": "Thing", "eventType": "alias", "rules": ORDER_RULES},
            400,
        ),
        (
            "PATCH",
            f"{PLANS}/{{plan}}/events",
            {"name": "Thing", "eventType": "page", "rules": ORDER_RULES},
            400,
        ),
        (
            "PATCH",
            f"{PLANS}/{{plan}}/events",
            {"name": "Thing", "rules": ORDER_RULES, "identitySection": "body"},
            400,
        ),
        (
            "PATCH",
            f"{PLANS}/{{plan}}/events",
            {"name": "Thing", "rules": ORDER_RULES, "categoryId": "cat_missing"},
            400,
        ),
        ("PATCH", f"{PLANS}/tp_missing/events", {"name": "Thing", "rules": ORDER_RULES}, 404),
        ("GET", f"{PLANS}/{{plan}}/events?page=0", None, 400),
        ("GET", f"{PLANS}/{{plan}}/events?page=51", None, 400),
        ("GET", f"{PLANS}/{{plan}}/events/ev_missing", None, 404),
        ("DELETE", f"{PLANS}/{{plan}}/events/ev_missing", None, 404),
    ],
)
async def test_plan_errors(api: Admin, method: str, path: str, body: Any, status: int) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Errors Plan"})
    got, document = await api(method, path.replace("{plan}", plan["id"]), body)
    assert got == status, document
    assert set(document) == {"code", "message"}


async def test_event_type_is_immutable(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Types Plan"})
    await api.source("unused")
    await api.ok(
        "PATCH", f"{PLANS}/{plan['id']}/events", {"name": "Signed Up", "rules": ORDER_RULES}
    )
    other = await api.ok("POST", PLANS, {"name": "Other Plan"})
    # The same event name with another type is refused in any plan.
    status, _ = await api(
        "PATCH",
        f"{PLANS}/{other['id']}/events",
        {"name": "Signed Up", "eventType": "identify", "rules": ORDER_RULES},
    )
    assert status == 400
    # ...while the same track event is shared by both plans.
    await api.ok(
        "PATCH", f"{PLANS}/{other['id']}/events", {"name": "Signed Up", "rules": IDENTIFY_RULES}
    )
    a = await api.ok("GET", f"{PLANS}/{plan['id']}/events")
    b = await api.ok("GET", f"{PLANS}/{other['id']}/events")
    assert a["data"][0]["id"] == b["data"][0]["id"]


CONFIG = {
    "track": {"allowUnplannedEvents": "false", "anyOtherViolation": "drop"},
    "global": {"unplannedProperties": "forward", "propagateValidationErrors": True},
}


async def test_connections(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Connected Plan"})
    other = await api.ok("POST", PLANS, {"name": "Second Plan"})
    source = await api.source("Web")
    path = f"{PLANS}/{plan['id']}/sources/{source['id']}"
    created = await api.ok("POST", path, {"config": CONFIG})
    assert created == {"sourceId": source["id"], "trackingPlanId": plan["id"], "config": CONFIG}
    listing = await api.ok("GET", f"{PLANS}/{plan['id']}/sources")
    assert listing == {"connections": [created]}

    status, body = await api("POST", path, {"config": CONFIG})
    assert (status, body["message"]) == (400, "source already connected to tracking plan")
    status, _ = await api(
        "POST", f"{PLANS}/{other['id']}/sources/{source['id']}", {"config": CONFIG}
    )
    assert status == 400

    new_config = {"track": {"anyOtherViolation": "forward"}}
    assert await api.ok("PUT", path, {"config": new_config}) == {"config": new_config}
    status, _ = await api(
        "PUT", f"{PLANS}/{other['id']}/sources/{source['id']}", {"config": CONFIG}
    )
    assert status == 400  # not connected to that plan

    assert await api.ok("DELETE", path) is None
    status, body = await api("DELETE", path)
    assert (status, body["message"]) == (400, "source already disconnected from tracking plan")
    assert await api.ok("GET", f"{PLANS}/{plan['id']}/sources") == {"connections": []}

    # Deleting a plan removes its connections.
    await api.ok("POST", path, {"config": CONFIG})
    await api.ok("DELETE", f"{PLANS}/{plan['id']}")
    await api.ok("POST", f"{PLANS}/{other['id']}/sources/{source['id']}", {"config": CONFIG})


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"config": {}},
        {"config": "drop"},
        {"config": {"track": {}}},
        {"config": {"alias": {"anyOtherViolation": "drop"}}},
        {"config": {"track": {"anyOtherViolation": "omit"}}},
        {"config": {"track": {"unplannedProperties": "keep"}}},
        {"config": {"page": {"allowUnplannedEvents": "false"}}},
        {"config": {"global": {"propagateValidationErrors": "maybe"}}},
        {"config": {"global": {"somethingElse": "true"}}},
    ],
)
async def test_connection_config_is_validated(api: Admin, body: dict[str, Any]) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Config Plan"})
    source = await api.source("Web")
    status, document = await api("POST", f"{PLANS}/{plan['id']}/sources/{source['id']}", body)
    assert status == 400, document


async def test_connection_unknown_plan_or_source(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Lonely Plan"})
    source = await api.source("Web")
    status, _ = await api("POST", f"{PLANS}/tp_missing/sources/{source['id']}", {"config": CONFIG})
    assert status == 404
    status, _ = await api("POST", f"{PLANS}/{plan['id']}/sources/src_missing", {"config": CONFIG})
    assert status == 400
    status, _ = await api("DELETE", f"{PLANS}/{plan['id']}/sources/src_missing")
    assert status == 400
    status, _ = await api("GET", f"{PLANS}/tp_missing/sources")
    assert status == 404


async def test_catalog_to_enforcement_end_to_end(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Checkout Plan"})
    await api.ok(
        "PATCH", f"{PLANS}/{plan['id']}/events", {"name": "Order Completed", "rules": ORDER_RULES}
    )
    source = await api.source("Shop")
    await api.ok("POST", f"{PLANS}/{plan['id']}/sources/{source['id']}", {"config": CONFIG})
    key = source["writeKeys"][0]
    gw, http = api.gw, api.http
    kafka = gw.settings.kafka

    # The data plane picks the catalog change up within the refresh interval.
    async with asyncio.timeout(15):
        while True:
            async with http.post(
                ingest_url(gw, "/v1/validate"),
                json={
                    "batch": [
                        {
                            "type": "track",
                            "userId": "u",
                            "event": "Order Completed",
                            "properties": {},
                        }
                    ]
                },
                headers=basic_auth(key),
            ) as resp:
                if resp.status == 200 and (await resp.json())["quarantined"] == 1:
                    break
            await asyncio.sleep(0.1)

    batch = [
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"amount": 9}},
        {
            "type": "track",
            "userId": "u2",
            "event": "Order Completed",
            "properties": {"amount": "9"},
        },
        {"type": "track", "userId": "u3", "event": "Order Refunded"},
    ]
    async with http.post(
        ingest_url(gw, "/v1/batch"), json={"batch": batch}, headers=basic_auth(key)
    ) as resp:
        assert resp.status == 200

    [forwarded] = await consume(kafka.bootstrap_servers, kafka.events_topic, 1)
    value = orjson.loads(forwarded.value)
    assert value["userId"] == "u1"
    assert value["context"]["trackingPlanId"] == plan["id"]
    assert value["context"]["trackingPlanVersion"] == 2
    assert value["context"]["violationErrors"] == []

    quarantined = {
        orjson.loads(r.value)["event"]["userId"]: orjson.loads(r.value)
        for r in await consume(kafka.bootstrap_servers, kafka.quarantine_topic, 2)
    }
    assert quarantined["u2"]["reason"] == "violation"
    assert quarantined["u2"]["trackingPlanId"] == plan["id"]
    assert quarantined["u2"]["violations"] == [
        {
            "type": "Datatype-Mismatch",
            "message": "must be number",
            "property": "amount",
            "meta": {
                "instancePath": "/properties/amount",
                "schemaPath": "#/properties/properties/properties/amount/type",
            },
        }
    ]
    assert quarantined["u3"]["reason"] == "unplanned-event"
    assert quarantined["u3"]["violations"][0]["message"] == "no schema for event: Order Refunded"


async def test_catalog_answers_at_rudderstacks_v2_base_path_too(api: Admin) -> None:
    # Scripts written for https://api.rudderstack.com/v2 work with only the host changed.
    plan = await api.ok("POST", "/v2/catalog/tracking-plans", {"name": "Base Path Plan"})
    await api.ok(
        "PATCH",
        f"/v2/catalog/tracking-plans/{plan['id']}/events",
        {"name": "Order Completed", "rules": {"type": "object"}},
    )
    at_root = await api.ok("GET", f"/catalog/tracking-plans/{plan['id']}")
    at_v2 = await api.ok("GET", f"/v2/catalog/tracking-plans/{plan['id']}")
    assert at_root == at_v2
    assert (at_v2["version"], [e["name"] for e in at_v2["events"]]) == (2, ["Order Completed"])
    event = await api.ok("POST", "/catalog/events", {"name": "Cart Viewed"})
    assert (await api.ok("GET", f"/v2/catalog/events/{event['id']}"))["name"] == "Cart Viewed"
    status, body = await api("GET", "/v2/catalog/tracking-plans/tp_missing")
    assert (status, body["code"]) == (404, "not_found")
    status, _ = await api("GET", "/v2/sources")  # only the catalog has the alias
    assert status == 404
