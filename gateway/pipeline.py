"""One request's events → Kafka records, each event with exactly one outcome.

    parsed events ─▶ normalize ─▶ check (invalid-event?) ─▶ enforce ─▶ records
                                        │                      │
                                        └──── quarantine ◀─────┘ (drop decisions)

The HTTP layer hands in the already-parsed events of one request; this module decides each
event's outcome and builds its record. It never awaits: all of it is CPU work, done in one go.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.config import IngestSettings, KafkaSettings
from gateway.ingest.normalize import RequestInfo, normalize
from gateway.outcomes import EVENT_TYPES, QuarantineReason
from gateway.plans.snapshot import Source
from gateway.publish.records import Record, event_key, headers_for, quarantine_value

UNKNOWN_TYPE = "unknown"


@dataclass(slots=True)
class Tally:
    """Per-request outcome counts, added to the metrics once per request, not per event."""

    received: Counter[str] = field(default_factory=Counter)
    forwarded: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[tuple[str, str]] = field(default_factory=Counter)


class Pipeline:
    def __init__(self, ingest: IngestSettings, kafka: KafkaSettings) -> None:
        self.max_event_bytes = ingest.max_event_bytes
        self.events_topic = kafka.events_topic
        self.quarantine_topic = kafka.quarantine_topic

    def process(
        self,
        events: list[Any],
        source: Source,
        info: RequestInfo,
        forced_type: str | None = None,
    ) -> tuple[list[Record], Tally]:
        tally = Tally()
        records: list[Record] = []
        source_id = source.id.encode()
        for raw in events:
            problem: str | None = None
            if isinstance(raw, dict):
                if forced_type is not None:
                    raw["type"] = forced_type
                # The write key is a credential, not event data: it never reaches Kafka.
                raw.pop("writeKey", None)
                normalize(raw, info)
                problem = invalid_event_problem(raw)
                event_type = raw.get("type")
                type_label = event_type if event_type in EVENT_TYPES else UNKNOWN_TYPE
            else:
                problem = f"event must be a JSON object, not {type(raw).__name__}"
                type_label = UNKNOWN_TYPE
            value = orjson.dumps(raw)
            tally.received[type_label] += 1
            if problem is None and len(value) > self.max_event_bytes:
                problem = f"event is {len(value)} bytes; the limit is {self.max_event_bytes} bytes"
            key = event_key(raw)
            if problem is None:
                headers = headers_for(raw, source_id, b"", b"", 0)
                records.append(Record(self.events_topic, key, value, headers))
                tally.forwarded[type_label] += 1
                continue
            reason = QuarantineReason.INVALID_EVENT
            violation = {"type": "Invalid-Event", "message": problem}
            records.append(
                Record(
                    self.quarantine_topic,
                    key,
                    quarantine_value(
                        reason=reason,
                        source_id=source.id,
                        plan_id=None,
                        plan_version=None,
                        violations=[violation],
                        received_at=info.received_at_text,
                        event=raw,
                        event_bytes=len(value),
                    ),
                    headers_for(raw, source_id, b"", b"", 1),
                )
            )
            tally.quarantined[type_label, reason.value] += 1
        return records, tally


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
