"""Segment's own Public API SDK (``@segment/public-api-sdk-typescript`` from npm, in Node), given
only the admin port as its base path: it creates, renames and reads a plan, adds, pages through
and removes rules (its query form for removals), connects a source — and the catalog holds
exactly that."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import orjson

from tests.browser_support import JS_DIR, node_modules
from tests.conftest import ADMIN_TOKEN, Admin


async def run_sdk(api: Admin, source_id: str) -> dict[str, Any]:
    node_modules()
    node = shutil.which("node")
    assert node, "node is needed for the SDK tests"
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "segment-public-api.mjs"),
        f"http://127.0.0.1:{api.gw.admin_port}",
        ADMIN_TOKEN,
        source_id,
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, (out + err).decode()
    result: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return result


async def test_segments_sdk_manages_a_plan(api: Admin) -> None:
    source = await api.source("SDK Source")
    got = await run_sdk(api, source["id"])
    plan_id = got["id"]

    assert [(r["key"], r["version"]) for r in got["rules"]["rules"]] == [
        ("Order Completed", 1),
        ("Order Completed", 2),
    ]
    assert got["rules"]["pagination"]["totalEntries"] == 3
    assert [(r["type"], r["key"]) for r in got["rest"]["rules"]] == [("IDENTIFY", "")]
    # The removal named version 1 of the track rule and the identify rule: version 2 is left.
    [left] = got["left"]["rules"]
    assert (left["key"], left["version"]) == ("Order Completed", 2)
    assert [s["id"] for s in got["sources"]["sources"]] == [source["id"]]
    assert got["plan"]["trackingPlan"]["name"] == "SDK Plan Renamed"
    assert [p["id"] for p in got["plans"]["trackingPlans"]] == [plan_id]
    assert (got["missing"]["status"], got["missing"]["type"]) == (404, "not_found")

    # What the SDK did is the catalog's, as the RudderStack-compatible API shows it.
    plan = await api.ok("GET", f"/catalog/tracking-plans/{plan_id}")
    assert plan["name"] == "SDK Plan Renamed"
    [event] = plan["events"]
    assert (event["name"], event["ruleVersion"]) == ("Order Completed", 2)
    assert event["rules"]["properties"]["properties"]["required"] == ["total"]
    connected = await api.ok("GET", f"/catalog/tracking-plans/{plan_id}/sources")
    assert [c["sourceId"] for c in connected["connections"]] == [source["id"]]
