"""Catalog events, properties and categories — on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Admin
from tests.test_catalog_plans import ORDER_RULES, PLANS

AUDIT = {"workspaceId", "createdBy", "updatedBy", "createdAt", "updatedAt"}


async def test_categories(api: Admin) -> None:
    onboarding = await api.ok(
        "POST", "/catalog/categories", {"name": "Onboarding", "description": "First steps"}
    )
    assert onboarding["id"].startswith("cat_")
    assert set(onboarding) == {"id", "name", "description"} | AUDIT
    assert await api.ok("GET", f"/catalog/categories/{onboarding['id']}") == onboarding
    await api.ok("POST", "/catalog/categories", {"name": "Checkout"})
    listing = await api.ok("GET", "/catalog/categories?orderBy=name:asc")
    assert [c["name"] for c in listing["data"]] == ["Checkout", "Onboarding"]
    assert (listing["total"], listing["currentPage"], listing["pageSize"]) == (2, 1, 50)

    # An event in the category keeps existing when the category goes.
    event = await api.ok(
        "POST", "/catalog/events", {"name": "Signed Up", "categoryId": onboarding["id"]}
    )
    got = await api.ok("GET", f"/catalog/events/{event['id']}")
    assert got["category"]["name"] == "Onboarding"
    deleted = await api.ok("DELETE", f"/catalog/categories/{onboarding['id']}")
    assert deleted["name"] == "Onboarding"
    got = await api.ok("GET", f"/catalog/events/{event['id']}")
    assert (got["categoryId"], got["category"]) == (None, None)
    status, _ = await api("GET", f"/catalog/categories/{onboarding['id']}")
    assert status == 404


async def test_events(api: Admin) -> None:
    viewed = await api.ok(
        "POST", "/catalog/events", {"name": "Product Viewed", "description": "Looked at it"}
    )
    assert viewed["id"].startswith("ev_")
    assert set(viewed) == {"id", "name", "description", "eventType", "categoryId"} | AUDIT
    assert viewed["eventType"] == "track"
    identify = await api.ok("POST", "/catalog/events", {"name": "", "eventType": "identify"})
    page = await api.ok("POST", "/catalog/events", {"name": "", "eventType": "page"})
    assert identify["id"] != page["id"]

    updated = await api.ok(
        "PUT", f"/catalog/events/{viewed['id']}", {"name": "Product Seen", "description": "x"}
    )
    assert (updated["name"], updated["description"]) == ("Product Seen", "x")
    status, _ = await api("PUT", f"/catalog/events/{viewed['id']}", {"eventType": "page"})
    assert status == 400
    # Unnamed events of different types do not clash; two track events of one name do.
    page_named = await api.ok(
        "PUT", f"/catalog/events/{page['id']}", {"name": "", "description": "p"}
    )
    assert (page_named["name"], page_named["description"]) == ("", "p")
    other = await api.ok("POST", "/catalog/events", {"name": "Other"})
    status, _ = await api("PUT", f"/catalog/events/{other['id']}", {"name": "Product Seen"})
    assert status == 400
    await api.ok("DELETE", f"/catalog/events/{other['id']}")

    listing = await api.ok("GET", "/catalog/events?orderBy=createdAt:desc")
    assert [e["id"] for e in listing["data"]] == [page["id"], identify["id"], viewed["id"]]

    deleted = await api.ok("DELETE", f"/catalog/events/{page['id']}")
    assert deleted["eventType"] == "page"
    assert (await api.ok("GET", "/catalog/events"))["total"] == 2


async def test_event_used_by_a_plan_cannot_be_deleted_and_renames_bump_the_plan(
    api: Admin,
) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Shop Plan"})
    await api.ok(
        "PATCH", f"{PLANS}/{plan['id']}/events", {"name": "Cart Viewed", "rules": ORDER_RULES}
    )
    [event] = (await api.ok("GET", f"{PLANS}/{plan['id']}/events"))["data"]
    status, body = await api("DELETE", f"/catalog/events/{event['id']}")
    assert status == 400
    assert plan["id"] in body["message"]
    before = await api.ok("GET", f"{PLANS}/{plan['id']}")
    await api.ok("PUT", f"/catalog/events/{event['id']}", {"name": "Basket Viewed"})
    after = await api.ok("GET", f"{PLANS}/{plan['id']}")
    assert after["version"] == before["version"] + 1
    assert after["events"][0]["name"] == "Basket Viewed"
    # The plan's history still shows the old name.
    old = await api.ok("GET", f"{PLANS}/{plan['id']}?version={before['version']}")
    assert old["events"][0]["name"] == "Cart Viewed"
    await api.ok("DELETE", f"{PLANS}/{plan['id']}/events/{event['id']}")
    await api.ok("DELETE", f"/catalog/events/{event['id']}")


async def test_properties(api: Admin) -> None:
    amount = await api.ok(
        "POST",
        "/catalog/properties",
        {"name": "amount", "type": "number", "propConfig": {"multipleOf": 2}, "description": "$"},
    )
    assert amount["id"].startswith("prop_")
    assert set(amount) == {"id", "name", "description", "type", "propConfig"} | AUDIT
    assert (amount["type"], amount["propConfig"]) == ("number", {"multipleOf": 2})
    multi = await api.ok(
        "POST", "/catalog/properties", {"name": "email", "type": ["string", "null"]}
    )
    assert (multi["type"], multi["propConfig"]) == (["string", "null"], {})
    anything = await api.ok("POST", "/catalog/properties", {"name": "payload", "type": ""})
    assert anything["type"] == ""

    changed = await api.ok(
        "PUT",
        f"/catalog/properties/{multi['id']}",
        {"description": "User's email", "propConfig": {"format": "email"}},
    )
    assert (changed["description"], changed["propConfig"]) == ("User's email", {"format": "email"})
    assert await api.ok("GET", f"/catalog/properties/{multi['id']}") == changed
    names = [p["name"] for p in (await api.ok("GET", "/catalog/properties?orderBy=name"))["data"]]
    assert names == ["amount", "email", "payload"]
    deleted = await api.ok("DELETE", f"/catalog/properties/{amount['id']}")
    assert deleted["name"] == "amount"
    assert (await api.ok("GET", "/catalog/properties"))["total"] == 2


async def test_paging(api: Admin) -> None:
    for i in range(55):
        await api.ok("POST", "/catalog/properties", {"name": f"p{i:02d}", "type": "string"})
    first = await api.ok("GET", "/catalog/properties?orderBy=name:asc")
    second = await api.ok("GET", "/catalog/properties?orderBy=name:asc&page=2")
    assert (first["total"], len(first["data"]), len(second["data"])) == (55, 50, 5)
    assert second["currentPage"] == 2
    assert [p["name"] for p in second["data"]] == [f"p{i}" for i in range(50, 55)]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/catalog/categories", {}, 400),
        ("POST", "/catalog/categories", {"name": "no"}, 400),
        ("GET", "/catalog/categories/cat_missing", None, 404),
        ("DELETE", "/catalog/categories/cat_missing", None, 404),
        ("GET", "/catalog/categories?page=0", None, 400),
        ("GET", "/catalog/categories?page=51", None, 400),
        ("GET", "/catalog/categories?orderBy=size:asc", None, 400),
        ("GET", "/catalog/categories?orderBy=name:up", None, 400),
        ("POST", "/catalog/events", {"name": "x"}, 400),
        ("POST", "/catalog/events", {"name": "Thing", "eventType": "alias"}, 400),
        ("POST", "/catalog/events", {"name": "Thing", "eventType": "page"}, 400),
        ("POST", "/catalog/events", {"name": "Thing", "categoryId": "cat_missing"}, 400),
        ("POST", "/catalog/events", {"name": "Thing", "categoryId": ""}, 400),
        ("GET", "/catalog/events/ev_missing", None, 404),
        ("PUT", "/catalog/events/ev_missing", {"name": "Valid"}, 404),
        ("DELETE", "/catalog/events/ev_missing", None, 404),
        ("POST", "/catalog/properties", {"name": "amount"}, 400),
        ("POST", "/catalog/properties", {"name": "1st", "type": "string"}, 400),
        ("POST", "/catalog/properties", {"name": "a-b", "type": "string"}, 400),
        ("POST", "/catalog/properties", {"name": "ok", "type": "text"}, 400),
        ("POST", "/catalog/properties", {"name": "ok", "type": []}, 400),
        ("POST", "/catalog/properties", {"name": "ok", "type": "string", "propConfig": 1}, 400),
        ("GET", "/catalog/properties/prop_missing", None, 404),
        ("PUT", "/catalog/properties/prop_missing", {"name": "ok"}, 404),
        ("DELETE", "/catalog/properties/prop_missing", None, 404),
    ],
)
async def test_entity_errors(api: Admin, method: str, path: str, body: Any, status: int) -> None:
    got, document = await api(method, path, body)
    assert got == status, document
    assert set(document) == {"code", "message"}


async def test_duplicates_and_empty_updates(api: Admin) -> None:
    event = await api.ok("POST", "/catalog/events", {"name": "Signed Up"})
    status, _ = await api("POST", "/catalog/events", {"name": "Signed Up"})
    assert status == 400
    await api.ok("POST", "/catalog/events", {"name": "", "eventType": "identify"})
    status, _ = await api("POST", "/catalog/events", {"name": "", "eventType": "identify"})
    assert status == 400
    await api.ok("POST", "/catalog/categories", {"name": "Growth"})
    status, _ = await api("POST", "/catalog/categories", {"name": "Growth"})
    assert status == 400
    status, _ = await api("PUT", f"/catalog/events/{event['id']}", {})
    assert status == 400
    prop = await api.ok("POST", "/catalog/properties", {"name": "plan", "type": "string"})
    status, _ = await api("PUT", f"/catalog/properties/{prop['id']}", {})
    assert status == 400
