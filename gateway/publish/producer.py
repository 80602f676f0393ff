"""Publishing to Kafka: one message per event, and a request's events acknowledged together.

Contract: :meth:`KafkaPublisher.publish` returns only when Kafka acknowledged (with the configured
``acks``, ``all`` by default) every record it was given; otherwise it raises
:class:`KafkaUnavailable` within the deadline it was given, and the caller answers 503 so the
SDK retries. Records sent before a timeout may still land: delivery is at-least-once, and
``messageId`` is the consumer's dedup key.

A record Kafka refuses for what it is (too large for the producer's ``max_request_size`` or the
broker's ``message.max.bytes``, or otherwise invalid) is not an outage: retrying would fail the
same way for ever and duplicate the rest of the request on every try. Such a record is sent
once more on its own (a broker refuses a whole batch, so its neighbours share the refusal),
and if refused again replaced by a stub quarantine record naming the event. Only when even the
stub is refused, or Kafka does not answer, does the request fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)
from aiokafka.helpers import create_ssl_context
from murmurhash2 import murmurhash2

from gateway.config import KafkaSettings
from gateway.metrics import Metrics
from gateway.outcomes import QuarantineReason
from gateway.publish.records import quarantine_value, stub

log = logging.getLogger(__name__)

TOPIC_EXISTS = TopicAlreadyExistsError.errno
CONNECT_BACKOFF_MAX_S = 5.0
# Kafka refuses the record itself, not for want of a working cluster.
REFUSED_ERRORS = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    CorruptRecordException,
)
MIN_RECORD_BYTES = 1024 * 1024
# Room for a record's key, headers (both bounded, see records.py) and framing.
RECORD_MARGIN_BYTES = 4096


# The seed of the Java client's murmur2: keys land on the partitions any Kafka client would pick.
MURMUR2_SEED = 0x9747B28C


def partition_for(key: bytes | None, partitions: Sequence[int], available: Sequence[int]) -> int:
    """The partition of a record, as Kafka's default partitioner picks it.

    A key's partition is its murmur2 hash (positive) modulo the topic's partition count; a record
    without a key goes to a random available partition. The same choice aiokafka's default
    partitioner makes, in native code instead of a Python loop over the key's bytes.
    """
    if key is None:
        return random.choice(available or partitions)
    return partitions[(murmurhash2(key, MURMUR2_SEED) & 0x7FFFFFFF) % len(partitions)]


def max_record_bytes(settings: KafkaSettings) -> int:
    """The largest record the producer sends (its ``max_request_size``)."""
    return max(settings.max_batch_bytes, MIN_RECORD_BYTES)


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time, or is not connected."""


@dataclass(slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    # The event the record was made from: what a stub names should Kafka refuse the record.
    event: Any = None


class Publisher(Protocol):
    async def publish(self, records: Sequence[Record], timeout_s: float) -> None: ...

    async def probe(self, timeout_s: float) -> bool: ...


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection options shared by the producer, the admin client and `gateway tail`."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = create_ssl_context(
            cafile=settings.ssl_cafile or None,
            certfile=settings.ssl_certfile or None,
            keyfile=settings.ssl_keyfile or None,
        )
        context.check_hostname = settings.ssl_check_hostname
        options["ssl_context"] = context
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password
    return options


class KafkaPublisher:
    def __init__(self, settings: KafkaSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._producer: AIOKafkaProducer | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._failing = False
        self._connect_failed = False

    async def start(self) -> None:
        """Connect in the background: the gateway starts (and reports not ready) without Kafka."""
        self._connect_task = asyncio.create_task(self._connect(), name="kafka-connect")

    async def wait_connected(self, timeout_s: float) -> bool:
        if self._connect_task is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connect_task), timeout_s)
        return self._producer is not None

    async def _connect(self) -> None:
        s = self.settings
        backoff = 0.2
        while True:
            producer = AIOKafkaProducer(
                **client_options(s),
                acks="all" if s.acks == "all" else int(s.acks),
                enable_idempotence=s.idempotence,
                compression_type=None if s.compression == "none" else s.compression,
                linger_ms=s.linger_ms,
                max_batch_size=s.max_batch_bytes,
                max_request_size=max_record_bytes(s),
            )
            try:
                await producer.start()
                if s.create_topics:
                    await self._ensure_topics()
            except asyncio.CancelledError:
                # Stopped while connecting: close what was opened, then let the cancel through.
                await asyncio.shield(producer.stop())
                raise
            except (KafkaError, OSError) as exc:
                self._connect_failed = True
                with contextlib.suppress(Exception):
                    await producer.stop()
                log.warning(
                    "Kafka at %s not reachable (%s); retrying in %.1fs",
                    s.bootstrap_servers,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, CONNECT_BACKOFF_MAX_S)
                continue
            self._producer = producer
            log.info("connected to Kafka at %s", s.bootstrap_servers)
            return

    async def _ensure_topics(self) -> None:
        s = self.settings
        admin = AIOKafkaAdminClient(**client_options(s))
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in (s.events_topic, s.quarantine_topic) if t not in existing]
            if not missing:
                return
            response = await admin.create_topics(
                [NewTopic(t, s.topic_partitions, s.topic_replication_factor) for t in missing]
            )
            for topic, code, *rest in response.topic_errors:
                if code not in (0, TOPIC_EXISTS):
                    raise KafkaError(f"cannot create topic {topic}: error {code} {rest}")
            log.info("created Kafka topics %s", ", ".join(missing))
        finally:
            await admin.close()

    async def publish(self, records: Sequence[Record], timeout_s: float) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        producer = self._producer
        if producer is None:
            # During the first connection attempt (a fresh start) wait for it within the same
            # deadline; once an attempt has failed, Kafka is known to be down: answer at once.
            if not self._connect_failed:
                await self.wait_connected(timeout_s)
            producer = self._producer
            if producer is None:
                raise KafkaUnavailable("not connected to Kafka yet")
        try:
            # send() may itself wait (topic metadata, a full buffer), so it shares the deadline.
            async with asyncio.timeout_at(deadline):
                refused, at_delivery = await self._send(producer, records, deadline)
                # Each on its own, to find which the broker refuses; all at once, not one
                # round trip after another (a refused batch can hold thousands).
                retried = await asyncio.gather(
                    *(self._send(producer, [record], deadline) for record in at_delivery)
                )
                for again, _ in retried:
                    refused += again
                if refused:
                    self.metrics.kafka_produce_errors.inc(len(refused))
                    log.warning(
                        "Kafka refused %d records (%s); quarantining stubs of their events",
                        len(refused),
                        refused[0][1],
                    )
                    stubs = [self._stub_record(record, error) for record, error in refused]
                    still, still_at_delivery = await self._send(producer, stubs, deadline)
                    if still or still_at_delivery:
                        raise KafkaUnavailable(f"Kafka refused even a stub record: {still}")
        except TimeoutError:
            self._mark_failure(len(records))
            raise KafkaUnavailable(f"Kafka did not acknowledge within {timeout_s:g}s") from None
        except KafkaError as exc:
            self._mark_failure(len(records))
            raise KafkaUnavailable(str(exc)) from exc
        if self._failing:
            log.info("Kafka acknowledges again")
            self._failing = False
        self.metrics.kafka_produce_duration.observe(time.perf_counter() - started)

    async def _send(
        self, producer: AIOKafkaProducer, records: Sequence[Record], deadline: float
    ) -> tuple[list[tuple[Record, KafkaError]], list[Record]]:
        """Send and await the acks: (records refused at send, records refused at delivery).

        Raises KafkaError (or TimeoutError) when Kafka fails for any other reason.
        """
        refused: list[tuple[Record, KafkaError]] = []
        sent: list[tuple[Record, asyncio.Future[Any]]] = []
        topics: dict[str, tuple[list[int], list[int]]] = {}
        for r in records:
            partitions = topics.get(r.topic)
            if partitions is None:
                partitions = topics[r.topic] = await self._partitions(producer, r.topic)
            try:
                future = await producer.send(
                    r.topic,
                    r.value,
                    key=r.key,
                    headers=r.headers,
                    partition=partition_for(r.key, *partitions),
                )
            except REFUSED_ERRORS as exc:
                refused.append((r, exc))
            else:
                sent.append((r, future))
        if not sent:
            return refused, []
        loop = asyncio.get_running_loop()
        # asyncio.wait, unlike gather, does not cancel the deliveries on timeout.
        _, pending = await asyncio.wait(
            [f for _, f in sent], timeout=max(deadline - loop.time(), 0)
        )
        if pending:
            raise TimeoutError
        at_delivery: list[Record] = []
        for r, f in sent:
            error = f.exception()
            if error is None:
                continue
            if not isinstance(error, REFUSED_ERRORS):
                failures = sum(f.exception() is not None for _, f in sent)
                raise KafkaError(f"Kafka rejected {failures} events: {error!r}")
            if len(records) == 1:
                refused.append((r, error))  # refused on its own: no second try
            else:
                at_delivery.append(r)
        return refused, at_delivery

    @staticmethod
    async def _partitions(producer: AIOKafkaProducer, topic: str) -> tuple[list[int], list[int]]:
        """A topic's partitions, and those with a leader (waits for the topic's metadata)."""
        partitions = sorted(await producer.partitions_for(topic))
        available = producer.client.cluster.available_partitions_for_topic(topic)
        return partitions, sorted(available or ())

    def _stub_record(self, record: Record, error: KafkaError) -> Record:
        """A quarantine record naming the event of a record Kafka refused."""
        headers = dict(record.headers)
        plan_version = headers.get("tracking-plan-version", b"")
        event = record.event
        received_at = event.get("receivedAt") if isinstance(event, dict) else None
        value = quarantine_value(
            reason=QuarantineReason.INVALID_EVENT,
            source_id=headers.get("source-id", b"").decode(),
            plan_id=headers.get("tracking-plan-id", b"").decode() or None,
            plan_version=int(plan_version) if plan_version.isdigit() else None,
            violations=[
                {
                    "type": "Invalid-Event",
                    "message": f"Kafka refused the event's record of {len(record.value)} bytes "
                    f"({type(error).__name__}); only a stub of the event is kept",
                }
            ],
            received_at=received_at if isinstance(received_at, str) else "",
            event=stub(event, len(record.value)),
        )
        stub_headers = [(k, v) if k != "violations" else (k, b"1") for k, v in record.headers]
        return Record(self.settings.quarantine_topic, record.key, value, stub_headers, event)

    async def probe(self, timeout_s: float) -> bool:
        """Readiness check: after failures, ask the cluster for metadata before saying ready.

        Without this a replica taken out of a load balancer for failing would never receive
        the traffic that could show it has recovered.
        """
        producer = self._producer
        if producer is None:
            return False
        if self._failing:
            try:
                async with asyncio.timeout(timeout_s):
                    await producer.client.fetch_all_metadata()
            except (TimeoutError, KafkaError, OSError):
                return False
            log.info("Kafka answers again")
            self._failing = False
        return True

    def _mark_failure(self, count: int) -> None:
        self.metrics.kafka_produce_errors.inc(count)
        if not self._failing:
            log.warning("Kafka is not acknowledging produce requests")
        self._failing = True

    async def stop(self) -> None:
        """Flush what is buffered and disconnect."""
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
