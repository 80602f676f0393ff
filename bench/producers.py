"""The ``producers`` scenario: the evidence for the Kafka client, per record, on the event loop.

The same records (corpus events, keyed by user, with the gateway's headers) are published in
requests of 100 through each client, against the same embedded broker, with the gateway's
default producer settings (zstd, linger 5 ms, 1 MiB batches, acks all):

- ``aiokafka``: ``send`` per record and the request's acknowledgements awaited together — what
  the gateway did before;
- ``librdkafka``: the gateway's :class:`~gateway.publish.producer.KafkaPublisher`
  (``confluent-kafka``).

Figures: the event loop's CPU time per record (what the gateway's one thread pays; librdkafka
compresses and sends on its own threads, which ``process_us_per_record`` includes) and the
records per second one client reaches.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.corpus import Corpus
from gateway.broker import EmbeddedBroker
from gateway.config import KafkaSettings
from gateway.metrics import Metrics
from gateway.publish.producer import KafkaPublisher, Record, max_record_bytes

REQUEST_EVENTS = 100
HEADERS = [("source-id", b"src_bench"), ("event-type", b"track"), ("violations", b"0")]


def _requests(count: int) -> list[list[Record]]:
    events = Corpus().make_events(count * REQUEST_EVENTS, 0.0)
    records = [
        Record("bench", str(e.get("userId", "")).encode(), orjson.dumps(e), HEADERS) for e in events
    ]
    return [records[i : i + REQUEST_EVENTS] for i in range(0, len(records), REQUEST_EVENTS)]


async def _aiokafka(
    settings: KafkaSettings, requests: list[list[Record]], duration_s: float
) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        compression_type=settings.compression,
        linger_ms=settings.linger_ms,
        max_batch_size=settings.max_batch_bytes,
        max_request_size=max_record_bytes(settings),
    )
    await producer.start()
    try:

        async def publish(records: list[Record]) -> None:
            futures = [
                await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in records
            ]
            await asyncio.gather(*futures)

        return await _drive(publish, requests, duration_s)
    finally:
        await producer.stop()


async def _librdkafka(
    settings: KafkaSettings, requests: list[list[Record]], duration_s: float
) -> int:
    publisher = KafkaPublisher(settings, Metrics())
    await publisher.start()
    try:
        if not await publisher.wait_connected(15):
            raise RuntimeError("the gateway's publisher did not connect")

        async def publish(records: list[Record]) -> None:
            await publisher.publish(records, 30.0)

        return await _drive(publish, requests, duration_s)
    finally:
        await publisher.stop()


async def _drive(publish: Any, requests: list[list[Record]], duration_s: float) -> int:
    """Publish requests from 8 concurrent clients until ``duration_s``; records published."""
    await publish(requests[0])  # connections and topic metadata
    loop = asyncio.get_running_loop()
    end = loop.time() + duration_s
    published = 0

    async def client(offset: int) -> None:
        nonlocal published
        i = offset
        while loop.time() < end:
            await publish(requests[i % len(requests)])
            published += REQUEST_EVENTS
            i += 8

    await asyncio.gather(*(client(n) for n in range(8)))
    return published


def _measure(
    run: Any, settings: KafkaSettings, requests: list[list[Record]], duration_s: float
) -> dict[str, Any]:
    loop_cpu, process_cpu, wall = time.thread_time(), time.process_time(), time.perf_counter()
    published = asyncio.run(run(settings, requests, duration_s))
    loop_cpu = time.thread_time() - loop_cpu
    process_cpu = time.process_time() - process_cpu
    wall = time.perf_counter() - wall
    return {
        "loop_us_per_record": round(loop_cpu / published * 1e6, 2),
        "process_us_per_record": round(process_cpu / published * 1e6, 2),
        "records_per_s": round(published / wall),
    }


def producers(duration_s: float) -> dict[str, Any]:
    requests = _requests(200)
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker,
    ):
        settings = replace(
            KafkaSettings(),
            bootstrap_servers=broker.bootstrap_servers,
            idempotence=False,  # the embedded broker has no idempotent producer
            events_topic="bench",
        )
        half = duration_s / 2
        # The gateway's publisher first: it creates the topic.
        librdkafka = _measure(_librdkafka, settings, requests, half)
        return {
            "aiokafka": _measure(_aiokafka, settings, requests, half),
            "librdkafka": librdkafka,
            "records_per_request": REQUEST_EVENTS,
        }
