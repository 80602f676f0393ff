"""Enforcement end to end: HTTP in, the real broker and /metrics out.

A source is connected to a tracking plan through the snapshot file. One batch mixes valid,
violating, unplanned and additional-property events under a config with drop rules; the test
checks the 200 (only once both topics hold the records), every record on the events and
quarantine topics, and the exact Prometheus counters. A plan change in the snapshot file takes
effect without a restart.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from gateway.server import Gateway
from tests.conftest import (
    HEADER_NAMES,
    SOURCE_ID,
    WRITE_KEY,
    GatewayFactory,
    basic_auth,
    canonical,
    consume,
    headers_of,
    ingest_url,
    metric_samples,
    violation,
    write_snapshot,
)

Json = dict[str, Any]

PLAN_ID = "tp_e2e_orders"
EVENT_NAME = "Order Completed"
PROPS_SP = "#/properties/properties"
# Fields normalization may add to an event; everything else arrives untouched.
NORMALIZED_FIELDS = {
    "messageId",
    "receivedAt",
    "sentAt",
    "originalTimestamp",
    "timestamp",
    "request_ip",
}


# ---------------------------------------------------------------------------------------------
# snapshot


def order_rule(amount_type: str) -> Json:
    return {
        "name": EVENT_NAME,
        "eventType": "track",
        "identitySection": "properties",
        "rules": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "properties": {
                    "type": "object",
                    "properties": {
                        "amount": {"type": amount_type},
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    },
                    "required": ["amount"],
                    "additionalProperties": False,
                }
            },
        },
    }


IDENTIFY_RULE = {
    "name": "",
    "eventType": "identify",
    "identitySection": "traits",
    "rules": {
        "type": "object",
        "properties": {
            "traits": {
                "type": "object",
                "properties": {"email": {"type": "string", "format": "email"}},
                "required": ["email"],
            }
        },
        "required": ["traits"],
    },
}
CONFIG = {
    "global": {
        "allowUnplannedEvents": "false",
        "unplannedProperties": "drop",
        "anyOtherViolation": "forward",
    },
    "identify": {"anyOtherViolation": "DROP"},
}


def plan_snapshot(version: int, amount_type: str = "number") -> Json:
    return {
        "revision": f"r{version}",
        "sources": [
            {
                "id": SOURCE_ID,
                "name": "Web",
                "enabled": True,
                "writeKeys": [WRITE_KEY],
                "trackingPlan": {"id": PLAN_ID, "version": version, "config": CONFIG},
            }
        ],
        "trackingPlans": [
            {
                "id": PLAN_ID,
                "name": "Orders",
                "version": version,
                "events": [order_rule(amount_type), IDENTIFY_RULE],
            }
        ],
    }


AMOUNT_NUMBER_V = violation(
    "Datatype-Mismatch",
    "must be number",
    "amount",
    "/properties/amount",
    f"{PROPS_SP}/properties/amount/type",
)
CURRENCY_V = violation(
    "Advance-Rules-Violation",
    'must match pattern "^[A-Z]{3}$"',
    "currency",
    "/properties/currency",
    f"{PROPS_SP}/properties/currency/pattern",
)
COUPON_V = violation(
    "Additional-Properties",
    "must NOT have additional properties 'coupon'",
    "coupon",
    "/properties",
    f"{PROPS_SP}/additionalProperties",
)
EMAIL_V = violation(
    "Advance-Rules-Violation",
    'must match format "email"',
    "email",
    "/traits/email",
    "#/properties/traits/properties/email/format",
)
UNPLANNED_V = {
    "type": "Unplanned-Event",
    "message": "no schema for event: Cart Viewed",
    "property": "",
    "meta": {},
}


def track(mid: str, name: str, **properties: Any) -> Json:
    return {
        "type": "track",
        "event": name,
        "userId": f"user-{mid}",
        "messageId": mid,
        "properties": properties,
        "context": {"library": {"name": "e2e"}},
    }


# (event, outcome "forwarded" | quarantine reason, expected violations)
MIX: list[tuple[Json, str, list[Json]]] = [
    (track("valid-1", EVENT_NAME, amount=10, currency="EUR"), "forwarded", []),
    (track("type-1", EVENT_NAME, amount="10"), "forwarded", [AMOUNT_NUMBER_V]),
    (
        track("two-1", EVENT_NAME, amount="x", currency="eur"),
        "forwarded",
        [AMOUNT_NUMBER_V, CURRENCY_V],
    ),
    (track("unplanned-1", "Cart Viewed", items=2), "unplanned-event", [UNPLANNED_V]),
    (track("extra-1", EVENT_NAME, amount=5, coupon="SPRING"), "unplanned-properties", [COUPON_V]),
    (
        track("extra-2", EVENT_NAME, amount="5", coupon="SPRING"),
        "unplanned-properties",
        [AMOUNT_NUMBER_V, COUPON_V],
    ),
    (
        {
            "type": "identify",
            "userId": "user-id-ok",
            "messageId": "id-ok",
            "traits": {"email": "a@b.co"},
        },
        "forwarded",
        [],
    ),
    (
        {
            "type": "identify",
            "userId": "user-id-bad",
            "messageId": "id-bad",
            "traits": {"email": "no"},
        },
        "violation",
        [EMAIL_V],
    ),
    (
        {"type": "page", "userId": "user-page", "messageId": "page-1", "name": "Home"},
        "forwarded",
        [],
    ),
    (
        {"type": "alias", "userId": "user-alias", "messageId": "alias-1", "previousId": "anon"},
        "forwarded",
        [],
    ),
]


# ---------------------------------------------------------------------------------------------
# HTTP and Kafka helpers


async def post_batch(gw: Gateway, events: list[Json], key: str = WRITE_KEY) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            ingest_url(gw, "/v1/batch"),
            data=orjson.dumps({"batch": events}),
            headers={"Content-Type": "application/json", **basic_auth(key)},
        ) as resp,
    ):
        return resp.status, await resp.text()


async def get_metrics(gw: Gateway) -> str:
    async with aiohttp.ClientSession() as http, http.get(ingest_url(gw, "/metrics")) as resp:
        assert resp.status == 200
        return await resp.text()


async def has_data(gw: Gateway, topic: str) -> bool:
    """Whether the broker reports any data on ``topic`` right now (its end offsets above 0).

    Only "above 0" is asked: the embedded broker reports a batch's end offset as its base + 1,
    not its last offset + 1, so the exact count comes from reading the records instead.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=gw.settings.kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return False
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = await consumer.end_offsets(partitions)
        return bool(sum(ends.values()) > 0)
    finally:
        await consumer.stop()


async def records_of(gw: Gateway, topic: str, count: int, timeout_s: float = 15.0) -> list[Any]:
    """Exactly ``count`` records from the start of ``topic``, in offset order."""
    records = await consume(gw.settings.kafka.bootstrap_servers, topic, count, timeout_s)
    assert len(records) == count, [r.value for r in records]
    return sorted(records, key=lambda r: (r.partition, r.offset))


def value_of(record: Any) -> Json:
    value = orjson.loads(record.value)
    assert isinstance(value, dict)
    return value


def assert_as_received(got: Json, sent: Json) -> None:
    """The event as received: what was sent plus normalization, no context stamps."""
    for key, value in sent.items():
        assert got[key] == value, key
    assert set(got) - set(sent) <= NORMALIZED_FIELDS


def of_family(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str
) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


# ---------------------------------------------------------------------------------------------
# tests


async def test_mixed_batch_forwarded_quarantined_and_counted(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    write_snapshot(tmp_path / "snapshot.json", plan_snapshot(1))
    gw = await make_gateway()
    kafka = gw.settings.kafka
    sent = [copy.deepcopy(event) for event, _, _ in MIX]

    status, text = await post_batch(gw, sent)
    assert (status, text) == (200, "OK")

    # 200 means durable: both topics already hold every record of the request.
    n_forwarded = sum(1 for _, outcome, _ in MIX if outcome == "forwarded")
    n_quarantined = len(MIX) - n_forwarded
    assert await has_data(gw, kafka.events_topic)
    assert await has_data(gw, kafka.quarantine_topic)
    events_records = await records_of(gw, kafka.events_topic, n_forwarded, timeout_s=3.0)
    quarantine_records = await records_of(gw, kafka.quarantine_topic, n_quarantined, timeout_s=3.0)

    forwarded = {value_of(r)["messageId"]: r for r in events_records}
    quarantined = {value_of(r)["event"]["messageId"]: r for r in quarantine_records}
    assert len(forwarded) == n_forwarded
    assert len(quarantined) == n_quarantined

    for event, outcome, expected in MIX:
        mid = event["messageId"]
        if outcome == "forwarded":
            record = forwarded[mid]
            value = value_of(record)
            context = value["context"]
            assert context["trackingPlanId"] == PLAN_ID, mid
            assert context["trackingPlanVersion"] == 1, mid
            assert canonical(context["violationErrors"]) == canonical(expected), mid
            assert "omittedProperties" not in context
            # Everything but the stamps is the event as sent (plus normalization).
            stamps = {"trackingPlanId", "trackingPlanVersion", "violationErrors"}
            unstamped = {**value, "context": {k: v for k, v in context.items() if k not in stamps}}
            if "context" not in event:
                assert unstamped["context"] == {}
                del unstamped["context"]
            assert_as_received(unstamped, event)
        else:
            assert mid not in forwarded
            record = quarantined[mid]
            value = value_of(record)
            assert set(value) == {
                "reason",
                "sourceId",
                "trackingPlanId",
                "trackingPlanVersion",
                "violations",
                "violationsTotal",
                "receivedAt",
                "event",
            }
            assert value["reason"] == outcome, mid
            assert value["violationsTotal"] == len(expected), mid
            assert value["sourceId"] == SOURCE_ID
            assert value["trackingPlanId"] == PLAN_ID
            assert value["trackingPlanVersion"] == 1
            assert canonical(value["violations"]) == canonical(expected), mid
            assert value["receivedAt"] == value["event"]["receivedAt"]
            assert_as_received(value["event"], event)
            stamps_found = set(value["event"].get("context", {})) & {
                "trackingPlanId",
                "trackingPlanVersion",
                "violationErrors",
                "omittedProperties",
            }
            assert stamps_found == set(), mid
        headers = headers_of(record)
        assert set(headers) == HEADER_NAMES
        assert record.key == event["userId"].encode()
        assert headers["source-id"] == SOURCE_ID
        assert headers["event-type"] == event["type"]
        assert headers["message-id"] == mid
        assert headers["tracking-plan-id"] == PLAN_ID
        assert headers["tracking-plan-version"] == "1"
        assert headers["violations"] == str(len(expected)), mid

    samples = metric_samples(await get_metrics(gw))
    src = SOURCE_ID
    assert of_family(samples, "gateway_events_received_total") == {
        labels(source_id=src, type="track"): 6.0,
        labels(source_id=src, type="identify"): 2.0,
        labels(source_id=src, type="page"): 1.0,
        labels(source_id=src, type="alias"): 1.0,
    }
    assert of_family(samples, "gateway_events_forwarded_total") == {
        labels(source_id=src, type="track"): 3.0,
        labels(source_id=src, type="identify"): 1.0,
        labels(source_id=src, type="page"): 1.0,
        labels(source_id=src, type="alias"): 1.0,
    }
    assert of_family(samples, "gateway_events_quarantined_total") == {
        labels(source_id=src, type="track", reason="unplanned-event"): 1.0,
        labels(source_id=src, type="track", reason="unplanned-properties"): 2.0,
        labels(source_id=src, type="identify", reason="violation"): 1.0,
    }

    def vkey(event: str, vtype: str) -> frozenset[tuple[str, str]]:
        # The version of the rule that found the violation; none for an unplanned event.
        version = "" if event == "(unplanned)" else "1"
        return labels(
            source_id=src,
            tracking_plan_id=PLAN_ID,
            event=event,
            rule_version=version,
            violation_type=vtype,
        )

    assert of_family(samples, "gateway_violations_total") == {
        vkey(EVENT_NAME, "Datatype-Mismatch"): 3.0,
        vkey(EVENT_NAME, "Advance-Rules-Violation"): 1.0,
        vkey(EVENT_NAME, "Additional-Properties"): 2.0,
        vkey("(unplanned)", "Unplanned-Event"): 1.0,
        vkey("identify", "Advance-Rules-Violation"): 1.0,
    }

    def checked(event: str, valid: str) -> frozenset[tuple[str, str]]:
        return labels(source_id=src, tracking_plan_id=PLAN_ID, event=event, valid=valid)

    # Every event of the source was checked; valid="false" whatever its outcome.
    assert of_family(samples, "gateway_events_checked_total") == {
        checked(EVENT_NAME, "true"): 1.0,
        checked(EVENT_NAME, "false"): 4.0,
        checked("(unplanned)", "false"): 1.0,
        checked("identify", "true"): 1.0,
        checked("identify", "false"): 1.0,
        checked("page", "true"): 1.0,
        checked("alias", "true"): 1.0,
    }


async def test_plan_change_takes_effect_without_restart(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    snapshot_file = tmp_path / "snapshot.json"
    write_snapshot(snapshot_file, plan_snapshot(1, amount_type="number"))
    gw = await make_gateway()
    topic = gw.settings.kafka.events_topic

    status, _ = await post_batch(gw, [track("v1-probe", EVENT_NAME, amount="10")])
    assert status == 200
    [first] = await records_of(gw, topic, 1)
    assert value_of(first)["context"]["trackingPlanVersion"] == 1
    assert value_of(first)["context"]["violationErrors"] == [AMOUNT_NUMBER_V]
    assert headers_of(first)["tracking-plan-version"] == "1"

    # Version 2 wants amount as a string; the cache polls the file every 0.2 s.
    write_snapshot(snapshot_file, plan_snapshot(2, amount_type="string"))
    latest: Json | None = None
    record: Any = None
    for attempt in range(50):  # at most ~10 s
        status, _ = await post_batch(gw, [track(f"probe-{attempt}", EVENT_NAME, amount="10")])
        assert status == 200
        record = (await records_of(gw, topic, attempt + 2))[-1]
        latest = value_of(record)
        assert latest["messageId"] == f"probe-{attempt}"
        if latest["context"]["trackingPlanVersion"] == 2:
            break
        await asyncio.sleep(0.2)
    assert latest is not None
    assert latest["context"]["trackingPlanVersion"] == 2, "plan change not picked up"
    assert latest["context"]["trackingPlanId"] == PLAN_ID
    assert latest["context"]["violationErrors"] == []
    assert headers_of(record)["tracking-plan-version"] == "2"
    assert headers_of(record)["violations"] == "0"

    # The new rule is the one applied: a numeric amount now violates it.
    status, _ = await post_batch(gw, [track("v2-number", EVENT_NAME, amount=10)])
    assert status == 200
    record = (await records_of(gw, topic, attempt + 3))[-1]
    value = value_of(record)
    assert value["messageId"] == "v2-number"
    assert value["context"]["trackingPlanVersion"] == 2
    assert value["context"]["violationErrors"] == [
        violation(
            "Datatype-Mismatch",
            "must be string",
            "amount",
            "/properties/amount",
            f"{PROPS_SP}/properties/amount/type",
        )
    ]
    assert headers_of(record)["tracking-plan-version"] == "2"
    assert headers_of(record)["violations"] == "1"


async def test_source_without_plan_passes_untouched(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    doc = plan_snapshot(1)
    doc["sources"].append(
        {"id": "src_free", "name": "Free", "enabled": True, "writeKeys": ["wk_free"]}
    )
    write_snapshot(tmp_path / "snapshot.json", doc)
    gw = await make_gateway()
    kafka = gw.settings.kafka
    sent = track("free-1", "Cart Viewed", coupon="SPRING")  # unplanned, with extras
    status, text = await post_batch(gw, [copy.deepcopy(sent)], key="wk_free")
    assert (status, text) == (200, "OK")
    [record] = await records_of(gw, kafka.events_topic, 1)
    value = value_of(record)
    assert_as_received(value, sent)  # context included: no stamps at all
    headers = headers_of(record)
    assert headers["source-id"] == "src_free"
    assert headers["tracking-plan-id"] == ""
    assert headers["tracking-plan-version"] == ""
    assert headers["violations"] == "0"
    assert not await has_data(gw, kafka.quarantine_topic)


async def test_omit_and_suppressed_errors_over_http(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    doc = plan_snapshot(4)
    doc["sources"][0]["trackingPlan"]["config"] = {
        "global": {"unplannedProperties": "drop", "propagateValidationErrors": False},
        "track": {"unplannedProperties": "Omit"},
    }
    write_snapshot(tmp_path / "snapshot.json", doc)
    gw = await make_gateway()
    kafka = gw.settings.kafka
    sent = track("omit-1", EVENT_NAME, amount=3, currency="EUR", coupon="SPRING")
    status, _ = await post_batch(gw, [copy.deepcopy(sent)])
    assert status == 200
    [record] = await records_of(gw, kafka.events_topic, 1)
    value = value_of(record)
    assert value["properties"] == {"amount": 3, "currency": "EUR"}
    assert value["context"] == {
        "library": {"name": "e2e"},
        "trackingPlanId": PLAN_ID,
        "trackingPlanVersion": 4,
        "omittedProperties": ["properties.coupon"],
    }
    headers = headers_of(record)
    assert headers["tracking-plan-id"] == PLAN_ID
    assert headers["tracking-plan-version"] == "4"
    assert not await has_data(gw, kafka.quarantine_topic)
