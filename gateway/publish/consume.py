"""Reading the gateway's topics back (replays, violation samples): a consumer outside any group,
and where a topic's partitions end.

Use one consumer per topic: aiokafka keeps partition metadata for the topics a consumer reads,
so after reading one topic it may not know another's partitions (``partitions_of`` would find
none)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

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


async def newest_records(
    consumer: AIOKafkaConsumer, topic: str, scan: int, keep: Callable[[Any], bool]
) -> tuple[list[Any], int, bool]:
    """The records ``keep`` accepts among the newest ``scan`` of the topic (shared among its
    partitions), in each partition's order; how many were read; whether that was the whole
    topic."""
    partitions = await partitions_of(consumer, topic)
    if not partitions:
        return [], 0, True
    ends = await ends_of(consumer, partitions)
    begins = await consumer.beginning_offsets(partitions)
    share = max(1, scan // len(partitions))
    starts = {tp: max(begins[tp], ends[tp] - share) for tp in partitions}
    whole = all(starts[tp] == begins[tp] for tp in partitions)
    remaining = {tp: ends[tp] for tp in partitions if starts[tp] < ends[tp]}
    consumer.assign(list(remaining))
    for tp in remaining:
        consumer.seek(tp, starts[tp])
    kept: list[Any] = []
    scanned = empty = 0
    while remaining and empty < PROBE_FETCHES:
        fetched = await consumer.getmany(*remaining, timeout_ms=FETCH_MS, max_records=5000)
        for tp, records in fetched.items():
            for record in records:
                if record.offset < ends[tp]:
                    scanned += 1
                    if keep(record):
                        kept.append(record)
        for tp in list(remaining):
            if await consumer.position(tp) >= remaining[tp]:
                del remaining[tp]
        empty = 0 if fetched else empty + 1
    return kept, scanned, whole and not remaining
