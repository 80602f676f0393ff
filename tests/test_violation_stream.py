"""The violation stream (``kafka.violations_topic``) end to end: a "Violation Generated" record
per violation, bounded per event, beside the events' own records; the native API's samples and
counts read back from it; off by default."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.publish.violations import MAX_PER_EVENT, MAX_VALUE_CHARS
from tests.conftest import (
    ADMIN_TOKEN,
    Admin,
    GatewayFactory,
    amount_rule,
    basic_auth,
    consume_all,
    headers_of,
    ingest_url,
    until_enforced,
)

SEGMENT = "/tracking-plans"
RULE = amount_rule("number")
RULE["properties"]["properties"]["properties"]["tags"] = {
    "type": "array",
    "items": {"type": "string"},
}


async def connected_plan(api: Admin) -> tuple[str, str, str]:
    """(plan id, source id, write key): a Segment-made plan with RULE for Order Completed."""
    created = await api.ok("POST", SEGMENT, {"name": "Streamed", "type": "LIVE"})
    plan_id = created["data"]["trackingPlan"]["id"]
    rule = {"key": "Order Completed", "type": "TRACK", "version": 1, "jsonSchema": RULE}
    await api.ok("PUT", f"{SEGMENT}/{plan_id}/rules", {"rules": [rule]})
    source = await api.source("Web")
    await api.ok("POST", f"{SEGMENT}/{plan_id}/sources", {"sourceId": source["id"]})
    key = source["writeKeys"][0]
    await until_enforced(api, key, order("probe", "x"), violated=True)
    return plan_id, source["id"], key


def order(message_id: str, amount: Any, **more: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "messageId": message_id,
        "properties": {"amount": amount, **more},
    }


async def admin_api(make_gateway: GatewayFactory, **kafka: Any) -> Admin:
    gw = await make_gateway(
        admin={"tokens": (ADMIN_TOKEN,)},
        plans={"source": "local", "refresh_interval_s": 0.2},
        kafka=kafka,
    )
    return Admin(gw, aiohttp.ClientSession())


@pytest.fixture
async def api(make_gateway: GatewayFactory) -> AsyncIterator[Admin]:
    admin = await admin_api(make_gateway, violations_topic=f"violations-{uuid.uuid4().hex[:8]}")
    try:
        yield admin
    finally:
        await admin.http.close()


async def test_violations_streamed_and_sampled(api: Admin) -> None:
    plan_id, source_id, key = await connected_plan(api)
    events = [
        order("bad-1", "x"),
        order("bad-2", "y"),
        order("bad-3", "z"),
        order("ok", 5),
        {"type": "track", "event": "Cart Viewed", "userId": "u2", "messageId": "cart"},
        order("many", 5, tags=list(range(50))),  # 50 violations: 20 streamed
        order("long", "x" * 10_000),
    ]
    async with api.http.post(
        ingest_url(api.gw, "/v1/batch"), json={"batch": events}, headers=basic_auth(key)
    ) as resp:
        assert resp.status == 200
    kafka = api.gw.settings.kafka
    streamed = await consume_all(kafka.bootstrap_servers, kafka.violations_topic)
    values = [orjson.loads(r.value) for r in streamed]
    assert Counter(v["messageId"] for v in values) == {
        "bad-1": 1,
        "bad-2": 1,
        "bad-3": 1,
        "cart": 1,
        "many": MAX_PER_EVENT,
        "long": 1,
    }
    [first] = [v for v in values if v["messageId"] == "bad-1"]
    assert first == {
        "type": "Violation Generated",
        "sourceId": source_id,
        "trackingPlanId": plan_id,
        "trackingPlanVersion": first["trackingPlanVersion"],
        "eventType": "track",
        "eventName": "Order Completed",
        "event": "Order Completed",
        "ruleVersion": "1",
        "messageId": "bad-1",
        "receivedAt": first["receivedAt"],
        "outcome": "forwarded",  # the connection's default policies forward violations
        "reason": None,
        "violationsTotal": 1,
        "violationType": "Datatype-Mismatch",
        "message": "must be number",
        "property": "amount",
        "instancePath": "/properties/amount",
        "schemaPath": first["schemaPath"],
        "value": '"x"',
    }
    assert isinstance(first["trackingPlanVersion"], int)
    headers = headers_of(streamed[0])
    assert headers["source-id"] == source_id
    assert streamed[0].key == source_id.encode()
    [cart] = [v for v in values if v["messageId"] == "cart"]
    assert (cart["event"], cart["eventName"], cart["violationType"]) == (
        "(unplanned)",
        "Cart Viewed",
        "Unplanned-Event",
    )
    assert {v["violationsTotal"] for v in values if v["messageId"] == "many"} == {50}
    [long] = [v for v in values if v["messageId"] == "long"]
    assert len(long["value"]) == MAX_VALUE_CHARS + 1  # cut, with a mark
    # The events themselves are where they always are.
    forwarded = await consume_all(kafka.bootstrap_servers, kafka.events_topic)
    assert len(forwarded) == len(events)

    samples = (await api.ok("GET", "/api/latest/violations/samples"))["data"]
    assert samples["complete"] is True
    assert samples["scanned"] == len(values)
    counts = {
        (g["sourceId"], g["event"], g["violationType"]): g["count"] for g in samples["groups"]
    }
    assert counts == {
        (source_id, "Order Completed", "Datatype-Mismatch"): 4 + MAX_PER_EVENT,
        (source_id, "(unplanned)", "Unplanned-Event"): 1,
    }
    top = samples["groups"][0]
    assert len(top["samples"]) == 5
    assert top["samples"][0]["messageId"] == "long"  # newest first

    narrowed = await api.ok(
        "GET",
        f"/api/latest/violations/samples?sourceId={source_id}&event=Cart%20Viewed&perGroup=1",
    )
    [group] = narrowed["data"]["groups"]
    assert (group["count"], group["samples"][0]["messageId"]) == (1, "cart")
    by_type = await api.ok("GET", "/api/latest/violations/samples?type=Required-Missing")
    assert by_type["data"]["groups"] == []
    status, _ = await api("GET", "/api/latest/violations/samples?windowMinutes=0")
    assert status == 400


async def test_the_stream_is_off_by_default(make_gateway: GatewayFactory) -> None:
    api = await admin_api(make_gateway)
    try:
        status, answer = await api("GET", "/api/latest/violations/samples")
        assert (status, answer["result"]) == (404, "error")
        assert "kafka.violations_topic" in answer["errorDetails"]
    finally:
        await api.http.close()
