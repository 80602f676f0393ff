"""The change log: every write through the native and the RudderStack-compatible API, recorded
with the write — who (a token digest), what, about which ids, plan versions before and after,
and why — readable at ``GET /api/latest/changes`` with filters (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from tests.conftest import ADMIN_TOKEN, Admin

CHANGES = "/api/latest/changes"
PLANS = "/catalog/tracking-plans"
RULES = {"type": "object"}


async def changes(api: Admin, query: str = "") -> list[dict[str, Any]]:
    status, envelope = await api("GET", CHANGES + query)
    assert (status, envelope["action"]) == (200, "listChanges"), envelope
    found: list[dict[str, Any]] = envelope["data"]["changes"]
    return found


async def test_every_write_is_recorded_and_reads_are_not(api: Admin) -> None:
    source = await api.source("Web")  # native, no reason
    status, _ = await api("PUT", f"/api/latest/sources/{source['id']}/write-keys?reason=rotate")
    assert status == 200
    plan = await api.ok("POST", PLANS, {"name": "Checkout Plan"})
    await api.ok("PATCH", f"{PLANS}/{plan['id']}/events", {"name": "Order Done", "rules": RULES})
    await api.ok(
        "POST",
        f"/v2{PLANS}/{plan['id']}/sources/{source['id']}",  # RudderStack's base path too
        {"config": {"track": {"allowUnplannedEvents": "false"}}},
    )
    event = await api.ok("GET", f"{PLANS}/{plan['id']}/events")
    event_id = event["data"][0]["id"]
    # Renaming a catalog event moves every plan using it.
    await api.ok("PUT", f"/catalog/events/{event_id}", {"name": "Order Completed"})
    await api.ok("DELETE", f"{PLANS}/{plan['id']}")
    # Reads and refused writes leave no trace.
    await api.ok("GET", PLANS)
    await api.ok("GET", "/api/latest/sources")
    assert (await api("POST", PLANS, {"name": "x"}))[0] == 400
    assert (await api("PUT", "/api/latest/sources", {"name": ""}))[0] == 400

    log = await changes(api)
    got = [(c["surface"], c["action"], c["targets"], c["plans"], c["reason"]) for c in log]
    plan_id = plan["id"]
    assert got[::-1] == [
        ("native", "createSource", [source["id"]], [], None),
        ("native", "createWriteKey", [source["id"]], [], "rotate"),
        ("rudderstack", f"POST {PLANS}", [plan_id], [_moved(plan_id, None, 1)], None),
        (
            "rudderstack",
            f"PATCH {PLANS}/{{plan_id}}/events",
            [plan_id, event_id],
            [_moved(plan_id, 1, 2)],
            None,
        ),
        (
            "rudderstack",
            f"POST {PLANS}/{{plan_id}}/sources/{{source_id}}",
            [plan_id, source["id"]],
            [],
            None,
        ),
        (
            "rudderstack",
            "PUT /catalog/events/{id}",
            [event_id, plan_id],
            [_moved(plan_id, 2, 3)],
            None,
        ),
        ("rudderstack", f"DELETE {PLANS}/{{plan_id}}", [plan_id], [_moved(plan_id, 3, None)], None),
    ]
    # Who: a digest of the token, the same for every call made with it; never the token.
    assert {c["token"] for c in log} == {log[0]["token"]}
    assert log[0]["token"].startswith("sha256:")
    assert ADMIN_TOKEN not in str(log)
    assert all(c["at"].endswith("Z") for c in log)
    assert [c["id"] for c in log] == sorted((c["id"] for c in log), reverse=True)


def _moved(plan_id: str, before: int | None, after: int | None) -> dict[str, Any]:
    return {"planId": plan_id, "before": before, "after": after}


async def test_filters_by_target_and_time(api: Admin) -> None:
    first = await api.source("First")
    await asyncio.sleep(0.01)  # distinct millisecond times
    second = await api.source("Second")
    await api(
        "POST", f"/api/latest/sources/{first['id']}?reason=" + quote("shop → web"), {"name": "Shop"}
    )

    about_first = await changes(api, f"?target={first['id']}")
    assert [c["action"] for c in about_first] == ["updateSource", "createSource"]
    assert about_first[0]["reason"] == "shop → web"
    assert [c["action"] for c in await changes(api, f"?target={second['id']}")] == ["createSource"]
    assert await changes(api, "?target=src_nothing") == []

    everything = await changes(api)
    assert len(everything) == 3
    middle = everything[1]["at"]
    since = await changes(api, "?since=" + quote(middle))
    assert [c["id"] for c in since] == [c["id"] for c in everything[:2]]
    until = await changes(api, "?until=" + quote(middle))
    assert [c["id"] for c in until] == [everything[2]["id"]]
    assert len(await changes(api, "?limit=1")) == 1

    for bad in (
        "?limit=0",
        "?limit=1001",
        "?since=yesterday",
        "?since=2026-01-01T00:00:00",
        "?x=1",
    ):
        status, envelope = await api("GET", CHANGES + bad)
        assert (status, envelope["result"]) == (400, "error"), bad
