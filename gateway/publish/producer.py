"""Publishing to Kafka: one message per event, and a request's events acknowledged together.

Contract: :meth:`KafkaPublisher.publish` returns only when Kafka acknowledged (with the configured
``acks``, ``all`` by default) every record it was given; otherwise it raises
:class:`KafkaUnavailable` within the deadline it was given, and the caller answers 503 so the
SDK retries. Records sent before a timeout may still land: delivery is at-least-once, and
``messageId`` is the consumer's dedup key.

Records are produced through librdkafka (``confluent-kafka``): producing one costs the event loop
about 3 µs, against 17 µs for aiokafka's coroutine per record (measured with the same broker,
record size and compression) — at batch sizes that was 40 % of the gateway's time per event.
librdkafka batches, compresses and sends on its own threads, and partitions keyed records with
murmur2 as the Java client does (``partitioner = murmur2_random``), so a user's events share a
partition whichever client wrote them. Its delivery reports are collected on the event loop
(:meth:`KafkaPublisher._poll`); a request waits for its own records only.

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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import confluent_kafka
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError as AdminError
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from confluent_kafka import KafkaError, KafkaException, Message

from gateway.config import KafkaSettings
from gateway.metrics import Metrics
from gateway.outcomes import QuarantineReason
from gateway.publish.records import event_in, quarantine_value, stub

log = logging.getLogger(__name__)

TOPIC_EXISTS = TopicAlreadyExistsError.errno
CONNECT_BACKOFF_MAX_S = 5.0
CONNECT_PROBE_S = 2.0
# Kafka refuses the record itself, not for want of a working cluster.
REFUSED_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)
MIN_RECORD_BYTES = 1024 * 1024
# Room for a record's key, headers (both bounded, see records.py) and framing.
RECORD_MARGIN_BYTES = 4096
# Delivery reports are collected this often while records are in flight (librdkafka hands them
# over only when asked); idle, once a second for its error and log callbacks.
POLL_INTERVAL_S = 0.001
IDLE_POLL_INTERVAL_S = 1.0
# A request of thousands of records is produced in slices of this many, the event loop serving
# other requests between them: producing takes a few µs a record, on the loop.
PRODUCE_SLICE = 256
# What librdkafka may hold (records queued or in flight), whatever Kafka's state: requests
# that got a 503 leave their records behind, to be delivered or expire.
QUEUE_MAX_KBYTES = 128 * 1024
QUEUE_MAX_RECORDS = 200_000
# A record still not delivered after this long is given up (its request answered 503 long ago).
RECORD_TIMEOUT_MS = 120_000
# librdkafka's own log lines (one per failed connection attempt, at error level): kept at debug
# level only (gateway.logs); the client errors that matter are logged once by _on_error.
LIBRDKAFKA_LOGGER = "gateway.publish.librdkafka"


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


def producer_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka's configuration for the gateway's producer."""
    s = settings
    config: dict[str, Any] = {
        "bootstrap.servers": s.bootstrap_servers,
        "client.id": s.client_id,
        "security.protocol": s.security_protocol,
        "acks": s.acks,
        "enable.idempotence": s.idempotence,
        "compression.type": s.compression,
        "linger.ms": s.linger_ms,
        "batch.size": s.max_batch_bytes,
        "message.max.bytes": max_record_bytes(s),
        "request.timeout.ms": s.request_timeout_ms,
        "message.timeout.ms": RECORD_TIMEOUT_MS,
        "partitioner": "murmur2_random",
        "queue.buffering.max.kbytes": QUEUE_MAX_KBYTES,
        "queue.buffering.max.messages": QUEUE_MAX_RECORDS,
        "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
    }
    if s.security_protocol in ("SSL", "SASL_SSL"):
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if s.ssl_check_hostname else "none"
        )
        for key, path in (
            ("ssl.ca.location", s.ssl_cafile),
            ("ssl.certificate.location", s.ssl_certfile),
            ("ssl.key.location", s.ssl_keyfile),
        ):
            if path:
                config[key] = path
    if s.sasl_mechanism:
        config["sasl.mechanism"] = s.sasl_mechanism
        config["sasl.username"] = s.sasl_username
        config["sasl.password"] = s.sasl_password
    return config


class Deliveries:
    """The delivery reports of one send: done when every record produced has its report, and
    not before the last record is produced (reports of the first may arrive while a full queue
    holds the rest back).

    One bound method takes every record's report: a callable per record, to tell them apart,
    costs the event loop about a microsecond a record. The rare failed record is found again by
    what its report carries (:func:`failed_records`)."""

    __slots__ = ("done", "failed", "produced", "reported", "sealed")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.produced = 0
        self.reported = 0
        self.sealed = False
        self.failed: list[tuple[KafkaError, Message]] = []

    def report(self, error: KafkaError | None, message: Message) -> None:
        # Runs inside producer.poll() on the event loop; must not raise.
        if error is not None:
            self.failed.append((error, message))
        self.reported += 1
        self._settle()

    def seal(self) -> None:
        """Every record is produced: done once all are reported."""
        self.sealed = True
        self._settle()

    def _settle(self) -> None:
        if self.sealed and self.reported == self.produced and not self.done.done():
            self.done.set_result(None)


def failed_records(
    records: Sequence[Record], failed: Sequence[tuple[KafkaError, Message]]
) -> list[tuple[Record, KafkaError]]:
    """The records of failed delivery reports, each found by its topic, key and value (a report
    carries no headers). Records alike in all three are the same event sent twice: any of them
    stands for the other."""
    if not failed:
        return []
    alike: dict[tuple[str | None, bytes | None, bytes | None], list[Record]] = {}
    for record in records:
        alike.setdefault((record.topic, record.key, record.value), []).append(record)
    found = []
    for error, message in failed:
        candidates = alike.get((message.topic(), message.key(), message.value()))
        if not candidates:  # librdkafka reports what it was given: not expected
            raise KafkaUnavailable(f"Kafka reported an unknown record as failed: {error}")
        found.append((candidates.pop(), error))
    return found


class KafkaPublisher:
    def __init__(self, settings: KafkaSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._client: confluent_kafka.Producer | None = None
        self._connected = False
        self._connect_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._failing = False
        self._connect_failed = False
        self._errors_told: set[int] = set()  # client error codes logged since Kafka last answered

    async def start(self) -> None:
        """Connect in the background: the gateway starts (and reports not ready) without Kafka."""
        self._client = confluent_kafka.Producer(
            {**producer_config(self.settings), "error_cb": self._on_error}
        )
        self._poll_task = asyncio.create_task(self._poll(self._client), name="kafka-poll")
        self._connect_task = asyncio.create_task(self._connect(self._client), name="kafka-connect")

    async def wait_connected(self, timeout_s: float) -> bool:
        if self._connect_task is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connect_task), timeout_s)
        return self._connected

    async def _connect(self, client: confluent_kafka.Producer) -> None:
        """Until the cluster answers (and the topics exist): then the gateway is ready."""
        s = self.settings
        backoff = 0.2
        while True:
            try:
                await asyncio.to_thread(client.list_topics, None, CONNECT_PROBE_S)
                if s.create_topics:
                    await self._ensure_topics()
            except (KafkaException, AdminError, OSError) as exc:
                self._connect_failed = True
                reason = exc.args[0].str() if isinstance(exc, KafkaException) else exc
                log.warning(
                    "Kafka at %s not reachable (%s); retrying in %.1fs",
                    s.bootstrap_servers,
                    reason,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, CONNECT_BACKOFF_MAX_S)
                continue
            self._connected = True
            self._errors_told.clear()
            log.info("connected to Kafka at %s", s.bootstrap_servers)
            return

    async def _ensure_topics(self) -> None:
        # aiokafka's admin client: natively async, and the client `gateway tail` uses too.
        s = self.settings
        admin = AIOKafkaAdminClient(**client_options(s))
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = (s.events_topic, s.quarantine_topic, s.violations_topic)
            missing = [t for t in wanted if t and t not in existing]
            if not missing:
                return
            response = await admin.create_topics(
                [NewTopic(t, s.topic_partitions, s.topic_replication_factor) for t in missing]
            )
            for topic, code, *rest in response.topic_errors:
                if code not in (0, TOPIC_EXISTS):
                    raise AdminError(f"cannot create topic {topic}: error {code} {rest}")
            log.info("created Kafka topics %s", ", ".join(missing))
        finally:
            await admin.close()

    async def _poll(self, client: confluent_kafka.Producer) -> None:
        """Serve librdkafka's delivery reports (and error and log callbacks) on the loop."""
        while True:
            client.poll(0)
            if len(client):  # records queued or in flight, or reports not yet served
                await asyncio.sleep(POLL_INTERVAL_S)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_INTERVAL_S)

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's client-level errors (brokers down, authentication, fatal)."""
        if error.fatal():
            # The idempotent producer cannot go on (e.g. its producer id was fenced): requests
            # fail with 503 until the gateway is restarted, and readiness says so.
            log.error("Kafka producer failed for good: %s; restart the gateway", error.str())
            self._connected = False
        elif error.code() not in self._errors_told:
            log.warning("Kafka client: %s", error.str())
            self._errors_told.add(error.code())

    async def publish(self, records: Sequence[Record], timeout_s: float) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        client = self._client
        if not self._connected:
            # During the first connection attempt (a fresh start) wait for it within the same
            # deadline; once an attempt has failed, Kafka is known to be down: answer at once.
            if not self._connect_failed:
                await self.wait_connected(timeout_s)
            if not self._connected:
                raise KafkaUnavailable("not connected to Kafka yet")
        assert client is not None
        try:
            async with asyncio.timeout_at(deadline):
                refused, at_delivery = await self._send(client, records)
                # Each on its own, to find which the broker refuses; all at once, not one
                # round trip after another (a refused batch can hold thousands).
                retried = await asyncio.gather(
                    *(self._send(client, [record]) for record in at_delivery)
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
                    # A violation record is only a copy of what the event's record says.
                    stubs = [
                        self._stub_record(record, error)
                        for record, error in refused
                        if record.topic != self.settings.violations_topic
                    ]
                    still, still_at_delivery = await self._send(client, stubs)
                    if still or still_at_delivery:
                        raise KafkaUnavailable(f"Kafka refused even a stub record: {still}")
        except TimeoutError:
            self._mark_failure(len(records))
            raise KafkaUnavailable(f"Kafka did not acknowledge within {timeout_s:g}s") from None
        except KafkaUnavailable:
            self._mark_failure(len(records))
            raise
        if self._failing:
            log.info("Kafka acknowledges again")
            self._failing = False
            self._errors_told.clear()
        self.metrics.kafka_produce_duration.observe(time.perf_counter() - started)

    async def _send(
        self, client: confluent_kafka.Producer, records: Sequence[Record]
    ) -> tuple[list[tuple[Record, KafkaError]], list[Record]]:
        """Produce and await the delivery reports: (records refused when produced, records
        refused at delivery). Raises KafkaUnavailable when Kafka fails for any other reason;
        the caller's deadline bounds the wait."""
        deliveries = Deliveries(asyncio.get_running_loop().create_future())
        refused: list[tuple[Record, KafkaError]] = []
        report = deliveries.report
        for index, r in enumerate(records):
            if index and not index % PRODUCE_SLICE:
                await asyncio.sleep(0)
            while True:
                try:
                    client.produce(
                        r.topic,
                        r.value,
                        r.key,
                        on_delivery=report,
                        # list is invariant: bytes values are among the types it takes
                        headers=r.headers,  # type: ignore[arg-type]
                    )
                except BufferError:
                    # librdkafka's queue is full (Kafka slow or away): wait for room.
                    self._wake.set()
                    await asyncio.sleep(POLL_INTERVAL_S)
                    continue
                except KafkaException as exc:
                    error: KafkaError = exc.args[0]
                    if error.code() not in REFUSED_ERRORS:
                        raise KafkaUnavailable(f"Kafka: {error}") from None
                    refused.append((r, error))
                else:
                    deliveries.produced += 1
                break
        deliveries.seal()
        if not deliveries.done.done():
            self._wake.set()
            await deliveries.done
        at_delivery: list[Record] = []
        for error, _ in deliveries.failed:
            if error.code() not in REFUSED_ERRORS:
                raise KafkaUnavailable(f"Kafka rejected {len(deliveries.failed)} events: {error}")
        for record, error in failed_records(records, deliveries.failed):
            if len(records) == 1:
                refused.append((record, error))  # refused on its own: no second try
            else:
                at_delivery.append(record)
        return refused, at_delivery

    def _stub_record(self, record: Record, error: KafkaError) -> Record:
        """A quarantine record naming the event of a record Kafka refused."""
        headers = dict(record.headers)
        plan_version = headers.get("tracking-plan-version", b"")
        # Records keep no reference to the parsed events (freed once the records are built):
        # the rare refused one is read back, at what parsing it costs.
        event = event_in(record.value, record.topic == self.settings.quarantine_topic)
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
                    f"({error.name()}); only a stub of the event is kept",
                }
            ],
            received_at=received_at if isinstance(received_at, str) else "",
            event=stub(event, len(record.value)),
        )
        stub_headers = [(k, v) if k != "violations" else (k, b"1") for k, v in record.headers]
        return Record(self.settings.quarantine_topic, record.key, value, stub_headers)

    async def probe(self, timeout_s: float) -> bool:
        """Readiness check: after failures, ask the cluster for metadata before saying ready.

        Without this a replica taken out of a load balancer for failing would never receive
        the traffic that could show it has recovered.
        """
        client = self._client
        if client is None or not self._connected:
            return False
        if self._failing:
            try:
                await asyncio.to_thread(client.list_topics, None, timeout_s)
            except KafkaException:
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
        """Deliver what is buffered (within Kafka's request timeout) and disconnect."""
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        client, self._client = self._client, None
        self._connected = False
        if client is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settings.request_timeout_ms / 1000
            while len(client) and loop.time() < deadline:
                self._wake.set()
                await asyncio.sleep(POLL_INTERVAL_S * 10)
            if len(client):
                log.warning("%d records were not delivered before shutdown", len(client))
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
