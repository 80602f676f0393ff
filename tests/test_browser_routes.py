"""The browser SDKs' routes over real HTTP: settings documents, sendBeacon, pixels, SDK metrics."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ingest.browser import PIXEL_GIF, query_event
from gateway.server import Gateway
from tests.conftest import (
    DISABLED_KEY,
    SOURCE_ID,
    WRITE_KEY,
    GatewayFactory,
    basic_auth,
    ingest_url,
)
from tests.records_support import topic, value_of

SETTINGS = f"/v1/projects/{WRITE_KEY}/settings"


async def get(
    gw: Gateway, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(ingest_url(gw, path), headers=headers or {}) as response,
    ):
        body = await response.read()
        return response.status, response.headers, body


async def test_segment_settings_send_events_back_to_the_gateway(gateway: Gateway) -> None:
    status, headers, body = await get(gateway, SETTINGS, {"Origin": "https://shop.test"})
    assert status == 200, body
    doc = orjson.loads(body)
    segment = doc["integrations"]["Segment.io"]
    assert segment["apiKey"] == WRITE_KEY
    assert segment["apiHost"] == f"127.0.0.1:{gateway.ingest_port}/v1"
    assert segment["protocol"] == "http"
    assert doc["metrics"]["sampleRate"] == 0  # no {"series": …} posts every 30 s
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Cache-Control"] == "max-age=60"
    assert "Host" in headers["Vary"]
    # Revalidation: the same document is a 304 without a body.
    status, again, body = await get(gateway, SETTINGS, {"If-None-Match": headers["ETag"]})
    assert (status, body, again["ETag"]) == (304, b"", headers["ETag"])


async def test_settings_name_the_public_url_when_configured(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(ingest={"public_url": "https://collect.shop.test/edge/"})
    status, headers, body = await get(gateway, SETTINGS)
    assert status == 200
    segment = orjson.loads(body)["integrations"]["Segment.io"]
    assert (segment["protocol"], segment["apiHost"]) == ("https", "collect.shop.test/edge/v1")
    assert "Vary" not in headers


async def test_forwarded_host_is_believed_only_from_trusted_proxies(
    make_gateway: GatewayFactory,
) -> None:
    forwarded = {"X-Forwarded-Host": "collect.shop.test", "X-Forwarded-Proto": "https"}
    trusting = await make_gateway()  # loopback, where the test client is, is trusted
    _, _, body = await get(trusting, SETTINGS, forwarded)
    segment = orjson.loads(body)["integrations"]["Segment.io"]
    assert (segment["protocol"], segment["apiHost"]) == ("https", "collect.shop.test/v1")
    wary = await make_gateway(ingest={"trusted_proxies": ()})
    _, _, body = await get(wary, SETTINGS, forwarded)
    segment = orjson.loads(body)["integrations"]["Segment.io"]
    assert (segment["protocol"], segment["apiHost"]) == ("http", f"127.0.0.1:{wary.ingest_port}/v1")


async def test_a_host_header_that_is_not_a_host_is_refused(gateway: Gateway) -> None:
    status, _, body = await get(gateway, SETTINGS, {"Host": "shop.test/<script>"})
    assert status == 400
    assert b"ingest.public_url" in body


@pytest.mark.parametrize(("key", "status"), [("wk_nobody", 401), (DISABLED_KEY, 404)])
async def test_settings_of_an_unknown_key_or_disabled_source_are_refused(
    gateway: Gateway, key: str, status: int
) -> None:
    # As on every ingest route: an unknown key is 401, a disabled source 404.
    code, _, body = await get(gateway, f"/v1/projects/{key}/settings")
    assert code == status
    assert orjson.loads(body)["code"] == ("unauthorized" if status == 401 else "source_disabled")
    code, _, _ = await get(gateway, f"/sourceConfig/?writeKey={key}")
    assert code == status


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/sourceConfig/?p=npm&v=3.34.1&build=modern", basic_auth()),
        ("/sourceConfig?writeKey=" + WRITE_KEY, {}),
    ],
)
async def test_rudderstack_source_config(
    gateway: Gateway, path: str, headers: dict[str, str]
) -> None:
    status, response_headers, body = await get(gateway, path, headers)
    assert status == 200, body
    source = orjson.loads(body)["source"]
    assert source["id"] == SOURCE_ID
    assert source["writeKey"] == WRITE_KEY
    assert source["enabled"] is True
    assert (source["config"], source["destinations"]) == ({}, [])  # every event to the gateway
    assert response_headers["ETag"]


async def test_source_config_needs_a_write_key(gateway: Gateway) -> None:
    status, _, body = await get(gateway, "/sourceConfig/")
    assert status == 401
    assert orjson.loads(body)["code"] == "unauthorized"


async def test_pixel_track_and_page_become_events(gateway: Gateway) -> None:
    track = {
        "writeKey": WRITE_KEY,
        "anonymousId": "anon-1",
        "event": "Signed Up",
        "properties.plan": "pro",
        "properties.seats": "3",
        "context.page.url": "https://shop.test/a?b=c",
    }
    status, headers, body = await get(gateway, "/pixel/v1/track?" + urlencode(track))
    assert (status, headers["Content-Type"], body) == (200, "image/gif", PIXEL_GIF)
    page = {"writeKey": WRITE_KEY, "anonymousId": "anon-1", "name": "Pricing"}
    status, _, body = await get(gateway, "/pixel/v1/page?" + urlencode(page))
    assert (status, body) == (200, PIXEL_GIF)
    events = {value_of(r)["type"]: value_of(r) for r in await topic(gateway)}
    assert events["track"]["event"] == "Signed Up"
    assert events["track"]["properties"] == {"plan": "pro", "seats": "3"}
    assert events["track"]["context"]["page"]["url"] == "https://shop.test/a?b=c"
    assert events["page"]["name"] == "Pricing"
    assert all("writeKey" not in e for e in events.values())


async def test_pixel_needs_a_known_key(gateway: Gateway) -> None:
    assert (await get(gateway, "/pixel/v1/track?anonymousId=a&event=E"))[0] == 401
    assert (await get(gateway, "/pixel/v1/track?writeKey=wk_nobody&anonymousId=a"))[0] == 401
    assert await topic(gateway) == []


async def test_pixel_nested_past_what_can_be_written_is_quarantined(gateway: Gateway) -> None:
    # The worst a query string allows (about 8 KB): thousands of levels, one name.
    deep = ".".join(["p"] * 3000)
    query = urlencode({"writeKey": WRITE_KEY, "anonymousId": "a1", "event": "Deep", deep: "x"})
    status, _, body = await get(gateway, "/pixel/v1/track?" + query)
    assert (status, body) == (200, PIXEL_GIF)
    [record] = await topic(gateway, quarantine=True)
    doc = value_of(record)
    assert doc["reason"] == "invalid-event"
    assert doc["event"]["event"] == "Deep"  # a stub naming the event
    assert await topic(gateway) == []


def test_query_event_nests_dotted_names() -> None:
    pairs = [("a", "1"), ("a.b", "2"), ("c.d", "3"), ("c.d", "4"), ("writeKey", "K")]
    assert query_event(pairs) == {"a": {"b": "2"}, "c": {"d": "4"}}


async def test_beacon_batch_with_the_key_in_the_query(gateway: Gateway) -> None:
    body = b'{"batch": [{"type": "track", "event": "Beaconed", "anonymousId": "a1"}]}'
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            ingest_url(gateway, f"/beacon/v1/batch?writeKey={WRITE_KEY}"),
            data=body,
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
    [record] = await topic(gateway)
    assert value_of(record)["event"] == "Beaconed"


async def test_sdk_metrics_are_accepted_and_dropped(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        url = ingest_url(gateway, "/v1/m")
        async with session.post(url, data=b'{"series": []}') as response:
            assert response.status == 200
        async with session.post(url, data=b"x" * (65 * 1024)) as response:
            assert response.status == 413
    assert await topic(gateway) == []


names = st.lists(
    st.sampled_from(["properties", "context", "a", "", "writeKey", "x" * 300]), max_size=40
).map(".".join)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pairs=st.lists(st.tuples(names, st.text(max_size=50)), max_size=20))
async def test_any_pixel_query_is_answered_without_a_server_error(
    gateway: Gateway, pairs: list[tuple[str, str]]
) -> None:
    query = urlencode([("writeKey", WRITE_KEY), *pairs])
    status, headers, body = await get(gateway, "/pixel/v1/track?" + query)
    assert status < 500, body
    if status == 200:
        assert body == PIXEL_GIF
    else:
        assert headers["Content-Type"].startswith("application/json")


header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from([WRITE_KEY, DISABLED_KEY]) | header_text.filter(lambda k: "/" not in k),
    host=header_text,
    forwarded=header_text,
    tag=header_text,
)
async def test_any_settings_request_is_answered_without_a_server_error(
    gateway: Gateway, key: str, host: str, forwarded: str, tag: str
) -> None:
    headers = {"X-Forwarded-Host": forwarded, "X-Forwarded-Proto": host, "If-None-Match": tag}
    if host:
        headers["Host"] = host
    settings_path = f"/v1/projects/{quote(key, safe='')}/settings"
    config_path = "/sourceConfig/?" + urlencode({"writeKey": key})
    for path, field in ((settings_path, "integrations"), (config_path, "source")):
        status, _, body = await get(gateway, path, headers)
        assert status in (200, 304, 400, 401, 404), body
        if status == 200:
            assert field in orjson.loads(body)
        elif status != 304:
            assert orjson.loads(body)["code"]
