"""The real browser SDKs from npm, in headless Chromium on another origin, given only the
gateway's URL: they load their settings from it, send every call type through it, and the
events arrive in Kafka with their properties, the plan's stamps and no write key.

- ``@segment/analytics-next``: ``cdnURL`` = the gateway (settings), one request per call and
  in batching mode (``/v1/b``);
- ``@rudderstack/analytics-js`` (v3): ``configUrl`` = ``dataPlaneUrl`` = the gateway
  (``/sourceConfig/``), per call, with ``/v1/batch``, and with sendBeacon (``/beacon/v1/batch``);
- ``rudder-sdk-js`` (v1.1): the same two URLs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.server import Gateway
from tests.browser_support import chromium, page_app
from tests.conftest import SOURCE_ID, WRITE_KEY, consume_all, headers_of
from tests.records_support import PLAN_ID

CALLS = {"identify", "track", "page", "group"}
DELIVERY_TIMEOUT_S = 30.0

SEGMENT_SETTINGS = "/v1/projects/{writeKey}/settings"
SOURCE_CONFIG = "/sourceConfig/"
SEGMENT_CALLS = {"/v1/i", "/v1/t", "/v1/p", "/v1/g"}
RUDDER_CALLS = {"/v1/identify", "/v1/track", "/v1/page", "/v1/group"}
# (page, SDK bundle, mode, the routes it must have used: its settings, then its deliveries).
CASES = [
    ("analytics-next.html", "analytics-next", "", {SEGMENT_SETTINGS, *SEGMENT_CALLS}),
    ("analytics-next.html", "analytics-next", "batching", {SEGMENT_SETTINGS, "/v1/b"}),
    ("rudderstack.html", "rudderstack-v3", "", {SOURCE_CONFIG, *RUDDER_CALLS}),
    ("rudderstack.html", "rudderstack-v3", "batch", {SOURCE_CONFIG, "/v1/batch"}),
    ("rudderstack.html", "rudderstack-v3", "beacon", {SOURCE_CONFIG, "/beacon/v1/batch"}),
    ("rudderstack.html", "rudder-sdk-js", "", {SOURCE_CONFIG, *RUDDER_CALLS}),
]
DELIVERY_ROUTES = {*SEGMENT_CALLS, *RUDDER_CALLS, "/v1/b", "/v1/batch", "/beacon/v1/batch"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """The origin the pages are served from (another port than the gateway's)."""
    runner = web.AppRunner(page_app())
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize(
    ("page", "sdk", "mode", "routes"), CASES, ids=[f"{c[1]}-{c[2]}" for c in CASES]
)
async def test_browser_sdk_delivers_every_call(
    planned: Gateway, site: str, browser: Any, page: str, sdk: str, mode: str, routes: set[str]
) -> None:
    user = f"u-{uuid.uuid4().hex[:12]}"
    gateway_url = f"http://127.0.0.1:{planned.ingest_port}"
    query = f"gateway={gateway_url}&key={WRITE_KEY}&user={user}&sdk={sdk}&mode={mode}"
    if mode == "batching":
        query += "&batching=1"
    outcome = await asyncio.to_thread(_run_page, browser, f"{site}/pages/{page}?{query}")
    assert outcome == "sent", outcome

    events = await _delivered(planned, user)
    by_type = {e["type"]: e for e in events}
    assert set(by_type) == CALLS, [e["type"] for e in events]
    track, identify = by_type["track"], by_type["identify"]
    assert track["event"] == "Order Completed"
    assert track["properties"] == {"orderId": "o-1", "total": 12.5}
    traits = identify.get("traits") or identify["context"]["traits"]
    assert traits["email"] == "zoe@example.com"
    assert by_type["page"]["properties"]["path"] == "/install"
    assert by_type["group"]["groupId"] == "g-1"
    for event in events:
        assert "writeKey" not in event
        assert event["context"]["trackingPlanId"] == PLAN_ID
        assert event["context"]["violationErrors"] == []
        assert event["userId"] == user
    # The SDK loaded its settings from the gateway and delivered the way its mode says.
    used = _answered_routes(planned)
    assert routes <= used, used
    assert not (used & DELIVERY_ROUTES) - routes, used


def _answered_routes(gateway: Gateway) -> set[str]:
    """Routes the gateway answered 200 (or 304) since it started, from its request metrics."""
    used = set()
    for metric in gateway.metrics.registry.collect():
        for sample in metric.samples:
            counted = sample.name == "gateway_request_duration_seconds_count" and sample.value
            if counted and sample.labels["status"] in ("200", "304"):
                used.add(sample.labels["route"])
    return used


def _run_page(driver: Any, url: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, DELIVERY_TIMEOUT_S).until(
        lambda d: d.execute_script("return window.outcome")
    )
    outcome = driver.execute_script("return window.outcome")
    if outcome == "sent":
        # sendBeacon and batching queues also flush when the page goes away.
        driver.get("about:blank")
    return outcome


async def _delivered(gateway: Gateway, user: str) -> list[dict[str, Any]]:
    """The events of ``user`` on the events topic, once every call type is there (or time)."""
    kafka = gateway.settings.kafka
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DELIVERY_TIMEOUT_S
    while True:
        records = await consume_all(kafka.bootstrap_servers, kafka.events_topic)
        events = []
        for record in records:
            assert headers_of(record)["source-id"] == SOURCE_ID
            value = orjson.loads(record.value)
            if value.get("userId") == user:
                events.append(value)
        if {e["type"] for e in events} >= CALLS or loop.time() > deadline:
            return events
        await asyncio.sleep(0.3)
