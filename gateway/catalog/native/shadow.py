"""Shadow plans in the native API (version 1): try a plan on live traffic before enforcing it.

    PUT    /api/{v}/sources/{source_id}/shadow           setShadowPlan {trackingPlanId, version?}
    GET    /api/{v}/sources/{source_id}/shadow[?events=]  getShadowPlan, with what it would do
    DELETE /api/{v}/sources/{source_id}/shadow           deleteShadowPlan
    POST   /api/{v}/sources/{source_id}/shadow/promote   promoteShadowPlan: enforce it

A connected source may name a candidate plan — any plan; at a version of its history, or
(without one) at whatever its current version is. The data plane checks every event of the
source against it as well, with the connection's policies and without any effect on the event
(``gateway_shadow_violations_total``, ``gateway_shadow_outcomes_total{would}``). The summary
judges the source's newest events from the events and quarantine topics against both plans
and says what enforcing the candidate would change. Promoting connects the source to the
candidate plan, its policies kept.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
import orjson

from gateway.catalog.http import KAFKA_KEY
from gateway.catalog.native import Answer, Call, Operation, Version
from gateway.catalog.store import Store, schema
from gateway.catalog.store import connections as stored
from gateway.catalog.store import plans as stored_plans
from gateway.catalog.store.schema import MAX_INTEGER
from gateway.catalog.store.snapshot import read_snapshot_document
from gateway.config import KafkaSettings
from gateway.enforce.enforcer import STAMPS, Enforcement, Enforcer, ViolationBudget
from gateway.enforce.violations import ADDITIONAL_PROPERTIES
from gateway.errors import BadRequest, Conflict, NotFound, Unavailable
from gateway.outcomes import EVENT_TYPES
from gateway.plans.snapshot import Snapshot, Source, parse_snapshot
from gateway.publish.consume import newest_records, started_consumer
from gateway.publish.producer import KafkaUnavailable
from gateway.publish.records import event_name

MAX_EVENTS = 100_000
SCANNED_PER_TOPIC = 200_000
# Violations a summary collects per plan: past them it ends (complete = false). Each event is
# at most ingest.max_event_bytes, but its violations can number thousands.
SUMMARY_VIOLATIONS = 1_000_000


class ShadowRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """The candidate: a plan, at ``version`` of its history, or (null) its current one."""

    tracking_plan_id: Annotated[str, msgspec.Meta(min_length=1, max_length=schema.ID)]
    version: Annotated[int, msgspec.Meta(ge=1, le=MAX_INTEGER)] | None = None


class SummaryQuery(msgspec.Struct, forbid_unknown_fields=True):
    """``events``: how many of the source's newest events to judge (read among the newest
    200,000 records of each topic)."""

    events: Annotated[int, msgspec.Meta(ge=1, le=MAX_EVENTS)] = 10_000


class Outcomes(msgspec.Struct):
    forward: int = 0
    strip: int = 0
    drop: int = 0


class EventChange(msgspec.Struct, rename="camel", kw_only=True):
    event: str
    total: int
    now: Outcomes
    candidate: Outcomes
    newly_dropped: int  # forwarded now, dropped by the candidate
    no_longer_dropped: int  # dropped now, forwarded by the candidate
    stripped: dict[str, int]  # property -> events the candidate would strip it from


class Summary(msgspec.Struct, rename="camel", kw_only=True):
    events: int  # judged
    scanned: int  # records read
    # false: fewer of the source's events than asked were found, or the summary's budget of
    # collected violations (1,000,000 per plan) ran out before all were judged
    complete: bool
    by_event: list[EventChange]
    text: list[str]


class Shadow(msgspec.Struct, rename="camel", kw_only=True):
    source_id: str
    tracking_plan_id: str | None  # the connected plan
    shadow: ShadowRequest | None
    summary: Summary | None = None


class Shadows(msgspec.Struct):
    shadows: list[Shadow]


async def _connection(store_conn: Any, source_id: str) -> Any:
    row = await stored.of_source(store_conn, source_id)
    if row is None:
        raise NotFound(f"source {source_id} is not connected to a tracking plan")
    return row


def _shadow(row: Any) -> Shadow:
    shadow = None
    if row.shadow is not None:
        shadow = ShadowRequest(tracking_plan_id=row.shadow["planId"], version=row.shadow["version"])
    return Shadow(source_id=row.source_id, tracking_plan_id=row.plan_id, shadow=shadow)


async def set_shadow(call: Call) -> Answer:
    request: ShadowRequest = call.params
    return await _stored_shadow(call, request)


async def delete_shadow(call: Call) -> Answer:
    return await _stored_shadow(call, None)


async def _stored_shadow(call: Call, request: ShadowRequest | None) -> Answer:
    """Set (or, without a request, clear) the source's shadow plan; the connection after."""
    source_id = call.path["source_id"]
    async with call.store.write() as conn:
        await _connection(conn, source_id)
        shadow = None
        if request is not None:
            plan = await stored_plans.get(conn, request.tracking_plan_id)  # 404 when missing
            version = request.version
            if version not in (None, plan.version) and (
                await stored_plans.version_document(conn, plan.id, version or 0) is None
            ):
                raise NotFound(f"tracking plan {plan.id} has no version {version}")
            shadow = {"planId": plan.id, "version": version}
        await stored.set_shadow(conn, source_id, shadow)
        row = await _connection(conn, source_id)
    return Answer(Shadows([_shadow(row)]), source_id)


async def promote_shadow(call: Call) -> Answer:
    source_id = call.path["source_id"]
    async with call.store.write() as conn:
        row = await _connection(conn, source_id)
        if row.shadow is None:
            raise Conflict(f"source {source_id} has no shadow plan to promote")
        plan = await stored_plans.get(conn, row.shadow["planId"])
        version = row.shadow.get("version")
        if version is not None and version != plan.version:
            raise Conflict(
                f"the shadow plan is version {version} of {plan.id}, which is at version "
                f"{plan.version}: only a plan's current version can be enforced"
            )
        await stored.move_connection(conn, source_id, plan.id)
        row = await _connection(conn, source_id)
    return Answer(Shadows([_shadow(row)]), source_id)


async def get_shadow(call: Call) -> Answer:
    query: SummaryQuery = call.params
    source_id = call.path["source_id"]
    async with call.store.read() as conn:
        shadow = _shadow(await _connection(conn, source_id))
    if shadow.shadow is not None:
        snapshot = await _snapshot(call.store)
        source = next((s for s in snapshot.sources if s.id == source_id), None)
        if source is not None:
            kafka = call.app[KAFKA_KEY]
            try:
                shadow.summary = await _summary(kafka, snapshot, source, query.events)
            except KafkaUnavailable as exc:
                raise Unavailable(str(exc)) from None
    return Answer(Shadows([shadow]), source_id)


async def _snapshot(store: Store) -> Snapshot:
    document = await read_snapshot_document(store)
    return await asyncio.to_thread(parse_snapshot, document)


async def _summary(
    kafka: KafkaSettings, snapshot: Snapshot, source: Source, wanted: int
) -> Summary | None:
    enforcer = Enforcer()
    current = enforcer.for_source(source, snapshot)
    candidate = enforcer.shadow_for(source, snapshot)
    if current is None or candidate is None:  # the candidate was deleted meanwhile
        return None
    mine = source.id.encode()

    def of_source(record: Any) -> bool:
        return any(k == "source-id" and v == mine for k, v in record.headers or ())

    found: list[tuple[int, bytes, bool]] = []  # (time, record value, quarantined)
    scanned, complete = 0, True
    for topic in (kafka.events_topic, kafka.quarantine_topic):
        consumer = await started_consumer(kafka, "gateway-shadow-summary")  # one per topic
        try:
            records, read, whole = await newest_records(
                consumer, topic, SCANNED_PER_TOPIC, of_source, wanted
            )
        finally:
            await consumer.stop()
        scanned += read
        complete = complete and whole
        quarantined = topic == kafka.quarantine_topic
        found += [(r.timestamp, r.value, quarantined) for r in records]
    found.sort(key=lambda item: item[0])
    newest = found[-wanted:]
    judged, changes = await asyncio.to_thread(_compare, current, candidate, newest)
    return Summary(
        events=judged,
        scanned=scanned,
        complete=(complete or len(found) >= wanted) and judged == len(newest),
        by_event=changes,
        text=_sentences(changes),
    )


def _event_of(value: bytes, quarantined: bool) -> dict[str, Any] | None:
    """The event as it came in (as near as the record tells)."""
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    event = document.get("event") if quarantined and isinstance(document, dict) else document
    if not isinstance(event, dict) or event.get("_truncated") is True:
        return None
    context = event.get("context")
    if isinstance(context, dict):  # the stamps off: the event as the gateway received it
        for stamp in STAMPS:
            context.pop(stamp, None)
    return event if isinstance(event.get("type"), str) else None


def _compare(
    current: Enforcement, candidate: Enforcement, records: list[tuple[int, bytes, bool]]
) -> tuple[int, list[EventChange]]:
    """The events judged (all of them, unless the violations to collect ran out first), and
    what changes per event name (runs in a worker thread)."""
    by_name: dict[str, EventChange] = {}
    budgets = ViolationBudget(SUMMARY_VIOLATIONS), ViolationBudget(SUMMARY_VIOLATIONS)
    judged = 0
    for _, value, quarantined in records:
        if budgets[0].left <= 0 or budgets[1].left <= 0:
            break  # the rest would only be counted as drops: the summary ends here
        event = _event_of(value, quarantined)
        if event is None or event["type"] not in EVENT_TYPES:  # not an event the gateway judges
            continue
        judged += 1
        name = event_name(event) if event["type"] == "track" else event["type"]
        change = by_name.get(name)
        if change is None:
            change = by_name[name] = EventChange(
                event=name,
                total=0,
                now=Outcomes(),
                candidate=Outcomes(),
                newly_dropped=0,
                no_longer_dropped=0,
                stripped={},
            )
        now, then = current.judge(event, budgets[0]), candidate.judge(event, budgets[1])
        change.total += 1
        _count(change.now, now.would)
        _count(change.candidate, then.would)
        change.newly_dropped += now.would != "drop" and then.would == "drop"
        change.no_longer_dropped += now.would == "drop" and then.would != "drop"
        if then.would == "strip":
            extra = {v["property"] for v in then.violations if v["type"] == ADDITIONAL_PROPERTIES}
            for prop in extra:  # each property once per event
                change.stripped[prop] = change.stripped.get(prop, 0) + 1
    return judged, sorted(by_name.values(), key=lambda c: -c.total)


def _count(outcomes: Outcomes, would: str) -> None:
    setattr(outcomes, would, getattr(outcomes, would) + 1)


def _sentences(changes: list[EventChange]) -> list[str]:
    """ "would drop 3.1 % of Order Completed (2.0 % more than now)", "strip coupon from 12 %"."""
    text = []
    for c in changes:
        if c.candidate.drop or c.now.drop:
            delta = (c.candidate.drop - c.now.drop) / c.total * 100
            text.append(
                f"would drop {c.candidate.drop / c.total * 100:.1f} % of {c.event} "
                f"({delta:+.1f} points against now)"
            )
        for prop, n in sorted(c.stripped.items(), key=lambda kv: -kv[1]):
            text.append(f"would strip {prop} from {n / c.total * 100:.1f} % of {c.event}")
    return text


ONE = "/sources/{source_id}/shadow"
OPERATIONS = (
    Operation(
        "PUT",
        ONE,
        "setShadowPlan",
        "Check every event of a connected source against a candidate plan too, without effect",
        {1: Version(set_shadow, ShadowRequest, Shadows)},
        errors=(BadRequest, NotFound),
    ),
    Operation(
        "GET",
        ONE,
        "getShadowPlan",
        "The source's shadow plan and what enforcing it would change on its newest events",
        {1: Version(get_shadow, SummaryQuery, Shadows)},
        errors=(BadRequest, NotFound, Unavailable),
    ),
    Operation(
        "DELETE",
        ONE,
        "deleteShadowPlan",
        "Stop checking the source's events against a shadow plan",
        {1: Version(delete_shadow, data=Shadows)},
        errors=(NotFound,),
    ),
    Operation(
        "POST",
        ONE + "/promote",
        "promoteShadowPlan",
        "Enforce the shadow plan: connect the source to it, its policies kept",
        {1: Version(promote_shadow, data=Shadows)},
        errors=(NotFound, Conflict),
    ),
)
