"""The ingest HTTP API: Segment/RudderStack-compatible routes (listed in ``ROUTES``).

A 200 ``OK`` means every event of the request is durably in Kafka — forwarded to the events
topic or quarantined — acknowledged with the producer's ``acks`` (``all`` by default). Anything
transient (overload, Kafka unavailable, no plan snapshot yet) answers 429/503 with
``Retry-After`` so SDKs retry; a 400 means the request can never succeed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.body import parse_json_object, read_body
from gateway.config import IngestSettings
from gateway.dry_run import report_document
from gateway.http import add_sdk_route, json_ok
from gateway.ingest.auth import enabled_source, write_key_before_body, write_key_in_body
from gateway.ingest.budget import ByteBudget, Hold
from gateway.ingest.client_ip import ClientAddress
from gateway.ingest.errors import (
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
    Unavailable,
)
from gateway.ingest.normalize import RequestInfo, request_info
from gateway.metrics import Metrics
from gateway.pipeline import EventResult, Pipeline, Tally
from gateway.plans.cache import PlanCache
from gateway.plans.snapshot import Snapshot, Source
from gateway.publish.producer import KafkaUnavailable, Publisher, Record

log = logging.getLogger(__name__)

# navigator.sendBeacon (RudderStack's useBeacon) posts text/plain, the key in the query.
BEACON_ROUTE = "/beacon/v1/batch"
# Route → forced event type; None marks the batch routes.
ROUTES: dict[str, str | None] = {
    "/v1/track": "track",
    "/v1/identify": "identify",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/group": "group",
    "/v1/alias": "alias",
    "/v1/batch": None,
    "/v1/import": None,
    # analytics.js short forms
    "/v1/t": "track",
    "/v1/i": "identify",
    "/v1/p": "page",
    "/v1/s": "screen",
    "/v1/g": "group",
    "/v1/a": "alias",
    "/v1/b": None,
    BEACON_ROUTE: None,
}


# Memory of a request per byte of its events' JSON: about 3 as Python objects (measured on
# SDK-shaped batches) plus 1 for the records built from them. Charged until the answer, though
# the objects are freed once the records are built: while Kafka acknowledges, the charge
# over-states what is held (the records, and librdkafka's copy of them).
EVENT_MEMORY_FACTOR = 4

# Dry run with the batch body form; see validate().
VALIDATE_ROUTE = "/v1/validate"


class InflightLimit:
    """Bounds events accepted but not yet acknowledged, so memory stays bounded under any load."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.count = 0
        self._gauge = metrics.inflight_events

    def acquire(self, n: int) -> None:
        # A single request larger than the whole limit is still admitted when nothing else is
        # in flight, otherwise it could never succeed.
        if self.count and self.count + n > self.limit:
            raise Overloaded(f"too many events in flight ({self.count}); retry shortly")
        self.count += n
        self._gauge.set(self.count)

    def release(self, n: int) -> None:
        self.count -= n
        self._gauge.set(self.count)


@dataclass
class IngestContext:
    settings: IngestSettings
    cache: PlanCache
    publisher: Publisher
    pipeline: Pipeline
    inflight: InflightLimit
    budget: ByteBudget
    client_address: ClientAddress
    metrics: Metrics
    # Told every request's records once Kafka acknowledged them (`gateway dev`'s test API).
    observer: Callable[[Sequence[Record]], None] | None = None


INGEST_KEY = web.AppKey("ingest", IngestContext)


def add_ingest_routes(app: web.Application, ctx: IngestContext) -> None:
    app[INGEST_KEY] = ctx
    for path, forced_type in ROUTES.items():
        add_sdk_route(app, "POST", path, _handler(forced_type))
    add_sdk_route(app, "POST", VALIDATE_ROUTE, validate)


def _handler(forced_type: str | None) -> Any:
    async def handle(request: web.Request) -> web.Response:
        return await ingest(request, forced_type)

    return handle


@dataclass(slots=True)
class IngestRequest:
    snapshot: Snapshot
    source: Source
    events: list[Any]
    info: RequestInfo


async def read_ingest_request(
    request: web.Request, ctx: IngestContext, forced_type: str | None, hold: Hold
) -> IngestRequest:
    """Write key, source, body and events of a request; raises the matching ApiError.

    The body's bytes (and then its events', until the response) are charged to ``hold``.
    """
    settings = ctx.settings
    key = write_key_before_body(request)
    if key is not None:
        # Refused before a byte of the body is read: a wrong key costs no memory or time.
        enabled_source(current_snapshot(ctx), key)
    hold.check_room()
    body = await read_body(request, settings.max_request_bytes, hold)
    body_bytes = len(body)
    doc = parse_json_object(body)
    del body  # only the parsed events are kept from here on
    # Parsed, the events take several times their JSON size in memory (Python objects, then
    # Kafka records): charged so, the budget bounds real memory.
    hold.grow(EVENT_MEMORY_FACTOR * body_bytes - hold.bytes)
    # Taken again after the body is read, so a slow client never keeps a replaced snapshot
    # alive, and a key removed meanwhile is refused.
    snapshot = current_snapshot(ctx)
    source = enabled_source(snapshot, key if key is not None else write_key_in_body(doc))
    ip = client_ip(ctx, request)
    if forced_type is None:
        events = doc.get("batch")
        if not isinstance(events, list):
            raise InvalidRequest("batch requests need a 'batch' array of events")
        if not events:
            raise InvalidRequest("batch is empty")
        if len(events) > settings.max_batch_events:
            raise PayloadTooLarge(
                f"batch has {len(events)} events; the limit is {settings.max_batch_events}"
            )
        info = request_info(request_ip=ip, envelope=doc)
    else:
        events = [doc]
        info = request_info(request_ip=ip)
    return IngestRequest(snapshot, source, events, info)


def client_ip(ctx: IngestContext, request: web.Request) -> str:
    """The client's address for ``request_ip`` (see gateway.ingest.client_ip)."""
    return ctx.client_address.of(request.remote, request.headers.get("X-Forwarded-For"))


def current_snapshot(ctx: IngestContext) -> Snapshot:
    snapshot = ctx.cache.current
    if snapshot is None:
        raise Unavailable("no tracking-plan snapshot loaded yet")
    return snapshot


async def ingest(request: web.Request, forced_type: str | None) -> web.Response:
    ctx = request.app[INGEST_KEY]
    # The body's bytes stay charged until the response: they stand for its events and records
    # (see EVENT_MEMORY_FACTOR).
    hold = ctx.budget.hold()
    try:
        return await _ingest(request, ctx, forced_type, hold)
    finally:
        hold.release()


async def _ingest(
    request: web.Request, ctx: IngestContext, forced_type: str | None, hold: Hold
) -> web.Response:
    req = await read_ingest_request(request, ctx, forced_type, hold)
    await publish_request(ctx, hold, req, forced_type)
    return web.Response(text="OK")


async def publish_request(
    ctx: IngestContext, hold: Hold, req: IngestRequest, forced_type: str | None
) -> None:
    """Decide, publish and count a request's events; returns once Kafka acknowledged them all."""
    source, count = req.source, len(req.events)
    ctx.inflight.acquire(count)
    try:
        records, tally = await _process(
            ctx, hold, req.events, source, req.snapshot, req.info, forced_type
        )
        # A batch's shared context is merged into every event, so its records can outweigh the
        # body many times over; they are held until Kafka acknowledges them, so they are charged
        # too (the body's charge already stands for them once, see EVENT_MEMORY_FACTOR).
        hold.grow(sum(len(r.value) for r in records) - hold.bytes // EVENT_MEMORY_FACTOR)
        _count(ctx.metrics, ctx.metrics.events_received, source.id, tally.received)
        _count_violations(ctx.metrics, source.id, tally)
        try:
            await ctx.publisher.publish(records, ctx.settings.ack_timeout_s)
        except KafkaUnavailable as exc:
            log.warning("request of %d events not acknowledged: %s", len(records), exc)
            raise Unavailable("Kafka is unavailable; retry later") from None
    finally:
        ctx.inflight.release(count)
    _count_outcomes(ctx.metrics, source.id, tally)
    if ctx.observer is not None:
        try:
            ctx.observer(records)
        except Exception:  # the events are in Kafka: the client's answer stays 200
            log.exception("the ingest observer failed")


async def validate(request: web.Request) -> web.Response:
    """Dry run: the outcome every event would get, and its violations; publishes nothing."""
    ctx = request.app[INGEST_KEY]
    hold = ctx.budget.hold()
    try:
        req = await read_ingest_request(request, ctx, None, hold)
        results: list[EventResult] = []
        await _process(ctx, hold, req.events, req.source, req.snapshot, req.info, None, results)
        return json_ok(report_document(results))
    finally:
        hold.release()


# Requests larger than this are processed in a worker thread (see _process).
LOOP_EVENTS = 250
LOOP_BODY_BYTES = 256 * 1024


async def _process(
    ctx: IngestContext,
    hold: Hold,
    events: list[Any],
    source: Source,
    snapshot: Snapshot,
    info: RequestInfo,
    forced_type: str | None,
    results: list[EventResult] | None = None,
) -> tuple[list[Record], Tally]:
    """The pipeline's work on a request's events, which are freed as soon as their records are
    built (``events`` is emptied).

    Freed then, while the CPU's caches still hold them, rather than once Kafka has acknowledged
    the records: by then the requests served meanwhile have pushed them out, and freeing them
    costs about twice as much (see README, Performance).

    Ordinary requests are processed right here. A large one (thousands of events, a megabyte
    of fields) takes tens of milliseconds of pure CPU: in a worker thread the event loop keeps
    taking the GIL every switch interval, so other requests are not held up behind it.
    """

    def process() -> tuple[list[Record], Tally]:
        try:
            return ctx.pipeline.process(events, source, snapshot, info, forced_type, results)
        finally:
            events.clear()

    if len(events) <= LOOP_EVENTS and hold.bytes <= EVENT_MEMORY_FACTOR * LOOP_BODY_BYTES:
        return process()
    return await asyncio.to_thread(process)


def _count(metrics: Metrics, counter: Any, source_id: str, counts: Any) -> None:
    for type_label, n in counts.items():
        metrics.labelled(counter, source_id, type_label).inc(n)


def _count_violations(metrics: Metrics, source_id: str, tally: Tally) -> None:
    if tally.validation_s:
        metrics.validation_duration.observe(tally.validation_s)
    labelled = metrics.labelled
    for (plan_id, event_label, rule_version, violation_type), n in tally.violations.items():
        labelled(
            metrics.violations, source_id, plan_id, event_label, rule_version, violation_type
        ).inc(n)
    for (plan_id, event_label, valid), n in tally.checked.items():
        labelled(metrics.events_checked, source_id, plan_id, event_label, valid).inc(n)
    for (plan_id, event_label, kind), n in tally.shadow_violations.items():
        labelled(metrics.shadow_violations, source_id, plan_id, event_label, kind).inc(n)
    for (plan_id, event_label, would), n in tally.shadow_outcomes.items():
        labelled(metrics.shadow_outcomes, source_id, plan_id, event_label, would).inc(n)


def _count_outcomes(metrics: Metrics, source_id: str, tally: Tally) -> None:
    _count(metrics, metrics.events_forwarded, source_id, tally.forwarded)
    for (type_label, reason), n in tally.quarantined.items():
        metrics.labelled(metrics.events_quarantined, source_id, type_label, reason).inc(n)
