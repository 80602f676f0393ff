"""The real Node SDKs from npm (``@segment/analytics-node``, ``@rudderstack/rudder-sdk-node``,
which gzips a form-encoded body), given only the gateway's URL: every call type arrives in Kafka
with its fields, the plan's stamps and no write key."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from typing import Any

import orjson
import pytest

from gateway.server import Gateway
from tests.browser_support import JS_DIR, node_modules
from tests.conftest import WRITE_KEY, consume
from tests.records_support import PLAN_ID

CALLS = {"identify", "track", "page", "screen", "group", "alias"}


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
async def test_node_sdk_delivers_every_call(planned: Gateway, sdk: str) -> None:
    node_modules()
    node = shutil.which("node")
    assert node, "node is needed for the Node SDK tests"
    user = f"u-{uuid.uuid4().hex[:12]}"
    gateway_url = f"http://127.0.0.1:{planned.ingest_port}"
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "node-sdks.mjs"),
        sdk,
        gateway_url,
        WRITE_KEY,
        user,
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, (out + err).decode()

    kafka = planned.settings.kafka
    records = await consume(kafka.bootstrap_servers, kafka.events_topic, len(CALLS))
    events: dict[str, Any] = {}
    for record in records:
        event = orjson.loads(record.value)
        assert event["userId"] == user
        events[event["type"]] = event
    assert set(events) == CALLS
    assert events["track"]["properties"] == {"orderId": "o-1", "total": 12.5}
    traits = events["identify"].get("traits") or events["identify"]["context"]["traits"]
    assert traits["email"] == "zoe@example.com"
    assert events["screen"]["name"] == "Home"
    assert events["group"]["groupId"] == "g-1"
    assert events["alias"]["previousId"] == "anon-1"
    for event in events.values():
        assert "writeKey" not in event
        assert event["context"]["trackingPlanId"] == PLAN_ID
