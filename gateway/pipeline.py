"""One request's events → Kafka records, each event with exactly one outcome.

    parsed events ─▶ normalize ─▶ check (invalid-event?) ─▶ enforce (plan) ─▶ records
                                        │                           │
                                        └────── quarantine ◀────────┘ (drop decisions)

The HTTP layer hands in the already-parsed events of one request; this module decides each
event's outcome and builds its record. It never awaits: all of it is CPU work, done in one go.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.config import IngestSettings, KafkaSettings
from gateway.enforce.enforcer import Decision, Enforcer
from gateway.ingest.normalize import RequestInfo, normalize
from gateway.outcomes import EVENT_TYPES, Outcome, QuarantineReason
from gateway.plans.snapshot import Snapshot, Source
from gateway.publish.producer import Record
from gateway.publish.records import event_key, event_name, headers_for, quarantine_value

UNKNOWN_TYPE = "unknown"


@dataclass(slots=True)
class Tally:
    """Per-request outcome counts, added to the metrics once per request, not per event."""

    received: Counter[str] = field(default_factory=Counter)
    forwarded: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (tracking plan id, event label, violation type) -> count
    violations: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    validation_s: float = 0.0


@dataclass(frozen=True, slots=True)
class EventResult:
    """What happened to one event: for dry runs (``/v1/validate``, ``gateway validate``)."""

    outcome: Outcome
    reason: QuarantineReason | None
    violations: list[dict[str, Any]]
    message_id: Any
    event_type: Any
    event_name: Any


class Pipeline:
    def __init__(self, ingest: IngestSettings, kafka: KafkaSettings, enforcer: Enforcer) -> None:
        self.max_event_bytes = ingest.max_event_bytes
        self.events_topic = kafka.events_topic
        self.quarantine_topic = kafka.quarantine_topic
        self.enforcer = enforcer

    def process(
        self,
        events: list[Any],
        source: Source,
        snapshot: Snapshot,
        info: RequestInfo,
        forced_type: str | None = None,
        results: list[EventResult] | None = None,
    ) -> tuple[list[Record], Tally]:
        """Decide every event's outcome and build its record; fills ``results`` if given."""
        tally = Tally()
        records: list[Record] = []
        source_id = source.id.encode()
        enforce = self.enforcer.enforce
        for raw in events:
            problem = _prepare(raw, info, forced_type)
            type_label = raw.get("type") if isinstance(raw, dict) else None
            if type_label not in EVENT_TYPES:
                type_label = UNKNOWN_TYPE
            tally.received[type_label] += 1
            decision: Decision | None = None
            if problem is None:
                started = time.perf_counter()
                decision = enforce(raw, source, snapshot)
                tally.validation_s += time.perf_counter() - started
            event_bytes: int | None
            try:
                value = orjson.dumps(raw)
                event_bytes = len(value)
            except orjson.JSONEncodeError:
                # Read (JSON is parsed up to 1024 levels deep) but not writable (254 levels).
                value, event_bytes = b"", None
                problem = "event is nested too deeply to be written (more than 254 levels)"
            if problem is None and len(value) > self.max_event_bytes:
                problem = f"event is {len(value)} bytes; the limit is {self.max_event_bytes} bytes"
            plan_id = plan_version = b""
            violations: list[dict[str, Any]] = []
            reason: QuarantineReason | None = None
            if decision is not None:
                plan = decision.plan
                plan_id, plan_version = plan.id.encode(), str(plan.version).encode()
                violations = decision.violations
                reason = decision.reason
                for v in violations:
                    tally.violations[plan.id, decision.event_label, v["type"]] += 1
            if problem is not None:
                reason = QuarantineReason.INVALID_EVENT
                violations = [{"type": "Invalid-Event", "message": problem}]
            key = event_key(raw)
            headers = headers_for(raw, source_id, plan_id, plan_version, len(violations))
            if reason is None:
                records.append(Record(self.events_topic, key, value, headers))
                tally.forwarded[type_label] += 1
            else:
                quarantined = quarantine_value(
                    reason=reason,
                    source_id=source.id,
                    plan_id=decision.plan.id if decision else None,
                    plan_version=decision.plan.version if decision else None,
                    violations=violations,
                    received_at=info.received_at_text,
                    event=raw,
                    event_bytes=event_bytes,
                )
                records.append(Record(self.quarantine_topic, key, quarantined, headers))
                tally.quarantined[type_label, reason.value] += 1
            if results is not None:
                results.append(_result(raw, reason, violations))
        return records, tally


def _prepare(raw: Any, info: RequestInfo, forced_type: str | None) -> str | None:
    """Normalize an event in place; returns why it is unusable, or None."""
    if not isinstance(raw, dict):
        return f"event must be a JSON object, not {type(raw).__name__}"
    if forced_type is not None:
        raw["type"] = forced_type
    # The write key is a credential, not event data: it never reaches Kafka.
    raw.pop("writeKey", None)
    normalize(raw, info)
    return invalid_event_problem(raw)


def _result(
    raw: Any, reason: QuarantineReason | None, violations: list[dict[str, Any]]
) -> EventResult:
    obj = raw if isinstance(raw, dict) else {}
    return EventResult(
        outcome=Outcome.FORWARDED if reason is None else Outcome.QUARANTINED,
        reason=reason,
        violations=violations,
        message_id=obj.get("messageId"),
        event_type=obj.get("type"),
        event_name=event_name(obj) if obj else None,
    )


def invalid_event_problem(event: dict[str, Any]) -> str | None:
    """Why an event can never be processed (quarantined as ``invalid-event``), or None."""
    event_type = event.get("type")
    if event_type not in EVENT_TYPES:
        return (
            f"unknown event type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}"
            if event_type is not None
            else "event has no type"
        )
    if _blank(event.get("userId")) and _blank(event.get("anonymousId")):
        return "event has neither userId nor anonymousId"
    if event_type == "track":
        name = event.get("event")
        if not isinstance(name, str) or not name:
            return "track event has no event name"
    return None


def _blank(value: Any) -> bool:
    return value is None or value == "" or isinstance(value, dict | list | bool)
