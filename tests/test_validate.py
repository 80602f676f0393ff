"""Dry runs (`POST /v1/validate`, `gateway validate`) report what real ingestion does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.conftest import (
    SOURCE_ID,
    WRITE_KEY,
    GatewayFactory,
    basic_auth,
    consume_all,
    ingest_url,
    write_snapshot,
)

ORDER_RULES = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"amount": {"type": "number"}, "coupon": {"type": "string"}},
            "required": ["amount"],
            "additionalProperties": False,
        }
    },
}

SNAPSHOT = {
    "revision": "v1",
    "sources": [
        {
            "id": SOURCE_ID,
            "name": "Shop",
            "writeKeys": [WRITE_KEY],
            "trackingPlan": {
                "id": "tp_shop",
                "version": 4,
                "config": {
                    "track": {
                        "allowUnplannedEvents": "false",
                        "unplannedProperties": "drop",
                        "anyOtherViolation": "drop",
                    }
                },
            },
        }
    ],
    "trackingPlans": [
        {
            "id": "tp_shop",
            "name": "Shop",
            "version": 4,
            "events": [{"name": "Order Completed", "eventType": "track", "rules": ORDER_RULES}],
        }
    ],
}

EVENTS: list[dict[str, Any]] = [
    {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"amount": 5}},
    {"type": "track", "userId": "u2", "event": "Order Completed", "properties": {"amount": "5"}},
    {
        "type": "track",
        "userId": "u3",
        "event": "Order Completed",
        "properties": {"amount": 1, "x": 1},
    },
    {"type": "track", "userId": "u4", "event": "Refund Issued"},
    {"type": "identify", "userId": "u5", "traits": {"name": "Ada"}},
    {"type": "track", "event": "Order Completed", "properties": {"amount": 5}},
]
EXPECTED = [
    ("forwarded", None),
    ("quarantined", "violation"),
    ("quarantined", "unplanned-properties"),
    ("quarantined", "unplanned-event"),
    ("forwarded", None),
    ("quarantined", "invalid-event"),
]


def with_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "messageId": f"m{i}"} for i, e in enumerate(events)]


async def test_dry_run_and_ingestion_agree(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    write_snapshot(tmp_path / "snapshot.json", SNAPSHOT)
    gw = await make_gateway()
    kafka = gw.settings.kafka
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            ingest_url(gw, "/v1/validate"),
            data=orjson.dumps({"batch": with_ids(EVENTS)}),
            headers=basic_auth(),
        )
        assert resp.status == 200
        report = await resp.json()
        # A dry run publishes nothing.
        assert await consume_all(kafka.bootstrap_servers, kafka.events_topic) == []
        assert await consume_all(kafka.bootstrap_servers, kafka.quarantine_topic) == []

        resp = await http.post(
            ingest_url(gw, "/v1/batch"),
            data=orjson.dumps({"batch": with_ids(EVENTS)}),
            headers=basic_auth(),
        )
        assert resp.status == 200

    assert report["events"] == len(EVENTS)
    assert report["forwarded"] == 2
    assert report["quarantined"] == 4
    dry = [(r["outcome"], r["reason"]) for r in report["results"]]
    assert dry == EXPECTED
    assert [r["messageId"] for r in report["results"]] == [f"m{i}" for i in range(len(EVENTS))]
    amount = report["results"][1]["violations"]
    assert amount == [
        {
            "type": "Datatype-Mismatch",
            "message": "must be number",
            "property": "amount",
            "meta": {
                "instancePath": "/properties/amount",
                "schemaPath": "#/properties/properties/properties/amount/type",
            },
        }
    ]

    # Real ingestion: each event ended where the dry run said.
    actual: dict[str, tuple[str, str | None]] = {}
    for record in await consume_all(kafka.bootstrap_servers, kafka.events_topic):
        actual[orjson.loads(record.value)["messageId"]] = ("forwarded", None)
    for record in await consume_all(kafka.bootstrap_servers, kafka.quarantine_topic):
        value = orjson.loads(record.value)
        actual[value["event"]["messageId"]] = ("quarantined", value["reason"])
    assert [actual[f"m{i}"] for i in range(len(EVENTS))] == EXPECTED


async def test_validate_needs_a_write_key(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(ingest_url(gw, "/v1/validate"), json={"batch": EVENTS})
        assert resp.status == 401
        assert (await resp.json())["code"] == "unauthorized"
        resp = await http.post(
            ingest_url(gw, "/v1/validate"), json={"batch": []}, headers=basic_auth()
        )
        assert resp.status == 400


def run_validate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "validate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


def test_cli_validate_reports_the_same_outcomes(tmp_path: Path) -> None:
    snapshot = tmp_path / "plans.json"
    snapshot.write_bytes(orjson.dumps(SNAPSHOT))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in with_ids(EVENTS)) + b"\n")

    done = run_validate(tmp_path, "--snapshot", str(snapshot), str(events), "--json")
    assert done.returncode == 1, done.stderr
    report = orjson.loads(done.stdout)
    assert [(r["outcome"], r["reason"]) for r in report["results"]] == EXPECTED

    text = run_validate(tmp_path, "--snapshot", str(snapshot), str(events))
    assert text.returncode == 1
    assert 'FAIL  line 2: track "Order Completed" -> quarantined (violation)' in text.stdout
    assert "Datatype-Mismatch: must be number (at /properties/amount)" in text.stdout
    assert "6 events: 2 forwarded (0 with violations), 4 quarantined" in text.stdout

    good = tmp_path / "good.jsonl"
    good.write_bytes(orjson.dumps(EVENTS[0]) + b"\n")
    ok = run_validate(tmp_path, "--snapshot", str(snapshot), str(good))
    assert ok.returncode == 0, ok.stdout
    assert "1 events: 1 forwarded" in ok.stdout


def test_cli_validate_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    snapshot = tmp_path / "plans.json"
    snapshot.write_bytes(orjson.dumps(SNAPSHOT))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "track"}\n{not json\n')
    done = run_validate(tmp_path, "--snapshot", str(snapshot), str(bad))
    assert done.returncode == 2
    assert "bad.jsonl:2: not valid JSON" in done.stderr
    missing = run_validate(tmp_path, "--snapshot", str(tmp_path / "nope.json"), str(bad))
    assert missing.returncode == 2
    assert "cannot read snapshot" in missing.stderr
    wrong_key = run_validate(tmp_path, "--snapshot", str(snapshot), str(bad), "--write-key", "nope")
    assert wrong_key.returncode == 2
    assert "write key" in wrong_key.stderr


async def test_validate_reports_fields_of_any_shape(make_gateway: GatewayFactory) -> None:
    """The report echoes ``type`` only as a string: an event's ``type`` may be any JSON, even
    nested deeper than a response can be written."""
    gw = await make_gateway()
    deep: Any = "x"
    for _ in range(300):
        deep = {"k": deep}
    batch = [
        {"type": deep, "userId": "u1", "messageId": "m0"},
        {"type": 7, "userId": "u1", "event": "E", "messageId": "m1"},
        {"type": "track", "userId": "u1", "event": "E", "messageId": "m2"},
    ]
    body = json.dumps({"batch": batch}).encode()  # orjson writes at most 254 levels
    async with aiohttp.ClientSession() as http:
        resp = await http.post(ingest_url(gw, "/v1/validate"), data=body, headers=basic_auth())
        assert resp.status == 200
        report = await resp.json()
    assert [(r["messageId"], r["type"], r["outcome"]) for r in report["results"]] == [
        ("m0", None, "quarantined"),
        ("m1", None, "quarantined"),
        ("m2", "track", "forwarded"),
    ]
