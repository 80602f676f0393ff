"""One quarantine record judged again: does its event pass now, and if so, its events record.

The quarantined event is the event as received and normalized (DESIGN: quarantine record
layout), so it is not normalized again: it keeps its ``messageId``, ``receivedAt`` and
timestamps. A declared fix (JSON Patch) is applied first; the event then goes through the same
checks and enforcement as at ingest, against the replay's snapshot. A passing event is
published to the events topic exactly as the gateway would have forwarded it, plus
``context.replayedFrom`` (where it was quarantined) and a ``replayed`` header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonpatch
import orjson
from jsonpointer import JsonPointerException

from gateway.config import IngestSettings
from gateway.enforce.enforcer import Enforcer, ViolationBudget
from gateway.pipeline import invalid_event_problem
from gateway.plans.snapshot import Snapshot, Source
from gateway.publish.producer import Record
from gateway.publish.records import event_key, event_name, headers_for, request_headers

REPLAYED_HEADER = ("replayed", b"true")
MAX_WHY_CHARS = 300


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record was quarantined."""

    topic: str
    partition: int
    offset: int

    def text(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class Filters:
    source_id: str | None = None
    reason: str | None = None
    event: str | None = None  # a track event's name, or another event's type


@dataclass(slots=True)
class Verdict:
    selected: bool  # the record is a quarantine record the filters let through
    source_id: str = ""
    message_id: str = ""
    origin: str = ""  # topic/partition/offset of the quarantine record
    record: Record | None = None  # the events-topic record: the event passes now
    why: str = ""  # why it still fails


class Judge:
    def __init__(
        self,
        snapshot: Snapshot,
        filters: Filters,
        fixes: Mapping[str, jsonpatch.JsonPatch],
        ingest: IngestSettings,
        events_topic: str,
    ) -> None:
        self.snapshot = snapshot
        self.sources = {s.id: s for s in snapshot.sources}
        self.filters = filters
        self.fixes = fixes
        self.max_event_bytes = ingest.max_event_bytes
        self.max_violations = ingest.max_request_violations
        self.events_topic = events_topic
        self.enforcer = Enforcer()

    def judge_all(self, records: Sequence[Any]) -> list[Verdict]:
        """Verdicts of Kafka records (with ``topic``, ``partition``, ``offset``, ``value``),
        collecting at most as many violations as one request may (the rest only fail)."""
        budget = ViolationBudget(
            self.max_violations,
            scope="this replay step's events",
            advice="it still fails; its quarantine record lists them",
        )
        return [
            self.judge(r.value, Origin(r.topic, r.partition, r.offset), budget) for r in records
        ]

    def judge(self, value: bytes | None, origin: Origin, budget: ViolationBudget) -> Verdict:
        try:
            quarantined = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return Verdict(selected=False)
        event = quarantined.get("event") if isinstance(quarantined, dict) else None
        source_id = quarantined.get("sourceId") if isinstance(quarantined, dict) else None
        if not isinstance(event, dict) or not isinstance(source_id, str):
            return Verdict(selected=False)  # not a quarantine record of this gateway
        name = event_name(event) if event.get("type") == "track" else str(event.get("type"))
        f = self.filters
        if (
            (f.source_id is not None and source_id != f.source_id)
            or (f.reason is not None and quarantined.get("reason") != f.reason)
            or (f.event is not None and name != f.event)
        ):
            return Verdict(selected=False)
        message_id = event.get("messageId")
        verdict = Verdict(
            True, source_id, message_id if isinstance(message_id, str) else "", origin.text()
        )
        verdict.why = self._why_not(event, name, source_id, origin, verdict, budget)
        return verdict

    def _why_not(
        self,
        event: dict[str, Any],
        name: str,
        source_id: str,
        origin: Origin,
        verdict: Verdict,
        budget: ViolationBudget,
    ) -> str:
        """Why the event still fails ("" when it passes: ``verdict.record`` is set)."""
        if event.get("_truncated") is True:
            return "only a stub of the event was kept (it was too large or too deeply nested)"
        event, note = self._fixed(event, name)
        why = self._check(event, source_id, origin, verdict, budget)
        return _cut(why + note) if why else ""

    def _fixed(self, event: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
        """The event with its fix applied, or as it is when the fix does not apply to it (all
        of a fix's operations apply, or none: RFC 6902); and a note saying which."""
        fix = self.fixes.get(name)
        if fix is None:
            return event, ""
        try:
            fixed = fix.apply(event)
        except (jsonpatch.JsonPatchException, JsonPointerException) as exc:
            return event, f" (the fix for {name!r} did not apply: {exc})"
        if not isinstance(fixed, dict):
            return event, f" (the fix for {name!r} did not apply: it leaves no object)"
        return fixed, ""

    def _check(
        self,
        event: dict[str, Any],
        source_id: str,
        origin: Origin,
        verdict: Verdict,
        budget: ViolationBudget,
    ) -> str:
        """Why the (fixed) event fails now, or "" and ``verdict.record`` set."""
        if not verdict.message_id or not isinstance(event.get("messageId"), str):
            return "the event has no messageId, so it cannot be replayed only once"
        if event["messageId"] != verdict.message_id:
            return "a fix may not change the messageId"
        source: Source | None = self.sources.get(source_id)
        if source is None:
            return f"source {source_id} is no longer in the catalog"
        if not source.enabled:
            return f"source {source_id} is disabled"
        problem = invalid_event_problem(event)
        if problem is not None:
            return problem
        try:
            size = len(orjson.dumps(event))
        except orjson.JSONEncodeError:
            return "the event is nested too deeply to be written"
        if size > self.max_event_bytes:
            return f"the event is {size} bytes; the limit is {self.max_event_bytes} bytes"
        enforcement = self.enforcer.for_source(source, self.snapshot)
        plan_id = plan_version = None
        violations = 0
        if enforcement is not None:
            decision = enforcement.enforce(event, budget)
            if decision.reason is not None:
                first = decision.violations[0] if decision.violations else {}
                more = len(decision.violations) - 1
                text = (
                    f"{decision.reason.value}: {first.get('type', '')} {first.get('message', '')}"
                )
                if first.get("property"):
                    text += f" ({first['property']})"
                return text + (f" and {more} more" if more > 0 else "")
            plan_id, plan_version = enforcement.plan.id, enforcement.plan.version
            violations = len(decision.violations)
        context = event.get("context")
        if not isinstance(context, dict):
            context = event["context"] = {}
        context["replayedFrom"] = {
            "topic": origin.topic,
            "partition": origin.partition,
            "offset": origin.offset,
        }
        headers = headers_for(event, request_headers(source_id, plan_id, plan_version), violations)
        headers.append(REPLAYED_HEADER)
        verdict.record = Record(self.events_topic, event_key(event), orjson.dumps(event), headers)
        return ""


def _cut(text: str) -> str:
    return text if len(text) <= MAX_WHY_CHARS else text[:MAX_WHY_CHARS] + "…"
