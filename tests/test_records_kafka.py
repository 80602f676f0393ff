"""Bounded keys and headers, and records Kafka refuses: each fails only its own event.

Against the real broker: a huge field, an event larger than the producer's record limit, and
a record the producer refuses at send time all end as one quarantined stub each, while the
rest of the request is forwarded exactly once and answered 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import KafkaError, Message

from gateway.config import KafkaSettings
from gateway.metrics import Metrics
from gateway.publish.producer import PRODUCE_SLICE, Deliveries, KafkaPublisher, Record
from gateway.publish.records import MAX_HEADER_BYTES, MAX_KEY_BYTES, MAX_TEXT_CHARS
from gateway.server import Gateway
from tests.conftest import (
    HEADER_NAMES,
    SOURCE_ID,
    GatewayFactory,
    consume_all,
    gateway_settings,
    headers_of,
)
from tests.records_support import assert_stub_quarantine, post_json, topic, value_of

GOOD = {"type": "track", "userId": "u-good", "event": "Good", "messageId": "m-good"}
MESSAGE = Message()
HEADERS = [(name, SOURCE_ID.encode() if name == "source-id" else b"") for name in HEADER_NAMES]


@contextlib.asynccontextmanager
async def _publisher(settings: KafkaSettings) -> AsyncIterator[KafkaPublisher]:
    """The gateway's publisher, connected to the test broker."""
    publisher = KafkaPublisher(settings, Metrics())
    await publisher.start()
    try:
        assert await publisher.wait_connected(15)
        yield publisher
    finally:
        await publisher.stop()


async def test_huge_user_id_fails_only_its_event(gateway: Gateway) -> None:
    huge_id = "u" * 1_200_000
    big = {"type": "track", "userId": huge_id, "event": "Big", "messageId": "m-big"}
    assert await post_json(gateway, "/v1/batch", {"batch": [GOOD, big]}) == (200, "OK")
    [forwarded] = await topic(gateway)
    assert value_of(forwarded)["messageId"] == "m-good"
    [record] = await topic(gateway, quarantine=True)
    doc = assert_stub_quarantine(record, "m-big")
    assert doc["event"]["userId"] == huge_id[:MAX_TEXT_CHARS] + "…"
    assert doc["event"]["_originalBytes"] > 1_200_000
    # The key is still derived from the user: a digest, the same on every event of the user.
    assert record.key == b"sha256:" + hashlib.sha256(huge_id.encode()).hexdigest().encode()
    assert set(headers_of(record)) == HEADER_NAMES


async def test_long_ids_and_names_are_bounded_in_key_and_headers(gateway: Gateway) -> None:
    user_id = "é" * 300  # 600 bytes: over the key cap, well within the event limit
    name = "Ñ" * 1000
    message_id = "m" * 2000
    event = {"type": "track", "userId": user_id, "event": name, "messageId": message_id}
    assert await post_json(gateway, "/v1/track", event) == (200, "OK")
    [record] = await topic(gateway)
    assert record.key == b"sha256:" + hashlib.sha256(user_id.encode()).hexdigest().encode()
    assert len(record.key) <= MAX_KEY_BYTES
    headers = headers_of(record)  # decodes: each cut value is still valid UTF-8
    assert headers["event-name"] == "Ñ" * (MAX_HEADER_BYTES // 2)
    assert headers["message-id"] == "m" * MAX_HEADER_BYTES
    # The value keeps everything.
    value = value_of(record)
    assert (value["userId"], value["event"], value["messageId"]) == (user_id, name, message_id)


async def test_event_over_kafka_record_limit_is_quarantined_alone(
    make_gateway: GatewayFactory,
) -> None:
    # The event limit set above Kafka's record limit (1 MiB): the event passes the size check
    # but its record could never be written.
    gw = await make_gateway(ingest={"max_event_bytes": 4 * 1024 * 1024})
    big = {**GOOD, "messageId": "m-big", "properties": {"blob": "z" * 1_200_000}}
    for _ in range(2):  # the same answer on a retry
        assert await post_json(gw, "/v1/batch", {"batch": [GOOD, big]}) == (200, "OK")
    assert [value_of(r)["messageId"] for r in await topic(gw)] == ["m-good", "m-good"]
    records = await topic(gw, quarantine=True)
    assert len(records) == 2
    doc = assert_stub_quarantine(records[0], "m-big")
    assert "record limit" in doc["violations"][0]["message"]


async def test_publisher_quarantines_a_record_kafka_refuses(broker: Any, tmp_path: Path) -> None:
    settings = gateway_settings(broker, tmp_path).kafka
    async with _publisher(settings) as publisher:
        event = {"type": "track", "messageId": "m-huge", "userId": "u1", "receivedAt": "now"}
        good = Record(settings.events_topic, b"u1", orjson.dumps(GOOD), HEADERS)
        # Beyond the producer's message.max.bytes: librdkafka refuses it in produce(). The
        # stub names the event, read back from the record: one to forward, one quarantined.
        blob = {"properties": {"blob": "h" * 2_000_000}}
        huge = Record(settings.events_topic, b"u1", orjson.dumps(event | blob), HEADERS)
        quarantined = orjson.dumps(
            {"reason": "violation", "event": event | {"messageId": "m-huge-q"} | blob}
        )
        huge_quarantined = Record(settings.quarantine_topic, b"u2", quarantined, HEADERS)
        await publisher.publish([good, huge, huge_quarantined], 5.0)
    forwarded = await consume_all(settings.bootstrap_servers, settings.events_topic)
    assert [r.value for r in forwarded] == [orjson.dumps(GOOD)]
    stubs = await consume_all(settings.bootstrap_servers, settings.quarantine_topic)
    assert sorted(r.key for r in stubs) == [b"u1", b"u2"]
    for record in stubs:
        doc = assert_stub_quarantine(record, "m-huge" if record.key == b"u1" else "m-huge-q")
        assert "MSG_SIZE_TOO_LARGE" in doc["violations"][0]["message"]
        assert doc["receivedAt"] == "now"
        assert doc["event"]["userId"] == "u1"


async def test_records_are_partitioned_by_key_as_kafkas_default_partitioner_does(
    make_gateway: GatewayFactory,
) -> None:
    # The Java client's choice (murmur2 of the key), checked against aiokafka's default
    # partitioner: consumers and joins can rely on a user's events sharing a partition.
    gateway = await make_gateway(kafka={"topic_partitions": 6})
    users = [f"user-{i}" for i in range(40)] + ["ü" * 7, ""]
    batch = [
        {"type": "track", "userId": user, "anonymousId": "anon", "event": "E", "messageId": f"m{i}"}
        for i, user in enumerate(users * 2)
    ]
    assert await post_json(gateway, "/v1/batch", {"batch": batch}) == (200, "OK")
    records = await topic(gateway)
    assert len(records) == len(batch)
    expected = DefaultPartitioner()
    for record in records:
        assert record.partition == expected(record.key, list(range(6)), list(range(6)))
    used = {r.partition for r in records}
    assert len(used) > 1  # keys spread over the partitions


async def test_a_send_is_done_only_when_its_last_record_is_reported() -> None:
    # With librdkafka's queue full, the first records' reports can arrive while the rest wait
    # to be produced: the request must still wait for all of them (else a 200 is untrue).
    deliveries = Deliveries(asyncio.get_running_loop().create_future())
    deliveries.produced = 2
    deliveries.report(None, MESSAGE)
    deliveries.report(None, MESSAGE)
    assert not deliveries.done.done()  # a third record is still to be produced
    deliveries.produced = 3
    deliveries.seal()
    assert not deliveries.done.done()
    deliveries.report(None, MESSAGE)
    assert deliveries.done.done()
    empty = Deliveries(asyncio.get_running_loop().create_future())
    empty.seal()  # nothing produced (all refused at once): done at once
    assert empty.done.done()


class _CountingClient:
    """The publisher's librdkafka producer, counting the records produced through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.produced = 0

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.client.produce(*args, **kwargs)
        self.produced += 1

    def __len__(self) -> int:
        return len(self.client)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class _RefusingClient(_CountingClient):
    """The real producer, but the first ``refusals`` records holding ``marker`` are reported as
    refused by the broker (message too large) once delivered: they go to a side topic instead,
    so the test's topics hold only what the publisher sent on."""

    def __init__(self, client: Any, marker: bytes, refusals: int) -> None:
        super().__init__(client)
        self.marker, self.refusals = marker, refusals

    def produce(self, topic: str, value: bytes, key: bytes | None, **kwargs: Any) -> None:
        if self.marker in value and self.refusals:
            self.refusals -= 1
            report, original = kwargs["on_delivery"], topic

            def refused(_: Any, message: Any) -> None:
                message.set_topic(original)
                report(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), message)

            kwargs["on_delivery"] = refused
            topic = f"{topic}.refused"
        super().produce(topic, value, key, **kwargs)


@pytest.mark.parametrize("refusals", [2, 4])
async def test_records_refused_at_delivery_are_retried_alone_then_stubbed(
    broker: Any, tmp_path: Path, refusals: int
) -> None:
    # A broker whose record limit is below the producer's refuses a whole produce request:
    # its other records are sent again one by one, and a record refused on its own too is
    # replaced by a stub. Two records alike in topic, key and value are both sent again.
    settings = gateway_settings(broker, tmp_path).kafka
    async with _publisher(settings) as publisher:
        publisher._client = _RefusingClient(publisher._client, b"m-big", refusals)  # type: ignore[assignment]
        big = {**GOOD, "messageId": "m-big", "receivedAt": "now"}
        records = [
            Record(settings.events_topic, b"u1", orjson.dumps(GOOD), HEADERS),
            Record(settings.events_topic, b"u2", orjson.dumps(big), HEADERS),
            Record(settings.events_topic, b"u2", orjson.dumps(big), HEADERS),
        ]
        await publisher.publish(records, 10.0)
    forwarded = await consume_all(settings.bootstrap_servers, settings.events_topic)
    quarantined = await consume_all(settings.bootstrap_servers, settings.quarantine_topic)
    if refusals == 2:  # refused in the request, delivered on their own
        assert sorted(value_of(r)["messageId"] for r in forwarded) == ["m-big", "m-big", "m-good"]
        assert quarantined == []
    else:  # refused on their own too: a stub each
        assert [value_of(r)["messageId"] for r in forwarded] == ["m-good"]
        assert len(quarantined) == 2
        for record in quarantined:
            doc = assert_stub_quarantine(record, "m-big")
            assert "MSG_SIZE_TOO_LARGE" in doc["violations"][0]["message"]
            assert doc["receivedAt"] == "now"
            assert record.key == b"u2"


async def test_a_large_request_is_produced_in_slices_serving_others_between(
    broker: Any, tmp_path: Path
) -> None:
    # Producing takes a few µs a record on the event loop: thousands in one go would hold
    # every other request up for milliseconds.
    settings = gateway_settings(broker, tmp_path).kafka
    async with _publisher(settings) as publisher:
        counting = _CountingClient(publisher._client)
        publisher._client = counting  # type: ignore[assignment]
        records = [
            Record(settings.events_topic, b"u1", b'{"n":%d}' % i, HEADERS)
            for i in range(3 * PRODUCE_SLICE)
        ]
        seen: list[int] = []  # records produced whenever the other task ran

        async def other_request() -> None:
            while counting.produced < len(records):
                seen.append(counting.produced)
                await asyncio.sleep(0)

        other = asyncio.create_task(other_request())
        await publisher.publish(records, 10.0)
        await other
    assert [n for n in seen if 0 < n < len(records)]  # it ran while they were produced
    forwarded = await consume_all(settings.bootstrap_servers, settings.events_topic)
    assert sorted(r.value for r in forwarded) == sorted(r.value for r in records)
