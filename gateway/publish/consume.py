"""Reading the gateway's topics back (replays, violation samples): a consumer outside any group,
and where a topic's partitions end."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.config import KafkaSettings
from gateway.publish.producer import KafkaUnavailable, client_options

CONNECT_S = 30.0
FETCH_MS = 1000
PROBE_FETCHES = 30  # fetches of FETCH_MS to read a partition's last batch, at most


async def started_consumer(settings: KafkaSettings, client_id: str) -> AIOKafkaConsumer:
    """A started consumer that commits nothing (KafkaUnavailable if Kafka does not answer)."""
    options = client_options(settings)
    options.pop("client_id", None)
    consumer = AIOKafkaConsumer(
        **options,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await asyncio.wait_for(consumer.start(), CONNECT_S)
    except Exception as exc:
        await consumer.stop()
        raise KafkaUnavailable(
            f"Kafka at {settings.bootstrap_servers} not reachable: {exc}"
        ) from None
    return consumer


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions; none when it does not exist (yet)."""
    if topic not in await consumer.topics():
        return []
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def ends_of(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The offset after each partition's last record, as read. Kafka's listed end offset is
    that; some Kafka-protocol brokers list the end of the last record batch's first record,
    so the last batch is read to be sure. Leaves ``partitions`` assigned."""
    listed = await consumer.end_offsets(partitions)
    first = await consumer.beginning_offsets(partitions)
    ends = dict(listed)
    probed = [tp for tp in partitions if listed[tp] > first[tp]]
    if not probed:
        return ends
    consumer.assign(probed)
    for tp in probed:
        consumer.seek(tp, listed[tp] - 1)
    waiting = set(probed)
    for _ in range(PROBE_FETCHES):
        fetched = await consumer.getmany(*waiting, timeout_ms=FETCH_MS)
        for tp, records in fetched.items():
            if records:
                ends[tp] = max(ends[tp], records[-1].offset + 1)
                waiting.discard(tp)
        if not waiting:
            break
    return ends
