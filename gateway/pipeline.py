"""One request's events → Kafka records, each event with exactly one outcome.

    parsed events ─▶ normalize ─▶ size ─▶ check (invalid-event?) ─▶ enforce (plan) ─▶ records
                                    │             │                          │
                                    └─────────────┴─── quarantine ◀──────────┘ (drop decisions)

The HTTP layer hands in the already-parsed events of one request; this module decides each
event's outcome and builds its record. It never awaits: all of it is CPU work, done in one go.

Each event is written to JSON once, right after normalization: that gives its size, checked
before any other work on it (an event over ``ingest.max_event_bytes`` is neither merged with
the batch envelope, nor validated, nor kept whole: its quarantine record holds a stub), and it
is the record's value. The stamps enforcement adds to a forwarded event's ``context`` are
spliced into that JSON instead of writing the event a second time.

The work is done in three passes over the request's events — write, judge, build records —
rather than event by event: each pass keeps its code and data in the CPU's caches. A request's
records are bounded (``OUTPUT_FACTOR`` x ``ingest.max_request_bytes``): the first pass applies
the bound to the events as written, which is what a batch context merged into every item
inflates; the last applies it again to the records as built, which stamps and violations make
larger. An event only the last pass turns away was judged in vain (its violations count
against the request's ``ingest.max_request_violations``), which takes a request whose records
come within a few violations' size of that bound.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.config import IngestSettings, KafkaSettings
from gateway.enforce.enforcer import (
    Decision,
    Enforcement,
    Enforcer,
    Judgement,
    ViolationBudget,
)
from gateway.enforce.violations import invalid_event_violation
from gateway.ingest.normalize import RequestInfo, SharedParts, merge_shared, normalize_fields
from gateway.outcomes import EVENT_TYPES, Outcome, QuarantineReason
from gateway.plans.snapshot import Snapshot, Source
from gateway.publish.producer import RECORD_MARGIN_BYTES, Record, max_record_bytes
from gateway.publish.records import (
    QuarantineRecords,
    bounded_violations,
    event_key,
    event_name,
    headers_for,
    request_headers,
    stub,
)
from gateway.publish.violations import violation_records

UNKNOWN_TYPE = "unknown"
# A request's records may weigh this many times the largest request: room for a batch-level
# context merged into its events, not for a 30 KB one merged into 2,500 (75 MB).
OUTPUT_FACTOR = 8
TOO_DEEP = "event is nested too deeply to be written (more than 254 levels)"


@dataclass(slots=True)
class Tally:
    """Per-request outcome counts, added to the metrics once per request, not per event."""

    received: Counter[str] = field(default_factory=Counter)
    forwarded: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (tracking plan id, event label, rule version, violation type) -> count
    violations: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    # (tracking plan id, event label, "true" when it had no violation) -> events checked
    checked: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # Against the source's shadow plan: (plan id, event label, violation type) -> count, and
    # (plan id, event label, what enforcing it would do) -> events.
    shadow_violations: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    shadow_outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    validation_s: float = 0.0


# What _prepare made of an event: (why it is unusable, its JSON, its size); see there.
Prepared = tuple[str | None, bytes | None, int | None]
# How an event was judged: the decision, and whether it had a context before stamping.
Judged = tuple[Decision, bool]


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
        self.max_request_violations = ingest.max_request_violations
        self.max_output_bytes = OUTPUT_FACTOR * ingest.max_request_bytes
        # A value above this would make the producer (max_request_size) refuse the record; the
        # key and headers are bounded, so they fit in the margin.
        self.max_value_bytes = max_record_bytes(kafka) - RECORD_MARGIN_BYTES
        self.events_topic = kafka.events_topic
        self.quarantine_topic = kafka.quarantine_topic
        self.violations_topic = kafka.violations_topic
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
        """Decide every event's outcome and build its record; fills ``results`` if given.

        In three passes over the request's events, each doing one kind of work (the code and
        data of each stay in the CPU's caches: about a sixth faster than event by event):
        writing them (:meth:`_prepare_all`), judging them (:meth:`_judge_all`), building the
        records (:meth:`_build`).
        """
        tally = Tally()
        enforcement = self.enforcer.for_source(source, snapshot)
        # Only events of a source with a plan are stamped; their context is put last.
        prepared = self._prepare_all(events, info, forced_type, stamping=enforcement is not None)
        judged = self._judge_all(events, prepared, source, snapshot, enforcement, tally)
        records = self._build(events, prepared, judged, source, enforcement, info, tally, results)
        return records, tally

    def _prepare_all(
        self, events: list[Any], info: RequestInfo, forced_type: str | None, stamping: bool
    ) -> list[Prepared]:
        """Every event normalized and written (:meth:`_prepare`): the request's output is
        bounded as it goes, by the events' own sizes (the records' are known only once they are
        built: :meth:`_build` applies the bound again on them)."""
        shared: SharedParts | None = None
        shared_problem: str | None = None
        if info.context is not None or info.integrations is not None:
            try:
                shared = SharedParts(info)
            except orjson.JSONEncodeError:
                shared_problem = TOO_DEEP
        prepared: list[Prepared] = []
        written = 0
        for raw in events:
            room = self.max_output_bytes - written
            problem, value, size = self._prepare(raw, info, forced_type, shared, stamping, room)
            if shared_problem is not None:
                problem, value = shared_problem, None
            elif value is not None:
                written += len(value)
            prepared.append((problem, value, size))
        return prepared

    def _judge_all(
        self,
        events: list[Any],
        prepared: list[Prepared],
        source: Source,
        snapshot: Snapshot,
        enforcement: Enforcement | None,
        tally: Tally,
    ) -> list[Judged | None]:
        """Each usable event enforced (None: not judged), its shadow plan's judgement counted
        first (enforcing changes the event)."""
        judged: list[Judged | None] = [None] * len(events)
        if enforcement is None:
            return judged
        shadow = self.enforcer.shadow_for(source, snapshot)
        budget = ViolationBudget(self.max_request_violations)
        shadow_budget = ViolationBudget(self.max_request_violations)  # a request's, as above
        started = time.perf_counter()
        for i, (raw, (problem, _, _)) in enumerate(zip(events, prepared, strict=True)):
            if problem is None:
                if shadow is not None:
                    _shadow_tally(tally, shadow.plan.id, shadow.judge(raw, shadow_budget))
                had_context = "context" in raw
                judged[i] = (enforcement.enforce(raw, budget), had_context)
        tally.validation_s = time.perf_counter() - started
        return judged

    def _build(
        self,
        events: list[Any],
        prepared: list[Prepared],
        judged: list[Judged | None],
        source: Source,
        enforcement: Enforcement | None,
        info: RequestInfo,
        tally: Tally,
        results: list[EventResult] | None,
    ) -> list[Record]:
        """Each event's record (and its violation records), the outcomes counted."""
        records: list[Record] = []
        output_bytes = 0  # of the records built so far
        unjudged = request_headers(source.id, None, None)
        judged_headers = unjudged
        enforced_version = None
        if enforcement is not None:
            enforced_version = enforcement.plan.version
            judged_headers = request_headers(source.id, enforcement.plan.id, enforced_version)
        quarantine = QuarantineRecords(source.id, info.received_at_text)
        # The last stamps written, and their JSON: events without violations share one object.
        last_stamps: dict[str, Any] | None = None
        last_written = b""
        for raw, (problem, value, event_bytes), verdict in zip(
            events, prepared, judged, strict=True
        ):
            if (
                value is not None
                and event_bytes is not None
                and event_bytes > self.max_output_bytes - output_bytes
            ):
                # The bound on the records themselves: _prepare_all could only foresee it.
                problem, value, verdict = self._amplified(), None, None
            type_label = raw.get("type") if isinstance(raw, dict) else None
            if type_label not in EVENT_TYPES:
                type_label = UNKNOWN_TYPE
            tally.received[type_label] += 1
            decision: Decision | None = None
            if verdict is not None:
                decision, had_context = verdict
                stamps = decision.appended
                if decision.reason is None:
                    if stamps is not None and stamps is not last_stamps:
                        last_stamps, last_written = stamps, orjson.dumps(stamps)
                    value = _with_stamps(raw, value, stamps, last_written, had_context)
            if problem is None and value is not None and len(value) > self.max_value_bytes:
                problem, value = self._too_large(value), None
            violations: list[dict[str, Any]] = []
            reason: QuarantineReason | None = None
            if decision is not None:
                violations = decision.violations
                reason = decision.reason
                valid = "false" if violations else "true"
                tally.checked[decision.plan.id, decision.event_label, valid] += 1
                for v in violations:
                    tally.violations[
                        decision.plan.id, decision.event_label, decision.rule_version, v["type"]
                    ] += 1
            if problem is not None:
                reason = QuarantineReason.INVALID_EVENT
                violations = [invalid_event_violation(problem)]
            key = event_key(raw)
            shared_headers = unjudged if decision is None else judged_headers
            if decision is not None and decision.plan.version != enforced_version:
                # Pinned to a past version of the plan (RudderTyper): the version that judged.
                shared_headers = request_headers(source.id, decision.plan.id, decision.plan.version)
            headers = headers_for(raw, shared_headers, len(violations))
            if reason is None:
                assert value is not None  # a forwarded event is always written
                records.append(Record(self.events_topic, key, value, headers))
                output_bytes += len(value)
                tally.forwarded[type_label] += 1
            else:
                quarantined = quarantine.value(
                    reason,
                    decision.plan.id if decision else None,
                    decision.plan.version if decision else None,
                    violations,
                    stub(raw, event_bytes) if value is None else value,
                )
                if len(quarantined) > self.max_value_bytes:
                    # Only where ingest.max_event_bytes is set close to Kafka's record limit.
                    reason = QuarantineReason.INVALID_EVENT
                    violations = [invalid_event_violation(self._too_large(quarantined))]
                    quarantined = quarantine.value(
                        reason, None, None, violations, stub(raw, event_bytes)
                    )
                records.append(Record(self.quarantine_topic, key, quarantined, headers))
                output_bytes += len(quarantined)
                tally.quarantined[type_label, reason] += 1  # a StrEnum: its value
            if self.violations_topic and decision is not None and problem is None:
                output_bytes += self._stream(records, raw, source.id, decision, output_bytes)
            if results is not None:
                results.append(_result(raw, reason, bounded_violations(violations)))
        return records

    def _stream(
        self,
        records: list[Record],
        event: dict[str, Any],
        source_id: str,
        decision: Decision,
        output_bytes: int,
    ) -> int:
        """Add the event's violation records (kafka.violations_topic); their size. None are
        added (0) when they would take the request's records over their bound: the event's own
        record is what counts."""
        if not decision.violations:
            return 0
        streamed = violation_records(
            self.violations_topic,
            event,
            source_id,
            (decision.plan.id, decision.plan.version),
            (decision.event_label, decision.rule_version),
            decision.violations,
            decision.reason,
        )
        size = sum(len(r.value) for r in streamed)
        if output_bytes + size > self.max_output_bytes:
            return 0
        records.extend(streamed)
        return size

    def _amplified(self) -> str:
        return (
            f"the request's records would exceed {self.max_output_bytes} bytes "
            f"({OUTPUT_FACTOR} x ingest.max_request_bytes) once the batch's context and "
            "integrations are merged into each event; send them with fewer events"
        )

    def _too_large(self, value: bytes) -> str:
        return (
            f"the event's record would be {len(value)} bytes; Kafka's record limit "
            f"(kafka.max_batch_bytes, at least 1 MiB) leaves {self.max_value_bytes} for it"
        )

    def _prepare(
        self,
        raw: Any,
        info: RequestInfo,
        forced_type: str | None,
        shared: SharedParts | None,
        stamping: bool,
        room: int,
    ) -> tuple[str | None, bytes | None, int | None]:
        """Normalize an event in place and write it: (why it is unusable, JSON, size).

        The size, with the envelope's context and integrations merged in, is known before
        anything else looks at the event. No JSON (None) means the event cannot be stored
        whole: too large (its size is given) or too deep to write (no size either).
        """
        if isinstance(raw, dict):
            if forced_type is not None:
                raw["type"] = forced_type
            # The write key is a credential, not event data: it never reaches Kafka.
            raw.pop("writeKey", None)
            normalize_fields(raw, info)
            if stamping and shared is None and "context" in raw:
                # Context last: stamps then extend the event's JSON at its very end.
                raw["context"] = raw.pop("context")
        try:
            value = orjson.dumps(raw)
            size = len(value)
            if shared is not None and isinstance(raw, dict):
                size += shared.added_bytes(raw)
        except orjson.JSONEncodeError:
            return TOO_DEEP, None, None
        if size > self.max_event_bytes:
            return f"event is {size} bytes; the limit is {self.max_event_bytes} bytes", None, size
        if size > room:
            # Each event is within its limit, but a batch context merged into thousands of
            # them would make records far beyond what the request brought (amplification).
            return self._amplified(), None, size
        if not isinstance(raw, dict):
            return f"event must be a JSON object, not {type(raw).__name__}", value, size
        if shared is not None:
            # Within the limit once merged, so the merge (a copy of every envelope key) and a
            # second write cost no more than the event is allowed to be.
            merge_shared(raw, info)
            if stamping and "context" in raw:
                raw["context"] = raw.pop("context")
            try:
                value = orjson.dumps(raw)
            except orjson.JSONEncodeError:
                # The envelope's context is one level deeper once merged into the event.
                return TOO_DEEP, None, None
        return invalid_event_problem(raw), value, size


def _shadow_tally(tally: Tally, plan_id: str, judgement: Judgement) -> None:
    label = judgement.event_label
    tally.shadow_outcomes[plan_id, label, judgement.would] += 1
    for v in judgement.violations:
        tally.shadow_violations[plan_id, label, v["type"]] += 1


def _with_stamps(
    event: dict[str, Any],
    value: bytes | None,
    stamps: dict[str, Any] | None,
    written: bytes,
    had_context: bool,
) -> bytes:
    """The forwarded event's JSON: ``value`` (written before enforcement) plus the stamps.

    When stamping only appended ``stamps`` (whose JSON is ``written``) to ``context`` and
    ``context`` is the event's last key, the JSON is extended at its end by splicing — byte for
    byte what ``orjson.dumps(event)`` would give; otherwise the event is written again.
    """
    if value is None or stamps is None or next(reversed(event)) != "context":
        return orjson.dumps(event)
    # Small pieces are joined first: each concatenation copies the whole event once.
    if not had_context:
        return value[:-1] + (b',"context":' + written + b"}")  # a new last key
    if len(event["context"]) > len(stamps):
        return value[:-2] + (b"," + written[1:] + b"}")  # after the context's entries
    return value[:-2] + (written[1:] + b"}")  # the context was empty


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
    if value.__class__ is str:  # the common case first
        return not value
    return value is None or isinstance(value, dict | list | bool)
