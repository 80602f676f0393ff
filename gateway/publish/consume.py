"""Reading the gateway's topics back (replays, violation samples): a consumer outside any group,
and where a topic's partitions end.

Use one consumer per topic: aiokafka keeps partition metadata for the topics a consumer reads,
so after reading one topic it may not know another's partitions (``partitions_of`` would find
none)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.config import KafkaSettings
from gateway.publish.producer import KafkaUnavailable, client_options

CONNECT_S = 30.0
FETCH_MS = 1000
PROBE_FETCHES = 30  # fetches of FETCH_MS to read a partition's last batch, at most
STALL_FETCHES = 30  # empty fetches of FETCH_MS in a row, short of the end, before giving up


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


async def read_range(
    consumer: AIOKafkaConsumer,
    ranges: dict[TopicPartition, tuple[int, int]],
    positions: dict[TopicPartition, int],
    max_records: int = 5000,
) -> AsyncIterator[list[Any]]:
    """The records from each partition's start (inclusive) to its end (exclusive), a fetch at
    a time; ``positions`` follows each fetch (the next offset of each partition, at most its
    end). Stops when every partition is read, or after ``STALL_FETCHES`` empty fetches in a row
    (some positions are then short of their ends)."""
    remaining = {tp: end for tp, (start, end) in ranges.items() if start < end}
    for tp, (start, end) in ranges.items():
        positions[tp] = min(start, end)
    if not remaining:
        return
    consumer.assign(list(remaining))
    for tp in remaining:
        consumer.seek(tp, positions[tp])
    empty = 0
    while remaining and empty < STALL_FETCHES:
        fetched = await consumer.getmany(*remaining, timeout_ms=FETCH_MS, max_records=max_records)
        batch = [
            r for tp, records in fetched.items() if tp in remaining for r in records
            if r.offset < remaining[tp]
        ]  # fmt: skip
        for tp in list(remaining):
            position = await consumer.position(tp)
            positions[tp] = min(position, remaining[tp])
            if position >= remaining[tp]:
                consumer.pause(tp)
                del remaining[tp]
        empty = 0 if fetched else empty + 1
        if batch:
            yield batch


def read_all(
    ranges: dict[TopicPartition, tuple[int, int]], positions: dict[TopicPartition, int]
) -> bool:
    """Whether :func:`read_range` got to every end."""
    return all(positions.get(tp, start) >= end for tp, (start, end) in ranges.items())


async def time_offsets(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    time_ms: int,
    none: dict[TopicPartition, int],
    unknown: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Per partition, the offset of its first record at or after ``time_ms``; ``none`` where
    no record is, ``unknown`` where the broker answered without the record's timestamp (some
    Kafka-protocol brokers do: then only the records' own times can tell)."""
    found = await consumer.offsets_for_times({tp: time_ms for tp in partitions})
    offsets = {}
    for tp in partitions:
        at = found.get(tp)
        if at is None:
            offsets[tp] = none[tp]
        else:
            offsets[tp] = int(at.offset) if at.timestamp >= 0 else unknown[tp]
    return offsets


async def newest_ranges(
    consumer: AIOKafkaConsumer, topic: str, scan: int, since_ms: int | None = None
) -> tuple[dict[TopicPartition, tuple[int, int]], bool]:
    """The ranges of the newest ``scan`` records of the topic, shared among its partitions
    (with ``since_ms``, none older than that time, as far as the broker tells), for
    :func:`read_range`; and whether they hold all there is."""
    partitions = await partitions_of(consumer, topic)
    if not partitions:
        return {}, True
    ends = await ends_of(consumer, partitions)
    starts = await consumer.beginning_offsets(partitions)
    if since_ms is not None:
        starts = await time_offsets(consumer, partitions, since_ms, ends, starts)
    share = max(1, scan // len(partitions))
    ranges = {tp: (max(starts[tp], ends[tp] - share), ends[tp]) for tp in partitions}
    return ranges, all(ranges[tp][0] == starts[tp] for tp in partitions)


async def newest_records(
    consumer: AIOKafkaConsumer, topic: str, scan: int, keep: Callable[[Any], bool], limit: int
) -> tuple[list[Any], int, bool]:
    """The newest ``limit`` records ``keep`` accepts among the newest ``scan`` of the topic,
    in each partition's order; how many were read; whether that was the whole topic."""
    ranges, whole = await newest_ranges(consumer, topic, scan)
    kept: deque[Any] = deque(maxlen=limit)
    scanned = 0
    positions: dict[TopicPartition, int] = {}
    async for batch in read_range(consumer, ranges, positions):
        scanned += len(batch)
        kept.extend(r for r in batch if keep(r))
    return list(kept), scanned, whole and read_all(ranges, positions)
