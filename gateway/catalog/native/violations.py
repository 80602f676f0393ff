"""Violation samples in the native API (version 1), read from the violation stream.

    GET /api/{v}/violations/samples?sourceId=&event=&type=&windowMinutes=&perGroup=

With ``kafka.violations_topic`` set, every violation is a "Violation Generated" record (see
gateway.publish.violations). This reads the newest of them — those of the last
``windowMinutes`` (60), at most ``MAX_SCANNED`` records — and answers, per source, event and
violation type, how many there were and the ``perGroup`` (5) most recent, with their offending
values: what a data team looks at to see why an event fails, with real payloads.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import orjson
from aiokafka import TopicPartition

from gateway.catalog.http import KAFKA_KEY
from gateway.catalog.native import Answer, Call, Operation, Version
from gateway.config import KafkaSettings
from gateway.errors import BadRequest, NotFound, Unavailable
from gateway.publish.consume import newest_ranges, read_all, read_range, started_consumer
from gateway.publish.producer import KafkaUnavailable
from gateway.publish.violations import VIOLATION_GENERATED
from gateway.times import format_timestamp

MAX_SCANNED = 200_000
MAX_WINDOW_MINUTES = 7 * 24 * 60
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class SamplesQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Filters: ``sourceId``, ``event`` (a planned event's name, an event type, or the name of
    an unplanned event) and ``type`` (a violation type, e.g. ``Datatype-Mismatch``)."""

    source_id: Name | None = None
    event: Name | None = None
    type: Name | None = None
    window_minutes: Annotated[int, msgspec.Meta(ge=1, le=MAX_WINDOW_MINUTES)] = 60
    per_group: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5


class SampleGroup(msgspec.Struct, rename="camel"):
    source_id: str
    event: str
    violation_type: str
    count: int
    samples: list[dict[str, Any]]  # "Violation Generated" records, newest first


class Samples(msgspec.Struct, rename="camel"):
    since: str
    scanned: int  # records read
    complete: bool  # false: the window holds more than MAX_SCANNED records; the newest counted
    groups: list[SampleGroup]  # most frequent first


@dataclass
class _Group:
    count: int
    newest: deque[tuple[int, dict[str, Any]]]


async def violation_samples(call: Call) -> Answer:
    query: SamplesQuery = call.params
    kafka = call.app[KAFKA_KEY]
    topic = kafka.violations_topic
    if not topic:
        raise NotFound("the violation stream is off: set kafka.violations_topic")
    since_ms = int(time.time() * 1000) - query.window_minutes * 60_000
    try:
        groups, scanned, complete = await _scan(kafka, topic, since_ms, query)
    except KafkaUnavailable as exc:
        raise Unavailable(str(exc)) from None
    answer = [
        SampleGroup(
            source_id=key[0],
            event=key[1],
            violation_type=key[2],
            count=group.count,
            # Newest first: by time, and of equal times the later in the topic.
            samples=[value for _, value in sorted(reversed(group.newest), key=lambda s: -s[0])],
        )
        for key, group in sorted(groups.items(), key=lambda kv: -kv[1].count)
    ]
    since = format_timestamp(datetime.fromtimestamp(since_ms / 1000, UTC))
    return Answer(Samples(since, scanned, complete, answer))


async def _scan(
    kafka: KafkaSettings, topic: str, since_ms: int, query: SamplesQuery
) -> tuple[dict[tuple[str, str, str], _Group], int, bool]:
    consumer = await started_consumer(kafka, "gateway-violation-samples")
    groups: dict[tuple[str, str, str], _Group] = {}
    scanned = 0
    try:
        ranges, complete = await newest_ranges(consumer, topic, MAX_SCANNED, since_ms)
        positions: dict[TopicPartition, int] = {}
        async for batch in read_range(consumer, ranges, positions):
            scanned += len(batch)
            await asyncio.to_thread(_tally, groups, batch, since_ms, query)
        complete = complete and read_all(ranges, positions)
    finally:
        await consumer.stop()
    return groups, scanned, complete


def _tally(
    groups: dict[tuple[str, str, str], _Group],
    records: list[Any],
    since_ms: int,
    query: SamplesQuery,
) -> None:
    for record in records:
        if record.timestamp < since_ms:
            continue
        try:
            value = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(value, dict) or value.get("type") != VIOLATION_GENERATED:
            continue
        source_id, event, kind = (value.get(k) for k in ("sourceId", "event", "violationType"))
        if not (isinstance(source_id, str) and isinstance(event, str) and isinstance(kind, str)):
            continue
        key = (source_id, event, kind)
        if (
            (query.source_id is not None and source_id != query.source_id)
            or (query.event is not None and query.event not in (event, value.get("eventName")))
            or (query.type is not None and kind != query.type)
        ):
            continue
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(0, deque(maxlen=query.per_group))
        group.count += 1
        group.newest.append((record.timestamp, value))


OPERATIONS = (
    Operation(
        "GET",
        "/violations/samples",
        "getViolationSamples",
        "The newest violations per source, event and violation type, with counts over a window",
        {1: Version(violation_samples, SamplesQuery, Samples)},
        errors=(BadRequest, NotFound, Unavailable),
    ),
)
