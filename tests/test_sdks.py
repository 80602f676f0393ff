"""The real Segment and RudderStack Python SDKs, unmodified but for ``host``, against the gateway.

Each SDK delivers identify, track, page, screen, group and alias calls; a Kafka consumer then
finds every one on the events topic, keyed and labelled as the README's Kafka output section
says, normalized as its Ingest HTTP API section says, and otherwise byte-for-byte what the SDK
sent. The SDKs are synchronous (``requests``), so they run in a worker thread while the
in-process gateway keeps serving on the event loop.

``sync_mode=True`` makes each SDK call post at once and raise on any non-2xx answer, so a
failed upload fails the test instead of being swallowed by a background thread. A response
hook on the SDK's own ``requests`` session records what went over the wire (observation only:
nothing is replaced), which gives the batch's ``sentAt`` and rudder's ``Content-Encoding``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import orjson
import pytest
import requests
import rudderstack.analytics.client as rudder_client
import rudderstack.analytics.request as rudder_request
import segment.analytics.client as segment_client
import segment.analytics.request as segment_request

from gateway.server import Gateway
from tests.conftest import SOURCE_ID, WRITE_KEY, consume, headers_of

# Fields the gateway adds in normalization; every other field must be untouched.
NORMALIZED_FIELDS = {"receivedAt", "sentAt", "originalTimestamp", "request_ip"}
NAMED_TYPES = {"track", "page", "screen"}
CLOCK_SLACK = timedelta(seconds=2)

# An explicit, old client timestamp: the gateway must keep it, not "correct" it.
FIXED_TIMESTAMP = datetime(2024, 2, 29, 23, 59, 58, 123000, tzinfo=UTC)

ORDER_PROPERTIES: dict[str, Any] = {
    "orderId": "ord-42",
    "total": 1234.5,
    "revenue": 0.1,
    "tiny": 1e-7,
    "huge": 1.7976931348623157e308,
    "precise": 123456789.12345679,
    "bigInt": 2**53 + 1,
    "maxInt64": 2**63 - 1,
    "minInt64": -(2**63),
    "zero": 0,
    "negative": -17,
    "flag": True,
    "off": False,
    "nothing": None,
    "currency": "€",
    "title": "Crème brûlée — 日本語 — שלום — 🚀🎉",
    "combining": "e\u0301",
    "control": "tab\tnew\nline\u0000nul",
    "quote": 'say "hi" \\ bye',
    "ключ": "значение",
    "a.b": {"$weird key": [1, "two", 3.0]},
    "items": [
        {"sku": "A-1", "price": 19.99, "qty": 2, "tags": ["x", None, True]},
        {"sku": "B-2", "price": 0, "qty": 1, "tags": []},
    ],
    "deep": {"a": {"b": {"c": [1, [2, [3, {"d": "ünïcødé"}]]]}}},
    "empty": {},
}
USER_TRAITS: dict[str, Any] = {
    "email": "zoë@example.com",
    "name": "Zoë Ångström",
    "age": 37,
    "score": 99.95,
    "address": {"city": "München", "zip": "80331", "geo": [48.137, 11.575]},
    "plan": None,
}
GROUP_TRAITS: dict[str, Any] = {"name": "Ünited Ltd 株式会社", "employees": 1200, "tier": {"x": []}}
PAGE_PROPERTIES: dict[str, Any] = {"path": "/docs/ünï", "referrer": "", "ratio": 16 / 9}
SCREEN_PROPERTIES: dict[str, Any] = {"variant": "B", "steps": [1, 2, 3], "nested": {"ok": True}}


def deliver_calls(client: Any) -> list[dict[str, Any]]:
    """One call of each type; returns the messages exactly as the SDK serialized them."""
    calls: list[Callable[[], tuple[bool, dict[str, Any]]]] = [
        lambda: client.identify(user_id="user-1", traits=dict(USER_TRAITS)),
        lambda: client.track(
            user_id="user-1", event="Order Completed", properties=dict(ORDER_PROPERTIES)
        ),
        lambda: client.page(
            anonymous_id="anon-1",
            category="Docs",
            name="Getting Started",
            properties=dict(PAGE_PROPERTIES),
        ),
        lambda: client.screen(
            user_id="user-1",
            name="Checkout ✓",
            properties=dict(SCREEN_PROPERTIES),
            timestamp=FIXED_TIMESTAMP,
        ),
        lambda: client.group(anonymous_id="anon-1", group_id="grp-1", traits=dict(GROUP_TRAITS)),
        lambda: client.alias(previous_id="anon-1", user_id="user-1"),
    ]
    sent = []
    for call in calls:
        queued, msg = call()  # sync_mode: posts now, raises APIError on any failure
        assert queued
        # What went over the wire: the SDK's own JSON encoding of the message.
        sent.append(json.loads(json.dumps(msg, cls=segment_request.DatetimeSerializer)))
    return sent


class WireLog:
    """Records every response of an SDK's module-level requests session (observation only)."""

    def __init__(self, module: ModuleType) -> None:
        self.session: requests.Session = module._session
        self.responses: list[requests.Response] = []

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.responses.append(response)

    def __enter__(self) -> WireLog:
        self.session.hooks["response"].append(self.hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.hooks["response"].remove(self.hook)
        self.session.close()  # no pooled sockets left to leak into later tests

    def bodies(self) -> list[dict[str, Any]]:
        out = []
        for response in self.responses:
            raw = response.request.body
            assert raw is not None
            data = raw.encode() if isinstance(raw, str) else raw
            assert isinstance(data, bytes)
            if response.request.headers.get("Content-Encoding") == "gzip":
                data = gzip.decompress(data)
            out.append(json.loads(data))
        return out


async def run_sdk(client: Any, module: ModuleType) -> tuple[list[dict[str, Any]], WireLog]:
    with WireLog(module) as wire:
        sent = await asyncio.to_thread(deliver_calls, client)
    assert [r.status_code for r in wire.responses] == [200] * len(sent)
    assert all(r.text == "OK" for r in wire.responses)
    return sent, wire


async def check_on_kafka(
    gateway: Gateway,
    sent: list[dict[str, Any]],
    wire: WireLog,
    before: datetime,
    after: datetime,
) -> None:
    bodies = wire.bodies()
    assert len(bodies) == len(sent)
    sent_at_by_id = {}
    for body, msg in zip(bodies, sent, strict=True):
        # sync_mode posts each call as a one-event batch with the envelope's sentAt.
        assert [item["messageId"] for item in body["batch"]] == [msg["messageId"]]
        assert body["batch"][0] == msg
        sent_at_by_id[msg["messageId"]] = body["sentAt"]

    s = gateway.settings.kafka
    records = await consume(s.bootstrap_servers, s.events_topic, len(sent))
    assert len(records) == len(sent)
    by_id = {headers_of(r)["message-id"]: r for r in records}
    assert set(by_id) == {m["messageId"] for m in sent}

    for msg in sent:
        record = by_id[msg["messageId"]]
        value = orjson.loads(record.value)
        headers = headers_of(record)
        event_type = msg["type"]

        expected_key = msg.get("userId") or msg.get("anonymousId")
        assert expected_key is not None
        assert record.key == expected_key.encode(), event_type
        assert headers["source-id"] == SOURCE_ID
        assert headers["event-type"] == event_type
        assert headers["message-id"] == value["messageId"] == msg["messageId"]
        if event_type in NAMED_TYPES:
            name = msg["event"] if event_type == "track" else msg["name"]
            assert headers["event-name"] == name
        else:
            assert headers.get("event-name", "") == ""

        received = datetime.fromisoformat(value["receivedAt"])
        assert before - CLOCK_SLACK <= received <= after + CLOCK_SLACK, value["receivedAt"]
        assert value["timestamp"] == msg["timestamp"], event_type
        assert value["sentAt"] == sent_at_by_id[msg["messageId"]]
        assert value["request_ip"] == "127.0.0.1"
        assert value.get("originalTimestamp"), "originalTimestamp defaults to receivedAt"

        # Everything the SDK sent arrives untouched; the gateway only adds normalized fields.
        assert set(value) - set(msg) <= NORMALIZED_FIELDS, event_type
        assert {k: v for k, v in value.items() if k in msg} == msg, event_type

    # The payloads that matter most, spelled out (exact numbers and unicode, nested dicts).
    by_type = {orjson.loads(r.value)["type"]: orjson.loads(r.value) for r in records}
    assert by_type["track"]["properties"] == ORDER_PROPERTIES
    assert by_type["track"]["properties"]["bigInt"] == 9007199254740993
    assert by_type["page"]["properties"] == PAGE_PROPERTIES
    assert by_type["screen"]["properties"] == SCREEN_PROPERTIES
    assert by_type["screen"]["timestamp"].startswith("2024-02-29T23:59:58.123")
    assert by_type["group"]["traits"] == GROUP_TRAITS
    assert by_type["alias"]["previousId"] == "anon-1"


def sdk_host(gateway: Gateway) -> str:
    return f"http://127.0.0.1:{gateway.ingest_port}"


async def test_segment_sdk_delivers_every_call_type(gateway: Gateway) -> None:
    client = segment_client.Client(WRITE_KEY, host=sdk_host(gateway), sync_mode=True, timeout=10)
    before = datetime.now(UTC)
    sent, wire = await run_sdk(client, segment_request)
    after = datetime.now(UTC)

    assert [m["type"] for m in sent] == ["identify", "track", "page", "screen", "group", "alias"]
    await check_on_kafka(gateway, sent, wire, before, after)
    identify = next(m for m in sent if m["type"] == "identify")
    assert identify["traits"] == USER_TRAITS


async def test_rudder_sdk_delivers_every_call_type_gzipped(gateway: Gateway) -> None:
    # Only host (and sync delivery) changed: gzip stays at the SDK's default, which is on.
    client = rudder_client.Client(WRITE_KEY, host=sdk_host(gateway), sync_mode=True, timeout=10)
    assert client.gzip is True
    before = datetime.now(UTC)
    sent, wire = await run_sdk(client, rudder_request)
    after = datetime.now(UTC)

    assert {r.request.headers.get("Content-Encoding") for r in wire.responses} == {"gzip"}
    assert all(isinstance(r.request.body, bytes) for r in wire.responses)
    await check_on_kafka(gateway, sent, wire, before, after)
    # rudder's identify carries the traits in context.traits only.
    identify = next(m for m in sent if m["type"] == "identify")
    assert identify["context"]["traits"] == USER_TRAITS
    assert all(m["channel"] == "server" for m in sent)


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
async def test_sdk_surfaces_rejected_uploads(gateway: Gateway, sdk: str) -> None:
    """Guard for the tests above: an upload the gateway refuses does raise in sync mode."""
    module, client_cls = (
        (segment_request, segment_client.Client)
        if sdk == "segment"
        else (rudder_request, rudder_client.Client)
    )
    client = client_cls("wk_unknown", host=sdk_host(gateway), sync_mode=True, timeout=10)
    with WireLog(module) as wire, pytest.raises(module.APIError) as info:
        await asyncio.to_thread(client.track, user_id="u", event="Nope")
    assert info.value.status == 401
    assert [r.status_code for r in wire.responses] == [401]
