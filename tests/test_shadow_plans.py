"""Shadow plans end to end (SQLite and PostgreSQL catalogs, the real broker): a candidate plan
checked on live traffic without effect on forwarding — its metrics, the native API's summary
of what enforcing it would change — and promoted with one call."""

from __future__ import annotations

import asyncio
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
SHADOW_OUTCOMES = "gateway_shadow_outcomes_total"
CONFIG = {"track": {"anyOtherViolation": "drop", "unplannedProperties": "omit"}}


def strict_rule() -> dict[str, Any]:
    """The candidate: amount a number, currency required, no other property."""
    rule = amount_rule("number")
    properties = rule["properties"]["properties"]
    properties["properties"]["currency"] = {"type": "string"}
    properties["required"] = ["amount", "currency"]
    properties["additionalProperties"] = False
    return rule


async def segment_plan(api: Admin, name: str, rule: dict[str, Any]) -> str:
    created = await api.ok("POST", SEGMENT, {"name": name, "type": "LIVE"})
    plan_id: str = created["data"]["trackingPlan"]["id"]
    body = {
        "rules": [{"key": "Order Completed", "type": "TRACK", "version": 1, "jsonSchema": rule}]
    }
    await api.ok("PUT", f"{SEGMENT}/{plan_id}/rules", body)
    return plan_id


def order(n: int, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"u{n}",
        "messageId": f"m{n}",
        "properties": properties,
    }


EVENTS = [
    *(order(i, amount=5, currency="EUR") for i in range(6)),  # both pass
    order(6, amount=5),  # the candidate wants a currency
    order(7, amount=6),
    order(8, amount=5, currency="EUR", coupon="X"),  # the candidate would strip coupon
    order(9, amount="5", currency="EUR"),  # both drop
]


async def until_shadowed(api: Admin, key: str) -> None:
    """Wait for the data plane to have the source's shadow plan: an identify event of the
    source (probes count under ``identify``, apart from the tests' events) is judged by it."""
    async with asyncio.timeout(15):
        while not metric_value(await metrics(api), SHADOW_OUTCOMES, event="identify"):
            async with api.http.post(
                ingest_url(api.gw, "/v1/identify"),
                json={"userId": "probe", "traits": {}},
                headers=basic_auth(key),
            ) as resp:
                assert resp.status in (200, 401)  # 401: the new source is not there yet
            await asyncio.sleep(0.1)


async def metrics(api: Admin) -> str:
    async with api.http.get(ingest_url(api.gw, "/metrics")) as resp:
        return await resp.text()


async def test_shadow_plan_measured_summarised_and_promoted(api: Admin) -> None:
    current = await segment_plan(api, "Current", amount_rule("number"))
    candidate = await segment_plan(api, "Candidate", strict_rule())
    source = await api.source("Shop")
    source_id, key = source["id"], source["writeKeys"][0]
    await api.ok("POST", f"{SEGMENT}/{current}/sources", {"sourceId": source_id})
    await api.ok(
        "PUT", f"/catalog/tracking-plans/{current}/sources/{source_id}", {"config": CONFIG}
    )
    await until_enforced(api, key, order(99, amount="x"), violated=True, outcome="quarantined")

    shadow_path = f"/api/latest/sources/{source_id}/shadow"
    set_ = await api.ok("PUT", shadow_path, {"trackingPlanId": candidate})
    assert set_["data"]["shadows"] == [
        {
            "sourceId": source_id,
            "trackingPlanId": current,
            "shadow": {"trackingPlanId": candidate, "version": None},
            "summary": None,
        }
    ]
    # The data plane has the shadow once an event of the source is checked against it.
    async with asyncio.timeout(15):
        while not metric_value(
            await metrics(api), "gateway_shadow_outcomes_total", event="identify"
        ):
            async with api.http.post(
                ingest_url(api.gw, "/v1/identify"),
                json={"userId": "probe", "traits": {}},
                headers=basic_auth(key),
            ) as resp:
                assert resp.status == 200
            await asyncio.sleep(0.1)

    async with api.http.post(
        ingest_url(api.gw, "/v1/batch"), json={"batch": EVENTS}, headers=basic_auth(key)
    ) as resp:
        assert resp.status == 200

    # Enforcement follows the current plan only.
    kafka = api.gw.settings.kafka
    forwarded = [
        orjson.loads(r.value)
        for r in await consume_all(kafka.bootstrap_servers, kafka.events_topic)
        if orjson.loads(r.value)["type"] == "track"
    ]
    assert sorted(e["messageId"] for e in forwarded) == [f"m{i}" for i in range(9)]
    assert next(e for e in forwarded if e["messageId"] == "m8")["properties"]["coupon"] == "X"
    assert {e["context"]["trackingPlanId"] for e in forwarded} == {current}

    text = await metrics(api)

    def outcomes(would: str) -> float:
        return metric_value(
            text,
            SHADOW_OUTCOMES,
            source_id=source_id,
            tracking_plan_id=candidate,
            event="Order Completed",
            would=would,
        )

    def shadow_violations(kind: str) -> float:
        return metric_value(
            text, "gateway_shadow_violations_total", event="Order Completed", violation_type=kind
        )

    assert (outcomes("forward"), outcomes("strip"), outcomes("drop")) == (6, 1, 3)
    assert shadow_violations("Required-Missing") == 2
    assert shadow_violations("Additional-Properties") == 1
    assert shadow_violations("Datatype-Mismatch") == 1

    # The summary judges the source's newest events from both topics against both plans.
    got = (await api.ok("GET", shadow_path))["data"]["shadows"][0]
    summary = got["summary"]
    [change] = [c for c in summary["byEvent"] if c["event"] == "Order Completed"]
    assert change == {
        "event": "Order Completed",
        "total": 10,
        "now": {"forward": 9, "strip": 0, "drop": 1},
        "candidate": {"forward": 6, "strip": 1, "drop": 3},
        "newlyDropped": 2,
        "noLongerDropped": 0,
        "stripped": {"coupon": 1},
    }
    assert "would drop 30.0 % of Order Completed (+20.0 points against now)" in summary["text"]
    assert "would strip coupon from 10.0 % of Order Completed" in summary["text"]
    few = (await api.ok("GET", shadow_path + "?events=3"))["data"]["shadows"][0]["summary"]
    assert few["events"] == 3

    # Promoted: the source is enforced by the candidate, its policies kept.
    promoted = await api.ok("POST", shadow_path + "/promote")
    [after] = promoted["data"]["shadows"]
    assert (after["trackingPlanId"], after["shadow"]) == (candidate, None)
    connections = await api.ok("GET", f"/catalog/tracking-plans/{candidate}/sources")
    [connection] = connections["connections"]
    assert connection["sourceId"] == source_id
    assert connection["config"] == CONFIG
    await until_enforced(api, key, order(100, amount=5), violated=True)  # no currency now

    # The change log has every shadow write.
    changes = await api.ok("GET", f"/api/latest/changes?target={source_id}")
    actions = [c["action"] for c in changes["data"]["changes"]]
    assert actions[:2] == ["promoteShadowPlan", "setShadowPlan"]


async def test_shadow_plan_errors(api: Admin) -> None:
    plan = await segment_plan(api, "Plan", amount_rule("number"))
    await api.ok("PUT", f"{SEGMENT}/{plan}/rules", {"rules": []})  # a second version
    plan_doc = await api.ok("GET", f"/catalog/tracking-plans/{plan}")
    source = await api.source("Shop")
    path = f"/api/latest/sources/{source['id']}/shadow"

    status, answer = await api("PUT", path, {"trackingPlanId": plan})
    assert (status, answer["result"]) == (404, "error")  # not connected
    assert "not connected" in answer["errorDetails"]
    await api.ok("POST", f"{SEGMENT}/{plan}/sources", {"sourceId": source["id"]})

    status, answer = await api("PUT", path, {"trackingPlanId": "tp_nope"})
    assert status == 404
    status, answer = await api("PUT", path, {"trackingPlanId": plan, "version": 999})
    assert (status, answer["errorDetails"]) == (404, f"tracking plan {plan} has no version 999")
    status, answer = await api("PUT", path, {"trackingPlanId": plan, "version": 2**40})
    assert status == 400
    status, answer = await api("POST", path + "/promote")
    assert status == 409  # no shadow

    # A past version can be watched, but not promoted.
    older = plan_doc["version"] - 1
    await api.ok("PUT", path, {"trackingPlanId": plan, "version": older})
    snapshot = await api.ok("GET", "/internal/v1/snapshot")
    [entry] = [s for s in snapshot["sources"] if s["id"] == source["id"]]
    assert entry["trackingPlan"]["shadow"] == {"id": plan, "version": older}
    [planned] = [p for p in snapshot["trackingPlans"] if p["id"] == plan]
    assert older in [p["version"] for p in planned["pastVersions"]]
    status, answer = await api("POST", path + "/promote")
    assert status == 409
    assert "only a plan's current version can be enforced" in answer["errorDetails"]

    cleared = await api.ok("DELETE", path)
    assert cleared["data"]["shadows"][0]["shadow"] is None


async def test_shadow_plan_collects_no_more_violations_than_a_request_may(api: Admin) -> None:
    """The worst request for a shadowed source: every event with a thousand violations of the
    candidate. The candidate's violations are collected within the request's budget
    (ingest.max_request_violations), like enforcement's own; the events over it count as
    drops, as enforcing the candidate would quarantine them."""
    current = await segment_plan(api, "Current", amount_rule("number"))
    tags = amount_rule("number")
    tags["properties"]["properties"]["properties"]["tags"] = {
        "type": "array",
        "items": {"type": "string"},
    }
    candidate = await segment_plan(api, "Tagged", tags)
    source = await api.source("Shop")
    source_id, key = source["id"], source["writeKeys"][0]
    await api.ok("POST", f"{SEGMENT}/{current}/sources", {"sourceId": source_id})
    await api.ok("PUT", f"/api/latest/sources/{source_id}/shadow", {"trackingPlanId": candidate})
    await until_shadowed(api, key)

    budget = api.gw.settings.ingest.max_request_violations
    events = [order(i, amount=1, tags=list(range(1000))) for i in range(2 * budget // 1000)]
    async with api.http.post(
        ingest_url(api.gw, "/v1/batch"), json={"batch": events}, headers=basic_auth(key)
    ) as resp:
        assert resp.status == 200
    text = await metrics(api)
    collected = metric_value(
        text, "gateway_shadow_violations_total", source_id=source_id, event="Order Completed"
    )
    assert collected == budget  # ten events' worth, not twenty

    # The default policies forward violations; the events over the budget would be dropped.
    def would(outcome: str) -> float:
        return metric_value(text, SHADOW_OUTCOMES, event="Order Completed", would=outcome)

    assert (would("forward"), would("drop")) == (len(events) / 2, len(events) / 2)
