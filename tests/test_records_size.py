"""Event size is checked first, and what the gateway adds never costs an event its content.

- an event over ``ingest.max_event_bytes`` (counting the batch envelope's context merged into
  it) is quarantined as a stub without being validated;
- a small request whose envelope context makes every item oversized yields bounded stubs,
  not one copy of the context per item (amplification);
- an event within the limit whose violations are many keeps its content: the violation list
  is capped, the event is not reduced to a stub.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp

from gateway.publish.records import MAX_VIOLATIONS
from tests.conftest import SOURCE_ID, GatewayFactory, ingest_url, metric_value
from tests.records_support import (
    PLAN_ID,
    assert_stub_quarantine,
    gateway_with_plan,
    plan_snapshot,
    post_json,
    topic,
    value_of,
)

EMAIL_RULES = {
    "type": "object",
    "properties": {
        "traits": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    },
}
TAGS_RULES = {
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
        }
    },
}


async def metrics_text(gw: Any) -> str:
    async with aiohttp.ClientSession() as http, http.get(ingest_url(gw, "/metrics")) as resp:
        return await resp.text()


async def test_oversized_event_is_quarantined_without_validation(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    snapshot = plan_snapshot(
        EMAIL_RULES, {"global": {"anyOtherViolation": "drop"}}, event_type="identify"
    )
    gw = await gateway_with_plan(make_gateway, tmp_path, snapshot, ingest={"max_event_bytes": 4096})
    small = {"type": "identify", "userId": "u1", "messageId": "m-small", "traits": {"email": "no"}}
    big = {
        "type": "identify",
        "userId": "u2",
        "messageId": "m-big",
        "traits": {"email": "x" * 8000},
    }
    # Small on its own, but over the limit once the envelope's context is merged in.
    merged = {
        "type": "identify",
        "userId": "u3",
        "messageId": "m-merged",
        "traits": {"email": "no"},
    }
    status, _ = await post_json(gw, "/v1/batch", {"batch": [small, big]})
    assert status == 200
    status, _ = await post_json(
        gw, "/v1/batch", {"context": {"pad": "y" * 5000}, "batch": [merged]}
    )
    assert status == 200
    # Only the small event was validated: one violation counted, none for the oversized ones.
    text = await metrics_text(gw)
    assert metric_value(text, "gateway_violations_total", source_id=SOURCE_ID) == 1
    assert (
        metric_value(
            text, "gateway_events_quarantined_total", source_id=SOURCE_ID, reason="invalid-event"
        )
        == 2
    )
    records = {value_of(r)["event"]["messageId"]: r for r in await topic(gw, quarantine=True)}
    assert value_of(records["m-small"])["reason"] == "violation"
    for mid, size in (("m-big", 8000), ("m-merged", 5000)):
        doc = assert_stub_quarantine(records[mid], mid)
        assert "limit is 4096 bytes" in doc["violations"][0]["message"]
        assert doc["event"]["_originalBytes"] > size


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_envelope_context_cannot_amplify_quarantine_output(gateway: Any) -> None:
    # 600 KB of request; each of its 2,500 items would be 500 KB once the context is merged.
    items = [
        {"type": "track", "userId": f"u{i}", "event": "Small", "messageId": f"m{i}"}
        for i in range(2500)
    ]
    before = rss_mb()
    status, text = await post_json(
        gateway, "/v1/batch", {"context": {"pad": "x" * 500_000}, "batch": items}
    )
    assert (status, text) == (200, "OK")
    records = await topic(gateway, quarantine=True)
    assert len(records) == 2500
    total = sum(len(r.value) + len(r.key or b"") for r in records)
    assert total < 10 * 1024 * 1024, total
    assert_stub_quarantine(records[0], "m0")
    assert value_of(records[0])["event"]["_originalBytes"] > 500_000
    assert await topic(gateway) == []
    # The process (gateway and this test) did not hold a copy of the context per item.
    assert rss_mb() - before < 300
    async with aiohttp.ClientSession() as http, http.get(ingest_url(gateway, "/health/live")) as r:
        assert r.status == 200


def tagged(tags: list[Any]) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": "u-tags",
        "event": "Tagged",
        "messageId": "m-tags",
        "properties": {"tags": tags, "note": "kept"},
    }


async def test_many_violations_forwarded_event_keeps_its_properties(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    # ~30 KB, within the 32 KiB limit; 15,000 violations would have made it ~2 MB.
    snapshot = plan_snapshot(TAGS_RULES, {"global": {"anyOtherViolation": "forward"}})
    gw = await gateway_with_plan(make_gateway, tmp_path, snapshot)
    sent = tagged([1] * 15000)
    assert await post_json(gw, "/v1/track", sent) == (200, "OK")
    [record] = await topic(gw)
    event = value_of(record)
    assert event["properties"] == sent["properties"]
    context = event["context"]
    assert context["trackingPlanId"] == PLAN_ID
    assert len(context["violationErrors"]) == MAX_VIOLATIONS
    assert context["violationErrorsTotal"] == 15000
    assert context["violationErrors"][0]["meta"]["instancePath"] == "/properties/tags/0"
    assert dict(record.headers)["violations"] == b"15000"
    assert await topic(gw, quarantine=True) == []


async def test_many_violations_quarantined_event_keeps_its_properties(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    snapshot = plan_snapshot(TAGS_RULES, {"global": {"anyOtherViolation": "drop"}})
    gw = await gateway_with_plan(make_gateway, tmp_path, snapshot)
    sent = tagged([1] * 15000)
    assert await post_json(gw, "/v1/track", sent) == (200, "OK")
    [record] = await topic(gw, quarantine=True)
    doc = value_of(record)
    assert doc["reason"] == "violation"
    assert doc["event"]["properties"] == sent["properties"]
    assert "_truncated" not in doc["event"]
    assert len(doc["violations"]) == MAX_VIOLATIONS
    assert doc["violationsTotal"] == 15000
    assert await topic(gw) == []


async def test_records_of_a_request_stay_within_a_multiple_of_its_size(gateway: Any) -> None:
    """A 30 KB context keeps each of 2,500 items under the event limit, yet merged into all of
    them it made 78 MB of records from a ~200 KB body. Records stop at 8 x max_request_bytes;
    the items beyond are quarantined as stubs naming the reason."""
    items = [
        {"type": "track", "userId": f"u{i}", "event": "Small", "messageId": f"m{i}"}
        for i in range(2500)
    ]
    status, text = await post_json(
        gateway, "/v1/batch", {"context": {"pad": "x" * 30_000}, "batch": items}
    )
    assert (status, text) == (200, "OK")
    forwarded = await topic(gateway)
    quarantined = await topic(gateway, quarantine=True)
    assert len(forwarded) + len(quarantined) == 2500
    limit = 8 * gateway.settings.ingest.max_request_bytes
    total = sum(len(r.value) for r in forwarded + quarantined)
    assert total <= limit + 2500 * 1024, total
    # The first items fill the allowance whole, the rest are stubs that say why.
    assert len(forwarded) == limit // len(forwarded[0].value)
    assert value_of(forwarded[0])["context"]["pad"] == "x" * 30_000
    doc = assert_stub_quarantine(quarantined[0], f"m{len(forwarded)}")
    assert "records would exceed" in doc["violations"][0]["message"]


async def test_records_stay_bounded_when_violations_make_them_larger_than_the_events(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Each ~700-byte event is dropped with 60 violations listed: a quarantine record of
    ~11 KB. The events alone are far within the request's bound, their records are not: the
    records stop at 8 x max_request_bytes all the same, the rest are stubs saying why."""
    snapshot = plan_snapshot(TAGS_RULES, {"global": {"anyOtherViolation": "drop"}})
    gw = await gateway_with_plan(
        make_gateway, tmp_path, snapshot, ingest={"max_request_bytes": 64 * 1024}
    )
    items = [{**tagged([1] * 60), "messageId": f"m{i}"} for i in range(100)]
    assert await post_json(gw, "/v1/batch", {"batch": items}) == (200, "OK")
    records = await topic(gw, quarantine=True)
    assert [value_of(r)["event"]["messageId"] for r in records] == [f"m{i}" for i in range(100)]
    reasons = [value_of(r)["reason"] for r in records]
    kept = reasons.count("violation")
    assert 0 < kept < 100
    # Within the bound but for the last record that fit and the stubs (1 KB each at most).
    limit = 8 * 64 * 1024
    total = sum(len(r.value) for r in records)
    assert total <= limit + len(records[kept - 1].value) + (100 - kept) * 1024, total
    assert sum(len(r.value) for r in records[: kept - 1]) <= limit
    assert reasons == ["violation"] * kept + ["invalid-event"] * (100 - kept)
    doc = assert_stub_quarantine(records[kept], f"m{kept}")
    assert "records would exceed" in doc["violations"][0]["message"]
    assert value_of(records[0])["violationsTotal"] == 60
    assert await topic(gw) == []
