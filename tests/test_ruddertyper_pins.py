"""RudderTyper version pins: an event whose ``context.ruddertyper`` names the connected plan and
one of its past versions is judged by that version, end to end through Kafka (SQLite and
PostgreSQL catalogs); only the last ``catalog.pinned_versions`` are kept; anything else is
judged by the current version."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.plans.snapshot import SnapshotError, parse_snapshot
from gateway.replay.runner import Replays
from gateway.replay.spec import ReplaySpec
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


@pytest.fixture
async def api(database_url: str, make_gateway: GatewayFactory) -> AsyncIterator[Admin]:
    gw = await make_gateway(
        admin={"tokens": (ADMIN_TOKEN,)},
        catalog={"database_url": database_url, "pinned_versions": 2},
        plans={"source": "local", "refresh_interval_s": 0.2},
    )
    async with aiohttp.ClientSession() as http:
        yield Admin(gw, http)


def order(user: str, amount: Any, typer: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "userId": user,
        "event": "Order Completed",
        "properties": {"amount": amount},
    }
    if typer is not None:
        event["context"] = {"ruddertyper": typer}
    return event


async def test_events_pinned_to_a_past_version(api: Admin) -> None:
    created = await api.ok("POST", SEGMENT, {"name": "Typed Plan", "type": "LIVE"})
    plan_id = created["data"]["trackingPlan"]["id"]

    async def amount_is(kind: str) -> int:
        rule = {"key": "Order Completed", "type": "TRACK", "version": 1}
        rule["jsonSchema"] = amount_rule(kind)
        await api.ok("PUT", f"{SEGMENT}/{plan_id}/rules", {"rules": [rule]})
        plan = await api.ok("GET", f"/catalog/tracking-plans/{plan_id}")
        return int(plan["version"])

    oldest = await amount_is("boolean")  # out of the window by the end
    numbers = await amount_is("number")
    await amount_is("integer")
    current = await amount_is("string")
    assert (oldest, numbers, current) == (numbers - 1, current - 2, current)
    source = await api.source("App")
    await api.ok("POST", f"{SEGMENT}/{plan_id}/sources", {"sourceId": source["id"]})
    key = source["writeKeys"][0]

    def pin(version: Any, plan: str = plan_id) -> dict[str, Any]:
        return {"trackingPlanId": plan, "trackingPlanVersion": version}

    # user → (event, the version expected to judge it, whether it violates it)
    cases = {
        "pinned-ok": (order("pinned-ok", 5, pin(numbers)), numbers, False),
        "pinned-bad": (order("pinned-bad", "5", pin(numbers)), numbers, True),
        "current-ok": (order("current-ok", "5"), current, False),
        "current-bad": (order("current-bad", 5), current, True),
        # Out of the window (catalog.pinned_versions = 2), or not a version: the current one.
        "too-old": (order("too-old", True, pin(oldest)), current, True),
        "no-such": (order("no-such", 5, pin(current + 5)), current, True),
        "as-text": (order("as-text", 5, pin(str(numbers))), current, True),
        "other-plan": (order("other-plan", 5, pin(numbers, "tp_other")), current, True),
        "is-current": (order("is-current", "5", pin(current)), current, False),
    }
    events = [event for event, _, _ in cases.values()]

    # The data plane picks the connection up within its refresh interval.
    await until_enforced(api, key, order("probe", 5), violated=True)

    async with api.http.post(
        ingest_url(api.gw, "/v1/batch"), json={"batch": events}, headers=basic_auth(key)
    ) as resp:
        assert resp.status == 200
    kafka = api.gw.settings.kafka
    records = await consume_all(kafka.bootstrap_servers, kafka.events_topic)
    got = {}
    for record in records:
        value = orjson.loads(record.value)
        context = value["context"]
        assert headers_of(record)["tracking-plan-version"] == str(context["trackingPlanVersion"])
        got[value["userId"]] = (context["trackingPlanVersion"], bool(context["violationErrors"]))
    assert got == {user: (version, bad) for user, (_, version, bad) in cases.items()}


def test_past_versions_in_a_snapshot_document() -> None:
    plan = {
        "id": "tp_1",
        "version": 3,
        "events": [{"name": "A", "eventType": "track", "rules": amount_rule("string")}],
        "pastVersions": [
            {"version": 1, "events": [{"name": "A", "eventType": "track", "rules": {}}]},
            {
                "version": 2,
                "events": [{"name": "A", "eventType": "track", "rules": amount_rule("number")}],
                "commonRule": {"version": 1, "rules": {"required": ["context"]}},
            },
        ],
    }
    snapshot = parse_snapshot({"sources": [], "trackingPlans": [plan]})
    parsed = snapshot.tracking_plans["tp_1"]
    assert sorted(parsed.past) == [1, 2]
    assert parsed.past[2].version == 2
    assert parsed.past[2].common is not None
    assert parsed.past[1].event("track", "A") is not None
    assert parsed.past[2].past == {}

    for past, message in [
        ([{"version": 3, "events": []}], "pastVersions[0].version: must be below 3"),
        ([{"version": 2}, {"version": 1}], "pastVersions[1].version: must be below 3"),
        ([{"version": 1, "events": [{"eventType": "nope"}]}], "pastVersions[0].events[0]"),
        ({"version": 1}, "pastVersions: must be a list"),
    ]:
        with pytest.raises(SnapshotError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_snapshot({"sources": [], "trackingPlans": [{**plan, "pastVersions": past}]})


async def test_replay_judges_pinned_events_by_their_version(api: Admin) -> None:
    """A replay judges a quarantined event as the gateway would now: by the version it is
    pinned to, not by the plan that was changed since."""
    created = await api.ok("POST", SEGMENT, {"name": "Typed Plan", "type": "LIVE"})
    plan_id = created["data"]["trackingPlan"]["id"]
    rule = {"key": "Order Completed", "type": "TRACK", "version": 1}
    await api.ok(
        "PUT",
        f"{SEGMENT}/{plan_id}/rules",
        {"rules": [{**rule, "jsonSchema": amount_rule("number")}]},
    )
    numbers = (await api.ok("GET", f"/catalog/tracking-plans/{plan_id}"))["version"]
    source = await api.source("App")
    await api.ok("POST", f"{SEGMENT}/{plan_id}/sources", {"sourceId": source["id"]})
    await api.ok(
        "PUT",
        f"/catalog/tracking-plans/{plan_id}/sources/{source['id']}",
        {"config": {"track": {"anyOtherViolation": "drop"}}},
    )
    key = source["writeKeys"][0]
    await until_enforced(api, key, order("probe", "5"), violated=True, outcome="quarantined")
    pinned = order("pinned", "5", {"trackingPlanId": plan_id, "trackingPlanVersion": numbers})
    async with api.http.post(
        ingest_url(api.gw, "/v1/batch"),
        json={"batch": [pinned, order("unpinned", "6")]},
        headers=basic_auth(key),
    ) as resp:
        assert resp.status == 200
    # Amounts may be strings from now on; the app pinned to the old version may not.
    await api.ok(
        "PUT",
        f"{SEGMENT}/{plan_id}/rules",
        {"rules": [{**rule, "jsonSchema": amount_rule("string")}]},
    )
    gw = api.gw
    assert gw.store is not None
    replays = Replays(gw.store, gw.settings.kafka, gw.settings.ingest, pinned_versions=2)
    job = await replays.run((await replays.create(ReplaySpec())).id)
    assert (job.status, job.progress.selected, job.progress.published) == ("done", 2, 1)
    [why] = job.progress.failures
    assert why.startswith("violation: Datatype-Mismatch must be number")
    kafka = gw.settings.kafka
    replayed = [
        orjson.loads(r.value)["userId"]
        for r in await consume_all(kafka.bootstrap_servers, kafka.events_topic)
        if headers_of(r).get("replayed") == "true"
    ]
    assert replayed == ["unpinned"]
