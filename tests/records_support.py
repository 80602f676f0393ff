"""Helpers shared by the tests of record bounds (tests/test_records_*.py).

A source connected to a one-event plan through the snapshot file, posting over real HTTP, and
reading back whole topics from the real broker.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gateway.server import Gateway
from tests.conftest import (
    SOURCE_ID,
    WRITE_KEY,
    GatewayFactory,
    basic_auth,
    consume_all,
    ingest_url,
    snapshot_doc,
    write_snapshot,
)

Json = dict[str, Any]
PLAN_ID = "tp_records"


def plan_snapshot(
    rules: Json, config: Json, event: str = "Tagged", event_type: str = "track"
) -> Json:
    """The test source connected to a plan of one event with ``rules``."""
    doc = snapshot_doc()
    doc["sources"][0]["trackingPlan"] = {"id": PLAN_ID, "version": 1, "config": config}
    doc["trackingPlans"] = [
        {
            "id": PLAN_ID,
            "name": "Records",
            "version": 1,
            "events": [
                {
                    "name": event if event_type == "track" else "",
                    "eventType": event_type,
                    "identitySection": "properties",
                    "rules": rules,
                }
            ],
        }
    ]
    return doc


async def gateway_with_plan(
    make_gateway: GatewayFactory, tmp_path: Path, snapshot: Json, **overrides: Json
) -> Gateway:
    write_snapshot(tmp_path / "snapshot.json", snapshot)
    return await make_gateway(**overrides)


async def post_raw(gw: Gateway, path: str, body: bytes) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            ingest_url(gw, path),
            data=io.BytesIO(body),  # large bodies as a stream, as aiohttp asks
            headers={"Content-Type": "application/json", **basic_auth(WRITE_KEY)},
        ) as resp,
    ):
        return resp.status, await resp.text()


async def post_json(gw: Gateway, path: str, doc: Any) -> tuple[int, str]:
    return await post_raw(gw, path, orjson.dumps(doc))


async def topic(gw: Gateway, quarantine: bool = False) -> list[Any]:
    """Every record of the gateway's events (or quarantine) topic, in offset order."""
    s = gw.settings.kafka
    name = s.quarantine_topic if quarantine else s.events_topic
    records = await consume_all(s.bootstrap_servers, name)
    return sorted(records, key=lambda r: (r.partition, r.offset))


def value_of(record: Any) -> Json:
    value = orjson.loads(record.value)
    assert isinstance(value, dict)
    return value


def assert_stub_quarantine(record: Any, message_id: str) -> Json:
    """An invalid-event quarantine record whose event is a stub of ``message_id``."""
    doc = value_of(record)
    assert doc["reason"] == "invalid-event", doc
    assert doc["sourceId"] == SOURCE_ID
    assert doc["violationsTotal"] == len(doc["violations"]) == 1
    event = doc["event"]
    assert event["_truncated"] is True
    assert event["messageId"] == message_id
    assert set(event) <= {
        "type",
        "event",
        "name",
        "messageId",
        "userId",
        "anonymousId",
        "receivedAt",
        "_truncated",
        "_originalBytes",
    }
    return doc
