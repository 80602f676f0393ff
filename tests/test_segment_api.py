"""Segment's Public API for tracking plans, on the admin port (SQLite and PostgreSQL): every
operation with the reference's example bodies, the documented fields, pagination, the
rule-removal query form, each error status, rate limits, and one catalog under three surfaces."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from tests.conftest import ADMIN_BEARER, ADMIN_TOKEN, Admin, GatewayFactory

SEGMENT = "/tracking-plans"
CATALOG = "/catalog/tracking-plans"
PLAN_FIELDS = {
    "id",
    "name",
    "resourceSchemaId",
    "slug",
    "description",
    "type",
    "updatedAt",
    "createdAt",
}
RULE_FIELDS = {"key", "type", "version", "jsonSchema", "createdAt", "updatedAt", "deprecatedAt"}
SOURCE_FIELDS = {
    "id",
    "slug",
    "name",
    "workspaceId",
    "enabled",
    "writeKeys",
    "metadata",
    "settings",
    "labels",
}
SCHEMA = {"type": "object", "properties": {"properties": {"type": "object"}}}


def cursor(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode()


async def data(api: Admin, method: str, path: str, body: Any = None) -> Any:
    status, document = await api(method, path, body)
    assert status == 200, (method, path, status, document)
    assert set(document) == {"data"}, document
    return document["data"]


async def error(api: Admin, method: str, path: str, body: Any, status: int) -> dict[str, Any]:
    got, document = await api(method, path, body)
    assert got == status, (method, path, got, document)
    [problem] = document["errors"]
    assert set(problem) == {"type", "message", "status"}
    assert problem["status"] == status
    return dict(problem)


async def new_plan(api: Admin, name: str = "New TP", kind: str = "LIVE") -> dict[str, Any]:
    created = await data(api, "POST", SEGMENT, {"name": name, "type": kind})
    plan: dict[str, Any] = created["trackingPlan"]
    return plan


async def test_plan_operations_with_the_reference_bodies(api: Admin) -> None:
    plan = await new_plan(api)
    assert set(plan) == PLAN_FIELDS
    assert (plan["name"], plan["type"], plan["slug"], plan["description"]) == (
        "New TP",
        "LIVE",
        "",
        "",
    )
    assert plan["id"].startswith("tp_")
    assert plan["resourceSchemaId"] == "rs_" + plan["id"][3:]
    one = f"{SEGMENT}/{plan['id']}"
    assert await data(api, "GET", one) == {"trackingPlan": plan}

    listed = await data(api, "GET", SEGMENT)
    assert listed == {
        "trackingPlans": [plan],
        "pagination": {"current": "MA==", "totalEntries": 1},
    }

    updated = await data(api, "PATCH", one, {"name": "Updated TP"})
    assert updated["status"] == "SUCCESS"
    assert updated["trackingPlan"]["name"] == "Updated TP"
    assert (await data(api, "GET", one))["trackingPlan"]["name"] == "Updated TP"

    assert await data(api, "DELETE", one) == {"status": "SUCCESS"}
    problem = await error(api, "GET", one, None, 404)
    assert plan["id"] in problem["message"]
    await error(api, "DELETE", one, None, 404)
    await error(api, "PATCH", one, {"name": "Again Plan"}, 404)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", SEGMENT, {"name": "No Type"}),
        ("POST", SEGMENT, {"name": "Bad Type", "type": "DRAFT"}),
        ("POST", SEGMENT, {"name": "x", "type": "LIVE"}),
        ("POST", SEGMENT, {"type": "LIVE"}),
        ("POST", SEGMENT, []),
        ("GET", SEGMENT + "?pagination.count=0", None),
        ("GET", SEGMENT + "?pagination.count=201", None),
        ("GET", SEGMENT + "?pagination.cursor=not-a-cursor", None),
        ("GET", SEGMENT + "?pagination.cursor=%C3%B9", None),
        ("GET", SEGMENT + "?pagination.cursor=" + quote(cursor(10**10)), None),
        ("GET", SEGMENT + "?type=DRAFT", None),
        ("PATCH", SEGMENT + "/{plan}", {}),
        ("PATCH", SEGMENT + "/{plan}/rules", {"rules": [{"type": "TRACK", "key": "x"}]}),
        (
            "PATCH",
            SEGMENT + "/{plan}/rules",
            {"rules": [{"type": "TRACK", "key": "x", "version": 1, "jsonSchema": {}}]},
        ),
        (
            "PATCH",
            SEGMENT + "/{plan}/rules",
            {"rules": [{"type": "ALIAS", "key": "", "version": 1, "jsonSchema": {}}]},
        ),
        (
            "PATCH",
            SEGMENT + "/{plan}/rules",
            {"rules": [{"type": "TRACK", "key": "Bad Rule", "version": 0, "jsonSchema": {}}]},
        ),
        (
            "PATCH",
            SEGMENT + "/{plan}/rules",
            {"rules": [{"type": "TRACK", "key": "Bad Rule", "jsonSchema": {"type": 5}}]},
        ),
        ("DELETE", SEGMENT + "/{plan}/rules", None),
        ("DELETE", SEGMENT + "/{plan}/rules?rules.0.key=A&rules.0.version=1", None),
        ("DELETE", SEGMENT + "/{plan}/rules?rules.100.type=TRACK", None),
        ("POST", SEGMENT + "/{plan}/sources", {}),
        ("POST", SEGMENT + "/{plan}/sources", {"sourceId": "src_missing"}),
        ("DELETE", SEGMENT + "/{plan}/sources", None),
        ("DELETE", SEGMENT + "/{plan}/sources?sourceId=src_missing", None),
    ],
)
async def test_validation_failures_are_422(api: Admin, method: str, path: str, body: Any) -> None:
    plan = await new_plan(api)
    problem = await error(api, method, path.replace("{plan}", plan["id"]), body, 422)
    assert problem["message"]


async def test_invalid_json_and_unknown_plans(api: Admin) -> None:
    url = f"http://127.0.0.1:{api.gw.admin_port}{SEGMENT}"
    async with api.http.post(url, data=b"{not json", headers=ADMIN_BEARER) as resp:
        assert resp.status == 422
        assert (await resp.json())["errors"][0]["type"] == "invalid_json"
    for method, suffix in (
        ("GET", ""),
        ("GET", "/rules"),
        ("PATCH", "/rules"),
        ("GET", "/sources"),
        ("POST", "/sources"),
    ):
        body: dict[str, Any] | None = (
            {"rules": []} if suffix == "/rules" and method == "PATCH" else None
        )
        if suffix == "/sources" and method == "POST":
            body = {"sourceId": "src_x"}
        await error(api, method, f"{SEGMENT}/tp_missing{suffix}", body, 404)
    # No token: 401, in Segment's error body.
    async with api.http.get(url) as resp:
        assert resp.status == 401
        assert (await resp.json())["errors"][0]["status"] == 401


async def test_pagination(api: Admin) -> None:
    plans = [await new_plan(api, f"Plan {n}") for n in range(3)]
    first = await data(api, "GET", SEGMENT + "?pagination.count=2")
    assert [p["id"] for p in first["trackingPlans"]] == [p["id"] for p in plans[:2]]
    assert first["pagination"] == {"current": cursor(0), "next": cursor(2), "totalEntries": 3}
    second = await data(
        api, "GET", SEGMENT + f"?pagination.count=2&pagination.cursor={quote(cursor(2))}"
    )
    assert [p["id"] for p in second["trackingPlans"]] == [plans[2]["id"]]
    assert second["pagination"] == {"current": cursor(2), "totalEntries": 3}
    library = await new_plan(api, "Library Plan", "PROPERTY_LIBRARY")
    only = await data(api, "GET", SEGMENT + "?type=PROPERTY_LIBRARY")
    assert only["trackingPlans"] == [library]


async def test_rules_operations(api: Admin) -> None:
    plan = await new_plan(api)
    rules = f"{SEGMENT}/{plan['id']}/rules"
    added = {"rules": [{"key": "New Rule", "type": "TRACK", "version": 1, "jsonSchema": {}}]}
    assert await data(api, "PATCH", rules, added) == {"status": "SUCCESS"}
    listed = await data(api, "GET", rules)
    [rule] = listed["rules"]
    assert set(rule) == RULE_FIELDS
    assert (rule["key"], rule["type"], rule["version"], rule["jsonSchema"]) == (
        "New Rule",
        "TRACK",
        1,
        {},
    )
    assert rule["deprecatedAt"] is None
    assert listed["pagination"] == {"current": "MA==", "totalEntries": 1}

    replaced = {
        "rules": [{"key": "New Replaced Rule", "type": "TRACK", "version": 1, "jsonSchema": {}}]
    }
    assert await data(api, "PUT", rules, replaced) == {"status": "SUCCESS"}
    assert [r["key"] for r in (await data(api, "GET", rules))["rules"]] == ["New Replaced Rule"]

    more = {
        "rules": [
            {"key": "New Replaced Rule", "type": "TRACK", "version": 2, "jsonSchema": SCHEMA},
            {"key": "", "type": "IDENTIFY", "version": 1, "jsonSchema": SCHEMA},
            {"key": "", "type": "COMMON", "version": 1, "jsonSchema": SCHEMA},
        ]
    }
    await data(api, "PATCH", rules, more)
    got = [(r["type"], r["key"], r["version"]) for r in (await data(api, "GET", rules))["rules"]]
    assert got == [
        ("COMMON", "", 1),
        ("TRACK", "New Replaced Rule", 1),
        ("TRACK", "New Replaced Rule", 2),
        ("IDENTIFY", "", 1),
    ]

    # The query form of the reference: rules.N.key, rules.N.type, rules.N.version.
    removal = "rules.0.key=New%20Replaced%20Rule&rules.0.type=TRACK&rules.0.version=1"
    assert await data(api, "DELETE", f"{rules}?{removal}") == {"status": "SUCCESS"}
    removal = "rules.0.type=COMMON&rules.0.version=1&rules.1.type=IDENTIFY&rules.1.version=1"
    await data(api, "DELETE", f"{rules}?{removal}")
    [left] = (await data(api, "GET", rules))["rules"]
    assert (left["key"], left["version"], left["jsonSchema"]) == ("New Replaced Rule", 2, SCHEMA)
    # A rule the plan does not have: 404, and nothing of the request is done.
    removal = "rules.0.key=New%20Replaced%20Rule&rules.0.type=TRACK&rules.0.version=2"
    missing = "rules.1.key=Nothing%20Here&rules.1.type=TRACK&rules.1.version=1"
    await error(api, "DELETE", f"{rules}?{removal}&{missing}", None, 404)
    assert len((await data(api, "GET", rules))["rules"]) == 1

    page = await data(api, "GET", f"{rules}?pagination.count=1&pagination.cursor={cursor(1)}")
    assert page == {"rules": [], "pagination": {"current": cursor(1), "totalEntries": 1}}


async def test_sources_operations(api: Admin) -> None:
    plan = await new_plan(api)
    source = await api.source("Web App")
    sources = f"{SEGMENT}/{plan['id']}/sources"
    assert await data(api, "POST", sources, {"sourceId": source["id"]}) == {"status": "SUCCESS"}
    listed = await data(api, "GET", sources)
    [shown] = listed["sources"]
    assert set(shown) == SOURCE_FIELDS
    assert (shown["id"], shown["name"], shown["slug"], shown["enabled"]) == (
        source["id"],
        "Web App",
        "web-app",
        True,
    )
    assert shown["writeKeys"] == source["writeKeys"]
    assert shown["metadata"]["slug"] == "http-api"
    assert listed["pagination"] == {"current": "MA==", "totalEntries": 1}
    # Connected once; a second time, or to another plan, is refused.
    await error(api, "POST", sources, {"sourceId": source["id"]}, 422)
    other = await new_plan(api, "Other Plan")
    await error(api, "POST", f"{SEGMENT}/{other['id']}/sources", {"sourceId": source["id"]}, 422)
    # The connection is the catalog's: the RudderStack API sees it.
    connected = await api.ok("GET", f"{CATALOG}/{plan['id']}/sources")
    assert [c["sourceId"] for c in connected["connections"]] == [source["id"]]

    removed = await data(api, "DELETE", f"{sources}?sourceId={source['id']}")
    assert removed == {"status": "SUCCESS"}
    assert (await data(api, "GET", sources))["sources"] == []
    await error(api, "DELETE", f"{sources}?sourceId={source['id']}", None, 422)
    # Only a LIVE plan takes sources.
    library = await new_plan(api, "Library Plan", "RULE_LIBRARY")
    library_sources = f"{SEGMENT}/{library['id']}/sources"
    await error(api, "POST", library_sources, {"sourceId": source["id"]}, 422)


async def test_one_catalog_three_surfaces(api: Admin) -> None:
    """Made by Segment, read and changed by RudderStack's API; the change is visible to
    Segment and in the change log."""
    plan = await new_plan(api, "Shared Plan")
    rules = f"{SEGMENT}/{plan['id']}/rules"
    v1 = {"type": "object", "properties": {"properties": {"required": ["amount"]}}}
    v2 = {"type": "object", "properties": {"properties": {"required": ["total"]}}}
    await data(
        api,
        "PATCH",
        rules,
        {
            "rules": [
                {"key": "Order Completed", "type": "TRACK", "version": 1, "jsonSchema": v1},
                {"key": "Order Completed", "type": "TRACK", "version": 2, "jsonSchema": v2},
                {"key": "", "type": "COMMON", "version": 1, "jsonSchema": SCHEMA},
            ]
        },
    )
    seen = await api.ok("GET", f"{CATALOG}/{plan['id']}")
    assert (seen["name"], seen["version"]) == ("Shared Plan", 2)
    [event] = seen["events"]
    assert (event["name"], event["rules"], event["ruleVersion"]) == ("Order Completed", v1, 1)
    assert [(o["version"], o["rules"]) for o in event["otherRuleVersions"]] == [(2, v2)]
    assert (seen["commonRule"]["version"], seen["commonRule"]["rules"]) == (1, SCHEMA)

    # RudderStack's API changes the event's rules: its oldest version.
    v1_again = {"type": "object", "properties": {"properties": {"required": ["price"]}}}
    await api.ok(
        "PATCH",
        f"{CATALOG}/{plan['id']}/events",
        {"name": "Order Completed", "rules": v1_again},
    )
    got = [
        (r["type"], r["version"], r["jsonSchema"]) for r in (await data(api, "GET", rules))["rules"]
    ]
    assert got == [("COMMON", 1, SCHEMA), ("TRACK", 1, v1_again), ("TRACK", 2, v2)]
    # Every write moved the plan's version, and the history keeps each.
    assert (await api.ok("GET", f"{CATALOG}/{plan['id']}"))["version"] == 3
    before = await api.ok("GET", f"{CATALOG}/{plan['id']}?version=2")
    assert before["events"][0]["rules"] == v1
    assert before["commonRule"]["rules"] == SCHEMA
    assert (await api.ok("GET", f"{CATALOG}/{plan['id']}?version=1"))["events"] == []

    status, envelope = await api("GET", f"/api/latest/changes?target={plan['id']}")
    assert status == 200
    log = [
        (c["surface"], c["action"], c["plans"][0]["after"])
        for c in reversed(envelope["data"]["changes"])
    ]
    assert log == [
        ("segment", "createTrackingPlan", 1),
        ("segment", "updateRulesInTrackingPlan", 2),
        ("rudderstack", "PATCH /catalog/tracking-plans/{plan_id}/events", 3),
    ]
    # And the other way round: made by RudderStack's API, listed as rules by Segment's.
    made = await api.ok("POST", CATALOG, {"name": "Rudder Plan"})
    await api.ok("PATCH", f"{CATALOG}/{made['id']}/events", {"eventType": "page", "rules": SCHEMA})
    [page_rule] = (await data(api, "GET", f"{SEGMENT}/{made['id']}/rules"))["rules"]
    assert (page_rule["type"], page_rule["key"], page_rule["version"]) == ("PAGE", "", 1)
    assert (await data(api, "GET", f"{SEGMENT}/{made['id']}"))["trackingPlan"]["type"] == "LIVE"


@pytest.fixture
async def limited(database_url: str, make_gateway: GatewayFactory) -> AsyncIterator[Admin]:
    gw = await make_gateway(
        admin={
            "tokens": (ADMIN_TOKEN,),
            "segment_requests_per_minute": 6,
            "segment_rules_requests_per_minute": 2,
        },
        catalog={"database_url": database_url},
        plans={"source": "local"},
    )
    async with aiohttp.ClientSession() as http:
        yield Admin(gw, http)


async def test_rate_limits_per_token(limited: Admin) -> None:
    url = f"http://127.0.0.1:{limited.gw.admin_port}"
    plan = await new_plan(limited)
    rules = f"{url}{SEGMENT}/{plan['id']}/rules"
    statuses = []
    for _ in range(3):
        async with limited.http.get(rules, headers=ADMIN_BEARER) as resp:
            statuses.append(resp.status)
            headers = resp.headers
            body = orjson.loads(await resp.read())
    # The rules listing has its own, lower limit.
    assert statuses == [200, 200, 429]
    assert body["errors"][0]["type"] == "too_many_requests"
    assert headers["X-RateLimit-Limit"] == "2"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["Retry-After"]) >= 1
    assert int(headers["X-RateLimit-Reset"]) > 0
    # Other operations count against the general limit: 6 a minute, one spent creating.
    answers = []
    for _ in range(6):
        async with limited.http.get(f"{url}{SEGMENT}", headers=ADMIN_BEARER) as resp:
            answers.append((resp.status, resp.headers["X-RateLimit-Remaining"]))
    assert answers == [
        (200, "4"),
        (200, "3"),
        (200, "2"),
        (200, "1"),
        (200, "0"),
        (429, "0"),
    ]
    # Other surfaces are not limited.
    assert (await limited("GET", CATALOG))[0] == 200
