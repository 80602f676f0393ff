"""The ingest HTTP API end to end: HTTP in, records on the real broker out.

Every test talks to an in-process gateway over HTTP and checks what a user observes: the status
and JSON error body, and the records (key, headers, value) that land on the events and
quarantine topics.
"""

from __future__ import annotations

import base64
import gzip
import random
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from gateway.server import Gateway
from tests.conftest import (
    DISABLED_KEY,
    HEADER_NAMES,
    SOURCE_ID,
    WRITE_KEY,
    GatewayFactory,
    basic_auth,
    consume,
    consume_all,
    headers_of,
    ingest_url,
    metric_samples,
)

SINGLE_ROUTES = [
    ("/v1/track", "track"),
    ("/v1/identify", "identify"),
    ("/v1/page", "page"),
    ("/v1/screen", "screen"),
    ("/v1/group", "group"),
    ("/v1/alias", "alias"),
    ("/v1/t", "track"),
    ("/v1/i", "identify"),
    ("/v1/p", "page"),
    ("/v1/s", "screen"),
    ("/v1/g", "group"),
    ("/v1/a", "alias"),
]
BATCH_ROUTES = ["/v1/batch", "/v1/import", "/v1/b"]
# Fields the gateway sets during normalization; everything else must pass through untouched.
NORMALIZED_FIELDS = {"messageId", "receivedAt", "sentAt", "originalTimestamp", "timestamp"}
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NO_KEY = ""


@dataclass
class Reply:
    status: int
    text: str
    headers: CIMultiDictProxy[str]

    def json(self) -> Any:
        return orjson.loads(self.text)


async def call(
    gw: Gateway,
    method: str,
    path: str,
    *,
    data: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Reply:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, ingest_url(gw, path), data=data, headers=headers or {}, params=params
        ) as resp,
    ):
        return Reply(resp.status, await resp.text(), resp.headers)


async def post(
    gw: Gateway,
    path: str,
    doc: Any = None,
    *,
    data: Any = None,
    key: str = WRITE_KEY,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Reply:
    """POST ``doc`` as JSON (or raw ``data``), with ``key`` as Basic auth unless it is empty."""
    all_headers = {"Content-Type": "application/json", **(basic_auth(key) if key else {})}
    all_headers.update(headers or {})
    body = data if data is not None else orjson.dumps(doc)
    return await call(gw, "POST", path, data=body, headers=all_headers, params=params)


def assert_ok(reply: Reply) -> None:
    assert (reply.status, reply.text) == (200, "OK")


def assert_error(reply: Reply, status: int, code: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert isinstance(body, dict)
    assert set(body) == {"code", "message"}
    assert isinstance(body["code"], str)
    assert body["code"]
    assert isinstance(body["message"], str)
    assert body["message"]
    if code is not None:
        assert body["code"] == code
    return body


async def events_of(gw: Gateway, count: int) -> list[Any]:
    """Exactly ``count`` records from the events topic (a request's records arrive together)."""
    s = gw.settings.kafka
    records = await consume(s.bootstrap_servers, s.events_topic, count)
    assert len(records) == count, [r.value for r in records]
    return records


async def quarantined_of(gw: Gateway, count: int) -> list[Any]:
    s = gw.settings.kafka
    records = await consume(s.bootstrap_servers, s.quarantine_topic, count)
    assert len(records) == count, [r.value for r in records]
    return records


async def assert_nothing_published_before_marker(gw: Gateway) -> None:
    """Send a marker event; the topic's first record must be it, so nothing came before."""
    assert_ok(await post(gw, "/v1/track", {"userId": "marker", "event": "Marker"}))
    s = gw.settings.kafka
    first = (await consume(s.bootstrap_servers, s.events_topic, 1))[0]
    assert first.key == b"marker"
    assert orjson.loads(first.value)["event"] == "Marker"
    quarantine = await consume_all(s.bootstrap_servers, s.quarantine_topic)
    assert quarantine == []


def value_of(record: Any) -> dict[str, Any]:
    value = orjson.loads(record.value)
    assert isinstance(value, dict)
    return value


def parse_time(text: Any) -> datetime:
    assert isinstance(text, str)
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


def now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# --- routes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "route_type"), SINGLE_ROUTES)
async def test_single_route_forces_its_type(gateway: Gateway, path: str, route_type: str) -> None:
    claimed = "alias" if route_type != "alias" else "identify"
    doc = {"type": claimed, "userId": "u1", "event": "Signed Up", "name": "Home", "traits": {}}
    assert_ok(await post(gateway, path, doc))
    [record] = await events_of(gateway, 1)
    value = value_of(record)
    assert value["type"] == route_type
    assert record.key == b"u1"
    headers = headers_of(record)
    assert headers["event-type"] == route_type
    assert headers["event-name"] == ("Signed Up" if route_type == "track" else "Home")
    assert headers["message-id"] == value["messageId"]


@pytest.mark.parametrize("path", BATCH_ROUTES)
async def test_batch_route_forwards_every_item_in_order(gateway: Gateway, path: str) -> None:
    batch: list[dict[str, Any]] = [
        {"type": "track", "userId": "u1", "event": "Order Completed"},
        {"type": "identify", "anonymousId": "a2", "traits": {"plan": "pro"}},
        {"type": "page", "userId": "u3", "name": "Pricing"},
        {"type": "screen", "userId": "u4", "name": "Settings"},
        {"type": "group", "userId": "u5", "groupId": "g1"},
        {"type": "alias", "userId": "u6", "previousId": "a6"},
    ]
    assert_ok(await post(gateway, path, {"batch": batch}))
    records = await events_of(gateway, len(batch))
    assert [value_of(r)["type"] for r in records] == [e["type"] for e in batch]
    assert [r.key for r in records] == [b"u1", b"a2", b"u3", b"u4", b"u5", b"u6"]
    assert [headers_of(r)["event-type"] for r in records] == [e["type"] for e in batch]
    assert value_of(records[1])["traits"] == {"plan": "pro"}


# --- write keys ----------------------------------------------------------------------------


async def test_write_key_as_basic_auth_username_ignores_password(gateway: Gateway) -> None:
    import base64

    token = base64.b64encode(f"{WRITE_KEY}:some-password".encode()).decode()
    reply = await post(
        gateway,
        "/v1/track",
        {"userId": "u1", "event": "E"},
        key=NO_KEY,
        headers={"Authorization": f"Basic {token}"},
    )
    assert_ok(reply)
    [record] = await events_of(gateway, 1)
    assert headers_of(record)["source-id"] == SOURCE_ID


async def test_write_key_in_body_is_accepted_and_never_published(gateway: Gateway) -> None:
    reply = await post(
        gateway, "/v1/track", {"writeKey": WRITE_KEY, "userId": "u1", "event": "E"}, key=NO_KEY
    )
    assert_ok(reply)
    [record] = await events_of(gateway, 1)
    value = value_of(record)
    assert "writeKey" not in value
    assert WRITE_KEY.encode() not in record.value
    assert headers_of(record)["source-id"] == SOURCE_ID


async def test_write_key_in_batch_body_is_never_published(gateway: Gateway) -> None:
    doc = {
        "writeKey": WRITE_KEY,
        "batch": [
            {"type": "track", "userId": "u1", "event": "E", "writeKey": WRITE_KEY},
            {"type": "identify", "userId": "u2"},
        ],
    }
    assert_ok(await post(gateway, "/v1/batch", doc, key=NO_KEY))
    records = await events_of(gateway, 2)
    for record in records:
        assert "writeKey" not in value_of(record)
        assert WRITE_KEY.encode() not in record.value


async def test_write_key_as_query_parameter(gateway: Gateway) -> None:
    reply = await post(
        gateway,
        "/v1/track",
        {"userId": "u1", "event": "E"},
        key=NO_KEY,
        params={"writeKey": WRITE_KEY},
    )
    assert_ok(reply)
    [record] = await events_of(gateway, 1)
    assert headers_of(record)["source-id"] == SOURCE_ID
    assert WRITE_KEY.encode() not in record.value


@pytest.mark.parametrize(
    ("where", "key", "status", "code"),
    [
        ("none", "", 401, "unauthorized"),
        ("basic", "wk_nobody", 401, "unauthorized"),
        ("body", "wk_nobody", 401, "unauthorized"),
        ("query", "wk_nobody", 401, "unauthorized"),
        ("basic", DISABLED_KEY, 404, "source_disabled"),
        ("body", DISABLED_KEY, 404, "source_disabled"),
        ("query", DISABLED_KEY, 404, "source_disabled"),
    ],
)
async def test_missing_unknown_or_disabled_write_key_is_refused(
    gateway: Gateway, where: str, key: str, status: int, code: str
) -> None:
    doc: dict[str, Any] = {"userId": "u1", "event": "E"}
    if where == "body":
        doc["writeKey"] = key
    reply = await post(
        gateway,
        "/v1/track",
        doc,
        key=key if where == "basic" else NO_KEY,
        params={"writeKey": key} if where == "query" else None,
    )
    assert_error(reply, status, code)
    await assert_nothing_published_before_marker(gateway)


# --- malformed requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/v1/track", b'{"userId": "u1", "event": '),
        ("/v1/track", b"not json at all"),
        ("/v1/batch", b'{"batch": [}'),
        ("/v1/track", b""),
    ],
)
async def test_invalid_json_is_400(gateway: Gateway, path: str, data: bytes) -> None:
    assert_error(await post(gateway, path, data=data), 400, "invalid_json")
    await assert_nothing_published_before_marker(gateway)


@pytest.mark.parametrize(
    ("path", "doc"),
    [
        ("/v1/track", [{"userId": "u1", "event": "E"}]),
        ("/v1/batch", [{"type": "track", "userId": "u1", "event": "E"}]),
        ("/v1/track", "a string"),
        ("/v1/track", 42),
        ("/v1/track", None),
    ],
)
async def test_body_that_is_not_an_object_is_400(gateway: Gateway, path: str, doc: Any) -> None:
    assert_error(await post(gateway, path, doc), 400)
    await assert_nothing_published_before_marker(gateway)


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "track", "userId": "u1", "event": "E"},
        {"batch": {"type": "track", "userId": "u1", "event": "E"}},
        {"batch": "nope"},
        {"batch": None},
    ],
)
async def test_batch_without_batch_array_is_400(gateway: Gateway, doc: dict[str, Any]) -> None:
    assert_error(await post(gateway, "/v1/batch", doc), 400)
    await assert_nothing_published_before_marker(gateway)


@pytest.mark.parametrize("path", BATCH_ROUTES)
async def test_empty_batch_is_400(gateway: Gateway, path: str) -> None:
    assert_error(await post(gateway, path, {"batch": []}), 400)
    await assert_nothing_published_before_marker(gateway)


async def test_batch_over_the_event_limit_is_413(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ingest={"max_batch_events": 3})
    item = {"type": "track", "userId": "u1", "event": "E"}
    assert_error(await post(gw, "/v1/batch", {"batch": [item] * 4}), 413, "payload_too_large")
    await assert_nothing_published_before_marker(gw)
    assert_ok(await post(gw, "/v1/batch", {"batch": [item] * 3}))
    # The marker, then the three events of the batch at the limit.
    records = await events_of(gw, 4)
    assert [r.key for r in records] == [b"marker", b"u1", b"u1", b"u1"]


# --- body size, encoding, content type ------------------------------------------------------


def padded_track(size: int) -> bytes:
    """A valid track call of exactly ``size`` bytes of JSON."""
    head = b'{"userId":"u1","event":"E","properties":{"pad":"'
    tail = b'"}}'
    body = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(body) == size
    orjson.loads(body)
    return body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_request_limit_is_413(make_gateway: GatewayFactory, chunked: bool) -> None:
    gw = await make_gateway(ingest={"max_request_bytes": 2000})
    body = padded_track(5000)

    async def stream() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    reply = await post(gw, "/v1/track", data=stream() if chunked else body)
    assert_error(reply, 413, "payload_too_large")
    # A body exactly at the limit is fine.
    assert_ok(await post(gw, "/v1/track", data=padded_track(2000)))
    [record] = await events_of(gw, 1)
    assert len(value_of(record)["properties"]["pad"]) > 1900


async def test_gzip_body_is_accepted(gateway: Gateway) -> None:
    doc = {"userId": "u1", "event": "Compressed", "properties": {"text": "zürich " * 50}}
    reply = await post(
        gateway,
        "/v1/track",
        data=gzip.compress(orjson.dumps(doc)),
        headers={"Content-Encoding": "gzip"},
    )
    assert_ok(reply)
    [record] = await events_of(gateway, 1)
    value = value_of(record)
    assert value["event"] == "Compressed"
    assert value["properties"] == doc["properties"]


async def test_gzip_batch_form_encoded_like_rudder_sdk_node_is_accepted(gateway: Gateway) -> None:
    doc = {"batch": [{"type": "track", "anonymousId": "a1", "event": "E"}] * 2}
    reply = await post(
        gateway,
        "/v1/batch",
        data=gzip.compress(orjson.dumps(doc)),
        headers={
            "Content-Encoding": "gzip",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert_ok(reply)
    records = await events_of(gateway, 2)
    assert [r.key for r in records] == [b"a1", b"a1"]


async def test_gzip_body_decompressing_over_request_limit_is_413(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(ingest={"max_request_bytes": 64 * 1024})
    bomb = gzip.compress(padded_track(4 * 1024 * 1024))
    assert len(bomb) < 64 * 1024  # the compressed body alone is well within the limit
    reply = await post(gw, "/v1/track", data=bomb, headers={"Content-Encoding": "gzip"})
    assert_error(reply, 413, "payload_too_large")
    await assert_nothing_published_before_marker(gw)


async def test_gzip_body_declaring_an_inflated_size_over_the_limit_is_413_uninflated(
    gateway: Gateway,
) -> None:
    # 5 KB of gzip whose trailer says it inflates to just over the limit (a size deflate can
    # reach from 5 KB): refused before inflating. Inflated, it would fail zlib's length check
    # instead, a 400, as does a trailer deflate could never reach from so few bytes.
    noise = base64.b64encode(random.Random(7).randbytes(5000)).decode()
    body = gzip.compress(orjson.dumps({"userId": "u1", "event": "Declared", "noise": noise}))
    limit = gateway.settings.ingest.max_request_bytes
    assert limit < len(body) * 1032
    for declared, status, code in [
        (limit + 1, 413, "payload_too_large"),
        (len(body) * 1032 + 1, 400, "invalid_json"),
        (len(body) + 1, 400, "invalid_json"),
    ]:
        lying = body[:-4] + declared.to_bytes(4, "little")
        reply = await post(gateway, "/v1/track", data=lying, headers={"Content-Encoding": "gzip"})
        assert_error(reply, status, code)
    await assert_nothing_published_before_marker(gateway)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"],
)
async def test_json_body_accepted_whatever_the_content_type(
    gateway: Gateway, content_type: str
) -> None:
    reply = await post(
        gateway,
        "/v1/track",
        {"userId": "u1", "event": "Typed"},
        headers={"Content-Type": content_type},
    )
    assert_ok(reply)
    [record] = await events_of(gateway, 1)
    assert value_of(record)["event"] == "Typed"


# --- CORS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch", "/v1/t"])
async def test_cors_preflight_is_answered(gateway: Gateway, path: str) -> None:
    reply = await call(
        gateway,
        "OPTIONS",
        path,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] in ("*", "https://shop.example")
    methods = [m.strip() for m in reply.headers["Access-Control-Allow-Methods"].split(",")]
    assert "POST" in methods
    allowed_headers = reply.headers["Access-Control-Allow-Headers"].lower()
    assert "content-type" in allowed_headers


async def test_cors_post_with_origin_gets_allow_origin(gateway: Gateway) -> None:
    reply = await post(
        gateway,
        "/v1/track",
        {"userId": "u1", "event": "E"},
        headers={"Origin": "https://shop.example"},
    )
    assert_ok(reply)
    assert reply.headers["Access-Control-Allow-Origin"] in ("*", "https://shop.example")


async def test_cors_restricted_origins(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ingest={"cors_origins": ("https://app.example",)})
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = await call(
        gw, "OPTIONS", "/v1/track", headers={"Origin": "https://app.example", **preflight}
    )
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = await call(
        gw, "OPTIONS", "/v1/track", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "Access-Control-Allow-Origin" not in other.headers

    doc = {"userId": "u1", "event": "E"}
    reply = await post(gw, "/v1/track", doc, headers={"Origin": "https://app.example"})
    assert_ok(reply)
    assert reply.headers["Access-Control-Allow-Origin"] == "https://app.example"
    reply = await post(gw, "/v1/track", doc, headers={"Origin": "https://evil.example"})
    assert reply.status == 200
    assert "Access-Control-Allow-Origin" not in reply.headers


# --- normalization -------------------------------------------------------------------------


async def test_message_id_is_kept_and_trimmed(gateway: Gateway) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "E", "messageId": "m-kept"},
        {"type": "track", "userId": "u1", "event": "E", "messageId": "  m-padded\t "},
    ]
    assert_ok(await post(gateway, "/v1/batch", {"batch": batch}))
    records = await events_of(gateway, 2)
    assert [value_of(r)["messageId"] for r in records] == ["m-kept", "m-padded"]
    assert [headers_of(r)["message-id"] for r in records] == ["m-kept", "m-padded"]


async def test_message_id_is_generated_as_uuid4(gateway: Gateway) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "E"},
        {"type": "track", "userId": "u1", "event": "E", "messageId": ""},
        {"type": "track", "userId": "u1", "event": "E", "messageId": "   "},
    ]
    assert_ok(await post(gateway, "/v1/batch", {"batch": batch}))
    records = await events_of(gateway, 3)
    ids = [value_of(r)["messageId"] for r in records]
    for message_id in ids:
        assert UUID4.match(message_id), message_id
        assert uuid.UUID(message_id).version == 4
    assert len(set(ids)) == 3
    assert [headers_of(r)["message-id"] for r in records] == ids


async def test_times_default_to_received_at(gateway: Gateway) -> None:
    before = now_ms()
    assert_ok(await post(gateway, "/v1/track", {"userId": "u1", "event": "E"}))
    after = datetime.now(UTC)
    [record] = await events_of(gateway, 1)
    value = value_of(record)
    received = parse_time(value["receivedAt"])
    assert before <= received <= after
    assert value["originalTimestamp"] == value["receivedAt"]
    assert value["sentAt"] == value["receivedAt"]
    assert value["timestamp"] == value["receivedAt"]


async def test_given_timestamp_is_kept(gateway: Gateway) -> None:
    doc = {
        "userId": "u1",
        "event": "E",
        "timestamp": "2021-03-04T05:06:07.089Z",
        "originalTimestamp": "2024-01-01T00:00:00.000Z",
        "sentAt": "2024-01-01T00:10:00.000Z",
    }
    assert_ok(await post(gateway, "/v1/track", doc))
    [record] = await events_of(gateway, 1)
    value = value_of(record)
    assert value["timestamp"] == "2021-03-04T05:06:07.089Z"
    assert value["originalTimestamp"] == "2024-01-01T00:00:00.000Z"
    assert value["sentAt"] == "2024-01-01T00:10:00.000Z"


async def test_timestamp_corrects_device_clock_skew(gateway: Gateway) -> None:
    # The device's clock: the event happened 10 minutes before the SDK sent it.
    doc = {
        "userId": "u1",
        "event": "E",
        "originalTimestamp": "2019-06-01T12:00:00.000Z",
        "sentAt": "2019-06-01T12:10:00.000Z",
    }
    assert_ok(await post(gateway, "/v1/track", doc))
    [record] = await events_of(gateway, 1)
    value = value_of(record)
    assert value["originalTimestamp"] == "2019-06-01T12:00:00.000Z"
    assert value["sentAt"] == "2019-06-01T12:10:00.000Z"
    received = parse_time(value["receivedAt"])
    assert received - parse_time(value["timestamp"]) == timedelta(minutes=10)


async def test_batch_sent_at_applies_to_items(gateway: Gateway) -> None:
    doc = {
        "sentAt": "2019-06-01T12:10:00.000Z",
        "batch": [
            {
                "type": "track",
                "userId": "u1",
                "event": "E",
                "originalTimestamp": "2019-06-01T12:00:00.000Z",
            },
            {
                "type": "track",
                "userId": "u1",
                "event": "E",
                "originalTimestamp": "2019-06-01T12:09:00.000Z",
                "sentAt": "2019-06-01T12:09:30.000Z",
            },
        ],
    }
    assert_ok(await post(gateway, "/v1/batch", doc))
    first, second = (value_of(r) for r in await events_of(gateway, 2))
    assert first["sentAt"] == "2019-06-01T12:10:00.000Z"
    received = parse_time(first["receivedAt"])
    assert received - parse_time(first["timestamp"]) == timedelta(minutes=10)
    assert second["sentAt"] == "2019-06-01T12:09:30.000Z"
    assert received - parse_time(second["timestamp"]) == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("event_ip", "forwarded_for", "expected"),
    [
        ("198.51.100.9", "203.0.113.7", "198.51.100.9"),
        # The peer (loopback) is a trusted proxy by default; the client is the address it saw.
        (None, "198.51.100.20, 203.0.113.7", "203.0.113.7"),
        (None, None, "127.0.0.1"),
    ],
    ids=["event", "x-forwarded-for", "peer"],
)
async def test_request_ip(
    gateway: Gateway, event_ip: str | None, forwarded_for: str | None, expected: str
) -> None:
    doc: dict[str, Any] = {"userId": "u1", "event": "E"}
    if event_ip is not None:
        doc["request_ip"] = event_ip
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    assert_ok(await post(gateway, "/v1/track", doc, headers=headers))
    [record] = await events_of(gateway, 1)
    assert value_of(record)["request_ip"] == expected


async def test_every_other_field_is_untouched(gateway: Gateway) -> None:
    doc: dict[str, Any] = {
        "userId": "u1",
        "anonymousId": "anon-ü",
        "event": "Bestellung abgeschlossen 🛒",
        "messageId": "m-1",
        "request_ip": "198.51.100.1",
        "properties": {
            "amount": 12.5,
            "tiny": 1e-7,
            "big": 9007199254740993,
            "negative": -3,
            "flag": False,
            "nothing": None,
            "empty": "",
            "list": [1, "two", {"three": [3.0, None]}, []],
            "nested": {"a": {"b": {"c": {"d": "deep"}}}},
            "städte": ["Zürich", "東京", "Ελλάδα", "🚀"],
            "escapes": 'quote " backslash \\ newline \n tab \t nul \u0000',
        },
        "context": {
            "library": {"name": "analytics.js", "version": "2.1.0"},
            "traits": {"email": "a@example.com"},
            "locale": "de-CH",
        },
        "integrations": {"All": True, "Mixpanel": False},
        "customTopLevel": {"kept": True},
    }
    assert_ok(await post(gateway, "/v1/track", doc))
    [record] = await events_of(gateway, 1)
    value = value_of(record)
    assert value["messageId"] == "m-1"
    assert {k: v for k, v in value.items() if k not in NORMALIZED_FIELDS} == {
        **{k: v for k, v in doc.items() if k not in NORMALIZED_FIELDS},
        "type": "track",
    }


# --- key and headers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "key"),
    [
        ({"userId": "user-1", "anonymousId": "anon-1"}, b"user-1"),
        ({"userId": "user-1"}, b"user-1"),
        ({"anonymousId": "anon-1"}, b"anon-1"),
        ({"userId": "", "anonymousId": "anon-1"}, b"anon-1"),
        ({"userId": None, "anonymousId": "anon-1"}, b"anon-1"),
    ],
)
async def test_key_is_user_id_else_anonymous_id(
    gateway: Gateway, ids: dict[str, Any], key: bytes
) -> None:
    assert_ok(await post(gateway, "/v1/track", {**ids, "event": "E"}))
    [record] = await events_of(gateway, 1)
    assert record.key == key


async def test_headers_are_all_present(gateway: Gateway) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m-track"},
        {"type": "identify", "userId": "u1", "messageId": "m-identify"},
    ]
    assert_ok(await post(gateway, "/v1/batch", {"batch": batch}))
    track, identify = await events_of(gateway, 2)
    assert headers_of(track) == {
        "source-id": SOURCE_ID,
        "event-type": "track",
        "event-name": "Signed Up",
        "message-id": "m-track",
        "tracking-plan-id": "",
        "tracking-plan-version": "",
        "violations": "0",
    }
    assert headers_of(identify) == {
        "source-id": SOURCE_ID,
        "event-type": "identify",
        "event-name": "",
        "message-id": "m-identify",
        "tracking-plan-id": "",
        "tracking-plan-version": "",
        "violations": "0",
    }


# --- quarantine of invalid events ----------------------------------------------------------


def assert_invalid_event_quarantine(record: Any) -> dict[str, Any]:
    doc = value_of(record)
    assert doc["reason"] == "invalid-event"
    assert doc["sourceId"] == SOURCE_ID
    assert set(doc) >= {"reason", "sourceId", "violations", "receivedAt", "event"}
    assert isinstance(doc["violations"], list)
    assert doc["violations"]
    for violation in doc["violations"]:
        assert isinstance(violation["message"], str)
        assert violation["message"]
    parse_time(doc["receivedAt"])
    assert set(headers_of(record)) == HEADER_NAMES
    assert headers_of(record)["source-id"] == SOURCE_ID
    return doc


async def test_event_without_ids_in_batch_is_quarantined_rest_forwarded(
    gateway: Gateway,
) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "First"},
        {"type": "track", "event": "Nobody", "messageId": "m-nobody", "properties": {"x": 1}},
        {"type": "identify", "anonymousId": "a3"},
    ]
    assert_ok(await post(gateway, "/v1/batch", {"batch": batch}))
    forwarded = await events_of(gateway, 2)
    assert [r.key for r in forwarded] == [b"u1", b"a3"]
    assert value_of(forwarded[0])["event"] == "First"
    [record] = await quarantined_of(gateway, 1)
    doc = assert_invalid_event_quarantine(record)
    event = doc["event"]
    assert event["event"] == "Nobody"
    assert event["messageId"] == "m-nobody"
    assert event["properties"] == {"x": 1}
    assert doc["receivedAt"] == event["receivedAt"] == value_of(forwarded[0])["receivedAt"]
    assert record.key is None
    headers = headers_of(record)
    assert headers["message-id"] == "m-nobody"
    assert headers["event-type"] == "track"
    assert headers["event-name"] == "Nobody"


async def test_event_nested_too_deeply_to_write_is_quarantined_rest_forwarded(
    gateway: Gateway,
) -> None:
    # JSON parses up to 1024 levels, but is written only up to 254: such an event must not
    # fail its whole batch (a 500 that SDKs would retry for ever).
    deep = b'{"a":' * 300 + b"{}" + b"}" * 300
    deep_event = b'{"type":"track","userId":"u1","event":"Deep","messageId":"m-deep","p":%s}' % deep
    fine_event = orjson.dumps({"type": "track", "userId": "u2", "event": "Fine"})
    body = b'{"batch":[%s,%s]}' % (deep_event, fine_event)
    assert_ok(await post(gateway, "/v1/batch", None, data=body))
    [forwarded] = await events_of(gateway, 1)
    assert value_of(forwarded)["event"] == "Fine"
    [record] = await quarantined_of(gateway, 1)
    doc = assert_invalid_event_quarantine(record)
    assert "nested" in doc["violations"][0]["message"]
    # What can be written of the event: its identifying fields.
    assert doc["event"]["event"] == "Deep"
    assert doc["event"]["messageId"] == "m-deep"
    assert doc["event"]["_truncated"] is True
    assert "p" not in doc["event"]
    assert record.key == b"u1"


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "purchase", "userId": "u2", "event": "E"},
        {"userId": "u2", "event": "E"},
        "not an object",
        42,
        ["a", "list"],
        None,
        {"type": "track", "userId": "u2"},
        {"type": "track", "userId": "u2", "event": ""},
        {"type": "track", "userId": "u2", "event": {"name": "E"}},
        {"type": "identify", "userId": "", "anonymousId": ""},
    ],
    ids=[
        "unknown-type",
        "no-type",
        "string-item",
        "number-item",
        "list-item",
        "null-item",
        "track-without-name",
        "track-empty-name",
        "track-object-name",
        "empty-ids",
    ],
)
async def test_unusable_batch_item_is_quarantined(gateway: Gateway, bad: Any) -> None:
    batch = [{"type": "track", "userId": "u1", "event": "Good"}, bad]
    assert_ok(await post(gateway, "/v1/batch", {"batch": batch}))
    [forwarded] = await events_of(gateway, 1)
    assert value_of(forwarded)["event"] == "Good"
    [record] = await quarantined_of(gateway, 1)
    doc = assert_invalid_event_quarantine(record)
    if isinstance(bad, dict):
        assert {k: doc["event"][k] for k in bad} == bad
    else:
        assert doc["event"] == bad


@pytest.mark.parametrize(
    ("path", "doc"),
    [
        ("/v1/track", {"userId": "u1"}),
        ("/v1/identify", {"traits": {"email": "a@example.com"}}),
    ],
)
async def test_unusable_single_event_is_quarantined_with_200(
    gateway: Gateway, path: str, doc: dict[str, Any]
) -> None:
    assert_ok(await post(gateway, path, doc))
    [record] = await quarantined_of(gateway, 1)
    quarantined = assert_invalid_event_quarantine(record)
    assert {k: quarantined["event"][k] for k in doc} == doc
    assert (
        await consume_all(
            gateway.settings.kafka.bootstrap_servers, gateway.settings.kafka.events_topic
        )
        == []
    )


async def test_event_over_size_limit_is_quarantined(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ingest={"max_event_bytes": 2048})
    small = {"type": "track", "userId": "u1", "event": "Small"}
    big = {
        "type": "track",
        "userId": "u2",
        "event": "Big",
        "messageId": "m-big",
        "properties": {"pad": "x" * 4096},
    }
    assert_ok(await post(gw, "/v1/batch", {"batch": [small, big, small]}))
    forwarded = await events_of(gw, 2)
    assert [value_of(r)["event"] for r in forwarded] == ["Small", "Small"]
    [record] = await quarantined_of(gw, 1)
    doc = assert_invalid_event_quarantine(record)
    assert doc["event"]["messageId"] == "m-big"
    assert record.key == b"u2"


# --- health, routing, metrics --------------------------------------------------------------


async def test_health_live(gateway: Gateway) -> None:
    reply = await call(gateway, "GET", "/health/live")
    assert reply.status == 200


async def test_health_ready(gateway: Gateway) -> None:
    reply = await call(gateway, "GET", "/health/ready")
    assert reply.status == 200
    body = reply.json()
    assert body["kafka"] is True
    assert body["snapshot"] is True
    assert body["snapshotRevision"] == "r1"  # which snapshot this replica serves


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nope"), ("POST", "/v1/nope"), ("POST", "/v2/track")]
)
async def test_unknown_path_is_404_with_json_body(gateway: Gateway, method: str, path: str) -> None:
    reply = await call(gateway, method, path, headers=basic_auth())
    assert_error(reply, 404)


async def test_get_on_ingest_route_is_405(gateway: Gateway) -> None:
    reply = await call(gateway, "GET", "/v1/track", headers=basic_auth())
    assert_error(reply, 405)
    assert "POST" in [m.strip() for m in reply.headers["Allow"].split(",")]


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


async def test_metrics_count_events_by_outcome(gateway: Gateway) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "A"},
        {"type": "track", "event": "No ids"},
        {"type": "identify", "userId": "u1"},
        {"type": "bogus", "userId": "u1"},
    ]
    assert_ok(await post(gateway, "/v1/batch", {"batch": batch}))
    assert_ok(await post(gateway, "/v1/page", {"anonymousId": "a1", "name": "Home"}))
    assert_ok(await post(gateway, "/v1/track", {"userId": "u2"}))
    # Refused requests count nothing.
    assert (
        await post(gateway, "/v1/track", {"userId": "u1", "event": "A"}, key="nope")
    ).status == 401
    assert (await post(gateway, "/v1/batch", {"batch": []})).status == 400

    reply = await call(gateway, "GET", "/metrics")
    assert reply.status == 200
    samples = metric_samples(reply.text)
    received = "gateway_events_received_total"
    forwarded = "gateway_events_forwarded_total"
    quarantined = "gateway_events_quarantined_total"
    assert total(samples, received) == 6
    assert total(samples, forwarded) == 3
    assert total(samples, quarantined) == 3
    assert sample(samples, received, source_id=SOURCE_ID, type="track") == 3
    assert sample(samples, received, source_id=SOURCE_ID, type="identify") == 1
    assert sample(samples, received, source_id=SOURCE_ID, type="page") == 1
    assert sample(samples, forwarded, source_id=SOURCE_ID, type="track") == 1
    assert sample(samples, forwarded, source_id=SOURCE_ID, type="identify") == 1
    assert sample(samples, forwarded, source_id=SOURCE_ID, type="page") == 1
    invalid = {"source_id": SOURCE_ID, "reason": "invalid-event"}
    assert sample(samples, quarantined, type="track", **invalid) == 2
    quarantined_invalid = sum(
        v for (n, labels), v in samples.items() if n == quarantined and invalid.items() <= labels
    )
    assert quarantined_invalid == 3
    await events_of(gateway, 3)
    await quarantined_of(gateway, 3)
