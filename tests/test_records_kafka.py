"""Bounded keys and headers, and records Kafka refuses: each fails only its own event.

Against the real broker: a huge field, an event larger than the producer's record limit, and
a record the producer refuses at send time all end as one quarantined stub each, while the
rest of the request is forwarded exactly once and answered 200.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

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
    publisher = KafkaPublisher(settings, Metrics())
    await publisher.start()
    try:
        assert await publisher.wait_connected(15)
        event = {"type": "track", "messageId": "m-huge", "userId": "u1", "receivedAt": "now"}
        headers = [(name, b"") for name in sorted(HEADER_NAMES)]
        headers[[n for n, _ in headers].index("source-id")] = ("source-id", SOURCE_ID.encode())
        good = Record(settings.events_topic, b"u1", orjson.dumps(GOOD), headers, GOOD)
        # Beyond the producer's message.max.bytes: librdkafka refuses it in produce().
        huge = Record(settings.events_topic, b"u1", b'"' + b"h" * 2_000_000 + b'"', headers, event)
        await publisher.publish([good, huge], 5.0)
    finally:
        await publisher.stop()
    forwarded = await consume_all(settings.bootstrap_servers, settings.events_topic)
    assert [r.value for r in forwarded] == [orjson.dumps(GOOD)]
    [record] = await consume_all(settings.bootstrap_servers, settings.quarantine_topic)
    doc = assert_stub_quarantine(record, "m-huge")
    assert "MSG_SIZE_TOO_LARGE" in doc["violations"][0]["message"]
    assert doc["receivedAt"] == "now"
    assert record.key == b"u1"


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
    deliveries.report(0, None, None)
    deliveries.report(1, None, None)
    assert not deliveries.done.done()  # a third record is still to be produced
    deliveries.produced = 3
    deliveries.seal()
    assert not deliveries.done.done()
    deliveries.report(2, None, None)
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


async def test_a_large_request_is_produced_in_slices_serving_others_between(
    broker: Any, tmp_path: Path
) -> None:
    # Producing takes a few µs a record on the event loop: thousands in one go would hold
    # every other request up for milliseconds.
    settings = gateway_settings(broker, tmp_path).kafka
    publisher = KafkaPublisher(settings, Metrics())
    await publisher.start()
    try:
        assert await publisher.wait_connected(15)
        counting = _CountingClient(publisher._client)
        publisher._client = counting  # type: ignore[assignment]
        headers = [(name, b"") for name in sorted(HEADER_NAMES)]
        records = [
            Record(settings.events_topic, b"u1", b'{"n":%d}' % i, headers)
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
    finally:
        await publisher.stop()
    assert [n for n in seen if 0 < n < len(records)]  # it ran while they were produced
    forwarded = await consume_all(settings.bootstrap_servers, settings.events_topic)
    assert sorted(r.value for r in forwarded) == sorted(r.value for r in records)
