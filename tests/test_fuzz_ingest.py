"""Property-based fuzz of the ingest routes: no input gets a 5xx.

One real gateway (the real broker, a connected tracking plan whose rules use patterns, formats,
``required`` and ``additionalProperties``, so enforcement runs on every event) takes random
requests on every ingest route: random bytes, random JSON of any shape and depth, SDK-shaped
events with a random type in every field, under random ``Content-Encoding`` and
``Content-Type``, with the write key in the header, the query, the body, missing or wrong.

Each answer must be a 2xx, or a 4xx with the JSON error body ``{"code", "message"}``; a 200 on
a publishing route means its events are in Kafka (one record per event, counted at the end);
a 200 from ``/v1/validate`` is a report with one result per event. After the run the gateway
is still ready and takes a normal event.

``FUZZ_SCALE=10 .venv/bin/pytest tests/test_fuzz_ingest.py`` runs ten times the examples.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from gateway.broker import EmbeddedBroker
from gateway.config import KafkaSettings
from gateway.ingest.routes import ROUTES, VALIDATE_ROUTE
from gateway.server import Gateway
from tests.conftest import (
    DISABLED_KEY,
    SOURCE_ID,
    WRITE_KEY,
    GatewayThread,
    RawReply,
    basic_auth,
    consume,
    gateway_settings,
    read_reply,
    request_head,
    write_snapshot,
)

# Every fuzz test's example count is multiplied by this: raise it to search longer locally.
SCALE = int(os.environ.get("FUZZ_SCALE", "1"))

DROP_KEY = "wk_fuzz_drop"
PLAN_ID = "tp_fuzz"
EVENT_NAME = "Order Completed"
PUBLISHING_ROUTES = sorted(ROUTES)
ALL_ROUTES = [*PUBLISHING_ROUTES, VALIDATE_ROUTE]
# Nesting depths on both sides of every layer's limit: orjson's 1024 levels, the event depth
# limit. Depths around the quarantine record's own limit are fuzzed on their own, below.
DEPTHS = [1, 30, 200, 300, 510, 1022, 1023, 1024, 1025, 1100, 5000]
# An event whose deepest value sits ~253 levels down gets a 500 today when it is quarantined:
# the quarantine record adds levels orjson cannot write (issue 10, item 6). The fix belongs to
# the record bounds in gateway/pipeline.py and gateway/publish/; until it lands, these depths
# are kept out of the main fuzz and searched by test_fuzz_events_nested_near_the_record_limit.
RECORD_DEPTHS = list(range(240, 262))

# --- the tracking plan -------------------------------------------------------------------------

TRACK_RULE: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {
                "amount": {"type": "number", "minimum": 0},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "slug": {"type": "string", "pattern": "^([a-z0-9]+-?)+$"},
                "site": {"type": "string", "format": "uri"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                "meta": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "required": ["amount"],
            "additionalProperties": False,
        }
    },
    "required": ["properties"],
}
IDENTIFY_RULE = {
    "type": "object",
    "properties": {
        "traits": {
            "type": "object",
            "properties": {
                "email": {"type": "string", "format": "email"},
                "host": {"type": "string", "format": "hostname"},
                "since": {"type": "string", "format": "date-time"},
                "re": {"type": "string", "format": "regex"},
                "nested": {"type": "object", "properties": {"x": {"type": "integer"}}},
            },
            "required": ["email"],
            "additionalProperties": False,
        },
        "context": {
            "type": "object",
            "properties": {"traits": {"type": "object", "additionalProperties": False}},
        },
    },
    "required": ["traits"],
}
PAGE_RULE = {
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "patternProperties": {"^utm_[a-z]+$": {"type": "string", "maxLength": 64}},
            "additionalProperties": False,
        },
        "name": {"type": "string", "minLength": 3},
    },
}
PLAN: dict[str, Any] = {
    "id": PLAN_ID,
    "name": "Fuzz",
    "version": 1,
    "events": [
        {
            "name": EVENT_NAME,
            "eventType": "track",
            "identitySection": "properties",
            "rules": TRACK_RULE,
        },
        {"name": "", "eventType": "identify", "identitySection": "traits", "rules": IDENTIFY_RULE},
        {"name": "", "eventType": "page", "identitySection": "properties", "rules": PAGE_RULE},
        {"name": "", "eventType": "group", "identitySection": "traits", "rules": IDENTIFY_RULE},
    ],
}
# Two sources on one plan: one that omits unplanned keys and forwards, one that drops.
FORWARDING = {"global": {"unplannedProperties": "omit", "anyOtherViolation": "forward"}}
DROPPING = {
    "global": {
        "allowUnplannedEvents": "false",
        "unplannedProperties": "drop",
        "anyOtherViolation": "drop",
        "propagateValidationErrors": "true",
    },
    "identify": {"unplannedProperties": "omit"},
}
# The shadow: the plan with its track rule open to any property.
SHADOW_PLAN = {
    **PLAN,
    "id": "tp_fuzz_candidate",
    "events": [
        {
            **PLAN["events"][0],
            "rules": {
                **TRACK_RULE,
                "properties": {
                    "properties": {
                        **TRACK_RULE["properties"]["properties"],
                        "additionalProperties": True,
                    }
                },
            },
        },
        *PLAN["events"][1:],
    ],
}
SNAPSHOT = {
    "revision": "fuzz-1",
    "sources": [
        {
            "id": SOURCE_ID,
            "name": "Forwarding",
            "enabled": True,
            "writeKeys": [WRITE_KEY],
            "trackingPlan": {
                "id": PLAN_ID,
                "version": 1,
                "config": FORWARDING,
                # Every event is also judged against a candidate plan (without effect).
                "shadow": {"id": SHADOW_PLAN["id"], "version": 1},
            },
        },
        {
            "id": "src_fuzz_drop",
            "name": "Dropping",
            "enabled": True,
            "writeKeys": [DROP_KEY],
            "trackingPlan": {"id": PLAN_ID, "version": 1, "config": DROPPING},
        },
        {"id": "src_off", "name": "Off", "enabled": False, "writeKeys": [DISABLED_KEY]},
    ],
    "trackingPlans": [PLAN, SHADOW_PLAN],
}


# --- the gateway under fuzz -----------------------------------------------------------------


@dataclass
class FuzzTarget:
    """The gateway, a client on its loop, and what the fuzz got back."""

    thread: GatewayThread
    gateway: Gateway
    http: aiohttp.ClientSession
    kafka: RecordCounter
    statuses: Counter[int] = field(default_factory=Counter)
    acknowledged: int = 0  # events of 200s on publishing routes

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.gateway.ingest_port}{path}"

    def records(self) -> int:
        """Records on the events and quarantine topics so far."""
        return self.thread.run(self.kafka.count())

    def fuzz(self, run: Callable[[], None]) -> None:
        """Run a ``@given`` function; then every acknowledged event must be one record in
        Kafka (forwarded or quarantined), and the gateway still ready and serving."""
        before, self.acknowledged = self.records(), 0
        run()
        assert self.records() - before == self.acknowledged, self.statuses
        assert self.thread.run(self._still_serving()) == (200, 200), self.statuses

    async def _still_serving(self) -> tuple[int, int]:
        async with self.http.get(self.url("/health/ready")) as ready:
            ready_status = ready.status
        event = {"userId": "u-after-fuzz", "event": "Signed Up"}
        async with self.http.post(self.url("/v1/track"), json=event, headers=basic_auth()) as r:
            return ready_status, r.status


class RecordCounter:
    """Counts the records of some topics, reading each once, as far as the end offsets.

    Records are read rather than offsets subtracted: the broker's end offset after a batch of
    several records need not be the record count.
    """

    def __init__(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        self.consumer = consumer
        self.partitions = partitions
        self.seen = 0

    @classmethod
    async def start(cls, settings: KafkaSettings) -> RecordCounter:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in (settings.events_topic, settings.quarantine_topic)
            for p in range(settings.topic_partitions)
        ]
        consumer.assign(partitions)
        return cls(consumer, partitions)

    async def count(self) -> int:
        ends = await self.consumer.end_offsets(self.partitions)
        async with asyncio.timeout(30):
            while any([await self.consumer.position(p) < ends[p] for p in self.partitions]):
                batches = await self.consumer.getmany(*self.partitions, timeout_ms=200)
                self.seen += sum(len(records) for records in batches.values())
        return self.seen


async def _client() -> aiohttp.ClientSession:
    # Bodies are compared as sent: no decompression, no cookie or header magic.
    return aiohttp.ClientSession(auto_decompress=False)


@pytest.fixture(scope="module")
def target(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz-ingest")
    write_snapshot(tmp_path / "snapshot.json", SNAPSHOT)
    settings = gateway_settings(
        broker,
        tmp_path,
        # A smaller request limit than the default keeps generated bodies cheap to refuse.
        ingest={"max_request_bytes": 512 * 1024},
        # Every violation also becomes a record of the violation stream.
        kafka={"violations_topic": f"violations-{uuid.uuid4().hex[:8]}"},
        # The snapshot never changes; and a refresh draws its jitter from the global random
        # generator, which hypothesis forbids while it draws an example.
        plans={"refresh_interval_s": 3600.0},
    )
    thread = GatewayThread(settings)
    try:
        gateway = thread.start()
        http = thread.run(_client())
        counter = thread.run(RecordCounter.start(gateway.settings.kafka))
        try:
            yield FuzzTarget(thread, gateway, http, counter)
        finally:
            thread.run(http.close())
            thread.run(counter.consumer.stop())
    finally:
        thread.close()


# --- one request --------------------------------------------------------------------------


@dataclass
class FuzzRequest:
    route: str
    body: bytes
    headers: dict[str, str]
    query: dict[str, str]
    events: int | None  # events a 200 stands for; None when the body is not a known shape
    key_valid: bool  # an enabled source's key reaches the gateway

    def __repr__(self) -> str:  # the falsifying example, readable
        return (
            f"POST {self.route} headers={self.headers!r} query={self.query!r} "
            f"body[{len(self.body)}]={self.body[:300]!r}"
        )


def send(fuzz: FuzzTarget, req: FuzzRequest) -> None:
    note(repr(req))

    async def post() -> RawReply:
        # On the wire as written: HTTP clients refuse to send some of the generated headers.
        reader, writer = await asyncio.open_connection("127.0.0.1", fuzz.gateway.ingest_port)
        try:
            path = req.route + ("?" + urlencode(req.query) if req.query else "")
            writer.write(request_head("POST", path, req.headers, content_length=len(req.body)))
            writer.write(req.body)
            await writer.drain()
            async with asyncio.timeout(30):
                return await read_reply(reader)
        finally:
            writer.close()

    reply = fuzz.thread.run(post())
    status, body, content_type = reply.status, reply.body, reply.headers.get("content-type", "")
    fuzz.statuses[status] += 1
    assert status < 500, (status, body[:500])
    if status >= 400:
        assert content_type.startswith("application/json"), (status, content_type, body[:200])
        error = orjson.loads(body)
        assert isinstance(error, dict), error
        assert isinstance(error.get("code"), str), error
        assert isinstance(error.get("message"), str), error
        return
    assert status == 200, (status, body[:200])
    assert req.key_valid, "a request without a valid write key was accepted"
    if req.route == VALIDATE_ROUTE:
        report = orjson.loads(body)
        assert report["events"] == len(report["results"])
        assert report["forwarded"] + report["quarantined"] == report["events"]
        if req.events is not None:
            assert report["events"] == req.events
        return
    assert body == b"OK"
    # A 200 from a route whose body the strategy did not shape is still one event (single
    # routes) or its batch's length: both are read back from the request itself.
    fuzz.acknowledged += req.events if req.events is not None else _events_in(req)


def _events_in(req: FuzzRequest) -> int:
    doc = orjson.loads(_inflate(req))
    return 1 if ROUTES[req.route] is not None else len(doc["batch"])


def _inflate(req: FuzzRequest) -> bytes:
    encoding = req.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(req.body, 47)
    if encoding == "deflate":
        try:
            return zlib.decompress(req.body, 15)
        except zlib.error:
            return zlib.decompress(req.body, -15)
    return req.body


# --- strategies ---------------------------------------------------------------------------

# Text with the odd parts of Unicode: NUL, controls, lone surrogates, private use, emoji.
odd_text = st.text(st.characters(codec=None, categories=None), max_size=40) | st.sampled_from(
    [
        *["", "\x00", "\ud800", "\udfff", "a\x00b", "\u202e", "\ufeff", "😀" * 3, " ", "null"],
        *["\u00b2", "\u0663"],  # digits to str.isdigit(); int() refuses the first
    ]
)
huge_numbers = st.sampled_from(
    [2**63, -(2**63) - 1, 2**64, 10**400, 1e308, -1e308, 5e-324, 0.1, -0.0, 2**53 + 1]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_numbers
    | st.floats(allow_nan=False, allow_infinity=False)
    | odd_text
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4)
    ),
    max_leaves=20,
)


def nested(depth: int, kind: str, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


@st.composite
def serialized(draw: st.DrawFn, value: Any) -> bytes:
    """``value`` as JSON text, as different clients write it (and the ways they break it)."""
    style = draw(st.sampled_from(["orjson", "ascii", "utf8", "surrogatepass", "nan"]))
    if style == "orjson":
        try:
            return orjson.dumps(value)
        except TypeError:  # integers beyond 64 bits, lone surrogates
            style = "ascii"
    if style == "nan":
        return json.dumps(value).replace("0", "NaN", 1).encode()
    text = json.dumps(value, ensure_ascii=style == "ascii", allow_nan=False)
    return text.encode("utf-8", "surrogatepass" if style != "ascii" else "strict")


def deep_json(depth: int, kind: str) -> bytes:
    """JSON text nested ``depth`` levels, written directly (no recursion in any encoder)."""
    if kind == "list":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"k":' * depth + b"1" + b"}" * depth


SDK_FIELDS = [
    "type",
    "event",
    "name",
    "userId",
    "anonymousId",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "context",
    "properties",
    "traits",
    "integrations",
    "writeKey",
    "groupId",
    "previousId",
    "category",
    "request_ip",
    "channel",
    "version",
]
plausible = {
    "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "TRACK"]),
    "event": st.sampled_from([EVENT_NAME, "Signed Up", "", "order completed"]),
    "userId": st.sampled_from(["u1", "", " ", "x" * 300]),
    "anonymousId": st.sampled_from(["a1", "00000000-0000-0000-0000-000000000000"]),
    "messageId": st.sampled_from(["m1", "  m2  ", ""]),
    "timestamp": st.sampled_from(["2024-01-01T00:00:00Z", "2024-13-45T99:99:99Z", "yesterday"]),
    "sentAt": st.sampled_from(["2024-01-01T00:00:01.000Z", "0000-01-01T00:00:00Z", "1e9"]),
    "originalTimestamp": st.sampled_from(["2024-01-01T00:00:00+14:00", "2024-01-01"]),
    "properties": st.fixed_dictionaries(
        {},
        optional={
            "amount": st.integers(-5, 10**20) | st.floats() | odd_text,
            "currency": st.sampled_from(["EUR", "eur", "EURO", ""]) | odd_text,
            "slug": st.sampled_from(["a-b-c", "a" * 40 + "!", "-"]) | odd_text,
            "site": st.sampled_from(["https://x.test/a", "not a uri", "http://[::1"]),
            "tags": st.lists(st.text(max_size=3) | st.integers(), max_size=25),
            "meta": st.dictionaries(odd_text, odd_text | st.integers(), max_size=3),
            "utm_source": odd_text,
            "unplanned": json_values,
        },
    ),
    "traits": st.fixed_dictionaries(
        {},
        optional={
            "email": st.sampled_from(["a@b.test", "a@" + "." * 2000 + "@", "@", ""]) | odd_text,
            "host": st.sampled_from(["example.test", "-bad-.test", "a" * 300]),
            "since": st.sampled_from(["2024-01-01T00:00:00Z", "2024-02-30T25:00:00Z"]),
            "re": st.sampled_from(["^a+$", "(", "(a+)+$", "[", "\\"]),
            "nested": json_values,
            "extra": json_values,
        },
    ),
    "context": st.fixed_dictionaries(
        {},
        optional={
            "traits": st.dictionaries(odd_text, json_values, max_size=3),
            "protocols": st.fixed_dictionaries({"event_version": st.integers(-1, 3) | odd_text}),
            "ruddertyper": st.fixed_dictionaries(
                {"trackingPlanId": st.just(PLAN_ID), "trackingPlanVersion": st.integers(-1, 3)}
            ),
            "ip": st.sampled_from(["1.2.3.4", "::1", "not-an-ip"]),
            "library": json_values,
        },
    ),
}


def field_value(name: str) -> st.SearchStrategy[Any]:
    """Any JSON value in any field, plausible ones often (so enforcement runs deep)."""
    wild = json_values | st.sampled_from(DEPTHS[:5]).map(lambda d: nested(d, "dict"))
    if name in plausible:
        return st.one_of(plausible[name], plausible[name], wild)
    return wild


@st.composite
def sdk_event(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(SDK_FIELDS), unique=True, max_size=len(SDK_FIELDS)))
    event = {name: draw(field_value(name)) for name in names}
    if draw(st.booleans()):  # most SDK calls carry an identity
        event.setdefault("userId", "u1")
    return event


@dataclass
class Body:
    data: bytes
    doc: Any  # the JSON document, when the body is one and the strategy knows it
    events: int | None  # events a 200 stands for, when known


@st.composite
def bodies(draw: st.DrawFn, route: str, depths: list[int] = DEPTHS) -> Body:
    single = ROUTES.get(route) is not None
    kind = draw(
        st.sampled_from(["bytes", "json", "deep", "deep-event", "sdk", "sdk", "sdk", "sdk"])
    )
    if kind == "bytes":
        return Body(draw(st.binary(max_size=200)), None, None)
    if kind == "deep":
        depth, shape = draw(st.sampled_from(depths)), draw(st.sampled_from(["list", "dict"]))
        return Body(deep_json(depth, shape), None, None)
    if kind == "json":
        value = draw(json_values)
        return Body(draw(serialized(value)), value, None)
    if kind == "deep-event":
        depth = draw(st.sampled_from(depths))
        event: dict[str, Any] = {"userId": "u1", "type": "track", "event": EVENT_NAME}
        field_name = draw(st.sampled_from(["properties", "traits", "context", "integrations"]))
        prefix = orjson.dumps(event)[:-1] + b',"' + field_name.encode() + b'":'
        inner = deep_json(depth, draw(st.sampled_from(["list", "dict"])))
        data = prefix + inner + b"}"
        if single:
            return Body(data, None, None)
        return Body(b'{"batch":[' + data + b"]}", None, None)
    # SDK-shaped: an event, or a batch of them with envelope fields of any type.
    if single:
        event = draw(sdk_event())
        return Body(draw(serialized(event)), event, 1)
    batch = draw(st.lists(sdk_event(), min_size=0, max_size=6))
    doc: dict[str, Any] = {"batch": batch}
    for envelope_field in draw(
        st.lists(st.sampled_from(["context", "integrations", "sentAt", "writeKey"]), unique=True)
    ):
        doc[envelope_field] = draw(field_value(envelope_field))
    if draw(st.integers(0, 9)) == 0:
        doc["batch"] = draw(json_values)  # not a list at all
    events = len(doc["batch"]) if isinstance(doc["batch"], list) else None
    return Body(draw(serialized(doc)), doc, events)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _deflate(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(wbits=wbits)
    return packer.compress(data) + packer.flush()


ENCODERS: dict[str, tuple[str, Any]] = {
    "none": ("", lambda d: d),
    "identity": ("identity", lambda d: d),
    "gzip": ("gzip", _gzip),
    "x-gzip": ("x-gzip", _gzip),
    "GZIP ": ("GZIP ", _gzip),
    "deflate-zlib": ("deflate", lambda d: _deflate(d, 15)),
    "deflate-raw": ("deflate", lambda d: _deflate(d, -15)),
    "gzip-truncated": ("gzip", lambda d: _gzip(d)[: max(1, len(_gzip(d)) // 2)]),
    "gzip-corrupt": ("gzip", lambda d: _gzip(d)[:10] + bytes(b ^ 0x5A for b in _gzip(d)[10:])),
    "gzip-twice": ("gzip", lambda d: _gzip(_gzip(d))),
    "gzip-trailing": ("gzip", lambda d: _gzip(d) + b"garbage"),
    "deflate-truncated": ("deflate", lambda d: _deflate(d, 15)[:-3]),
    "gzip-label-plain-body": ("gzip", lambda d: d),
    "br": ("br", lambda d: d),
    "compress": ("compress", lambda d: d),
    "gzip, deflate": ("gzip, deflate", _gzip),
    "garbage": ("\u00e9\x01nc", lambda d: d),
}
CONTENT_TYPES = [
    None,
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/json; charset=utf-16",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "",
    "*/*",
    "application/json; charset=\u00ff",
]


def header_safe(text: str) -> str:
    """Any header value but a line break (which would end the header, not fuzz it)."""
    return text.replace("\r", "").replace("\n", "")


@st.composite
def requests(draw: st.DrawFn, routes: list[str] = ALL_ROUTES) -> FuzzRequest:
    route = draw(st.sampled_from(routes))
    body = draw(bodies(route))
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    key = draw(st.sampled_from([WRITE_KEY, WRITE_KEY, DROP_KEY, DROP_KEY, DISABLED_KEY, "nope"]))
    place = draw(st.sampled_from(["header", "query", "body", "body", "missing", "bad-header"]))
    data = body.data
    key_valid = key not in (DISABLED_KEY, "nope")
    if place == "header":
        headers.update(basic_auth(key))
    elif place == "query":
        query["writeKey"] = key
    elif place == "body" and isinstance(body.doc, dict):
        doc = {**body.doc, "writeKey": key}
        data = draw(serialized(doc))
    elif place == "bad-header":
        headers["Authorization"] = draw(
            st.sampled_from(["Basic !!!", "Basic " + base64.b64encode(b"\xff\xfe:").decode()])
            | st.text(max_size=30).map(lambda t: "Basic " + header_safe(t))
        )
        key_valid = False
    else:
        key_valid = isinstance(body.doc, dict) and _body_key_valid(body.doc)
    if place == "body" and not isinstance(body.doc, dict):
        key_valid = False
    encoding, encode = ENCODERS[draw(st.sampled_from(sorted(ENCODERS)))]
    if encoding:
        headers["Content-Encoding"] = encoding
    content_type = draw(st.sampled_from(CONTENT_TYPES) | st.text(max_size=20).map(header_safe))
    if content_type is not None:
        headers["Content-Type"] = content_type
    return FuzzRequest(route, encode(data), headers, query, body.events, key_valid)


def _body_key_valid(doc: dict[str, Any]) -> bool:
    return doc.get("writeKey") in (WRITE_KEY, DROP_KEY)


# --- the tests ----------------------------------------------------------------------------


def examples(n: int) -> settings:
    """``n`` examples (times FUZZ_SCALE); requests take a round trip, so no deadline."""
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def test_fuzz_every_ingest_route(target: FuzzTarget) -> None:
    @examples(300)
    @given(requests())
    def one(req: FuzzRequest) -> None:
        send(target, req)

    target.fuzz(one)


def test_fuzz_batches_of_sdk_events(target: FuzzTarget) -> None:
    """Well-formed bodies with a good key: enforcement, normalization and Kafka do the work."""

    @examples(100)
    @given(
        st.sampled_from(["/v1/batch", "/v1/import", "/v1/b"]),
        st.lists(sdk_event(), min_size=1, max_size=8),
        st.sampled_from([WRITE_KEY, DROP_KEY]),
    )
    def one(route: str, batch: list[dict[str, Any]], key: str) -> None:
        data = json.dumps({"batch": batch}).encode("utf-8", "surrogatepass")
        send(target, FuzzRequest(route, data, basic_auth(key), {}, len(batch), key_valid=True))

    target.fuzz(one)
    # The forwarding source's events went through its shadow plan and, with violations, the
    # violation stream: both paths were fuzzed too.
    metrics = target.gateway.metrics
    assert sum(s.value for m in metrics.shadow_outcomes.collect() for s in m.samples) > 0
    violations_topic = target.gateway.settings.kafka.violations_topic
    assert target.thread.run(
        consume(target.gateway.settings.kafka.bootstrap_servers, violations_topic, 1)
    )


@st.composite
def near_record_limit(draw: st.DrawFn) -> FuzzRequest:
    """An event nested about as deep as a quarantine record can be, quarantined or not."""
    route = draw(st.sampled_from(ALL_ROUTES))
    event: dict[str, Any] = {"type": "track", "event": draw(st.sampled_from([EVENT_NAME, "E"]))}
    if draw(st.booleans()):
        event["userId"] = "u1"  # without an identity the event is quarantined as invalid
    field_name = draw(st.sampled_from(["properties", "traits", "context", "integrations", "k"]))
    inner = deep_json(draw(st.sampled_from(RECORD_DEPTHS)), draw(st.sampled_from(["list", "dict"])))
    data = orjson.dumps(event)[:-1] + b',"' + field_name.encode() + b'":' + inner + b"}"
    if ROUTES.get(route) is None:
        data = b'{"batch":[' + data + b"]}"
    key = draw(st.sampled_from([WRITE_KEY, DROP_KEY]))
    return FuzzRequest(route, data, basic_auth(key), {}, events=1, key_valid=True)


def test_fuzz_events_nested_near_the_record_limit(target: FuzzTarget) -> None:
    @examples(60)
    @given(near_record_limit())
    def one(req: FuzzRequest) -> None:
        send(target, req)

    target.fuzz(one)
