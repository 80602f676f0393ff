"""A plan built only through the Segment API, enforced end to end through Kafka: rule versions
(an event pinned to version 1 and one pinned to version 2 of the same event get each version's
verdict; an unknown version is a violation saying so; the connection's default version), and a
COMMON rule checked on track and identify events (SQLite and PostgreSQL catalogs)."""

from __future__ import annotations

from typing import Any

import orjson

from tests.conftest import (
    Admin,
    amount_rule,
    basic_auth,
    consume_all,
    ingest_url,
    metric_value,
    until_enforced,
)

SEGMENT = "/tracking-plans"


COMMON = {
    "type": "object",
    "properties": {
        "context": {
            "type": "object",
            "properties": {
                "app": {
                    "type": "object",
                    "properties": {"version": {"type": "string"}},
                    "required": ["version"],
                }
            },
            "required": ["app"],
        }
    },
    "required": ["context"],
}
APP = {"app": {"version": "2.4.0"}}


def order(user: str, amount: Any, version: Any = None, *, app: bool = True) -> dict[str, Any]:
    context: dict[str, Any] = dict(APP) if app else {}
    if version is not None:
        context["protocols"] = {"event_version": version}
    return {
        "type": "track",
        "userId": user,
        "event": "Order Completed",
        "properties": {"amount": amount},
        "context": context,
    }


EVENTS = [
    order("pinned-v1", 5, 1),  # v1 wants a number: valid
    order("pinned-v2", 5, 2),  # v2 wants a string: invalid
    order("pinned-v2-ok", "5", "2"),  # the version may be given as digits
    order("default", "5"),  # no version: the oldest, v1, wants a number
    order("pinned-v3", 5, 3),  # no such version
    order("no-app", 5, 1, app=False),  # the common rule wants context.app.version
    {"type": "identify", "userId": "identify-no-app", "traits": {}, "context": {"locale": "de"}},
    {"type": "identify", "userId": "identify-app", "traits": {}, "context": APP},
]


def kinds(violations: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(v["type"], v["property"]) for v in violations]


EXPECTED = {
    "pinned-v1": [],
    "pinned-v2": [("Datatype-Mismatch", "amount")],
    "pinned-v2-ok": [],
    "default": [("Datatype-Mismatch", "amount")],
    "pinned-v3": [("Unknown-Violation", "event_version")],
    "no-app": [("Required-Missing", "app")],
    "identify-no-app": [("Required-Missing", "app")],
    "identify-app": [],
}


async def validate(api: Admin, key: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async with api.http.post(
        ingest_url(api.gw, "/v1/validate"), json={"batch": events}, headers=basic_auth(key)
    ) as resp:
        assert resp.status == 200
        report = await resp.json()
    results: list[dict[str, Any]] = report["results"]
    return results


async def test_versions_and_common_rule_end_to_end(api: Admin) -> None:
    created = await api.ok("POST", SEGMENT, {"name": "Versioned Plan", "type": "LIVE"})
    plan_id = created["data"]["trackingPlan"]["id"]
    rules = [
        {
            "key": "Order Completed",
            "type": "TRACK",
            "version": 1,
            "jsonSchema": amount_rule("number"),
        },
        {
            "key": "Order Completed",
            "type": "TRACK",
            "version": 2,
            "jsonSchema": amount_rule("string"),
        },
        {"key": "", "type": "COMMON", "version": 1, "jsonSchema": COMMON},
    ]
    await api.ok("PATCH", f"{SEGMENT}/{plan_id}/rules", {"rules": rules})
    source = await api.source("Checkout")
    await api.ok("POST", f"{SEGMENT}/{plan_id}/sources", {"sourceId": source["id"]})
    key = source["writeKeys"][0]

    # The data plane picks the plan up within its refresh interval.
    await until_enforced(api, key, order("probe", 5, 2), violated=True)

    # A dry run and the real thing agree.
    results = await validate(api, key, EVENTS)
    assert [kinds(r["violations"]) for r in results] == list(EXPECTED.values())
    [unknown] = results[4]["violations"]
    assert unknown["message"] == "no version 3 of the rule for Order Completed: the plan has 1, 2"

    async with api.http.post(
        ingest_url(api.gw, "/v1/batch"), json={"batch": EVENTS}, headers=basic_auth(key)
    ) as resp:
        assert resp.status == 200
    kafka = api.gw.settings.kafka
    records = [
        orjson.loads(r.value)
        for r in await consume_all(kafka.bootstrap_servers, kafka.events_topic)
    ]
    stamped = {
        r["userId"]: kinds(r["context"]["violationErrors"])
        for r in records
        if r.get("context", {}).get("trackingPlanId") == plan_id
    }
    assert stamped == EXPECTED  # the default settings forward every event, stamped

    async with api.http.get(ingest_url(api.gw, "/metrics")) as resp:
        text = await resp.text()
    assert metric_value(text, "gateway_violations_total", rule_version="2") == 1
    # v1: "default" and "no-app" (the common rule's violation, on an event checked against v1).
    assert metric_value(text, "gateway_violations_total", rule_version="1") == 2
    # No rule of its own checked: the unknown version, and the identify event with no rule.
    assert metric_value(text, "gateway_violations_total", rule_version="") == 2

    # The connection may default to the latest version instead (RudderStack's connection API).
    await api.ok(
        "PUT",
        f"/catalog/tracking-plans/{plan_id}/sources/{source['id']}",
        {"config": {"track": {"defaultRuleVersion": "latest"}}},
    )
    await until_enforced(api, key, order("default", "5"), violated=False)
    [latest] = await validate(api, key, [order("default", 5)])
    assert kinds(latest["violations"]) == [("Datatype-Mismatch", "amount")]
