"""Kafka record layout: one message per event, keyed for per-user ordering.

- events topic: value = the normalized event (with any context stamps);
- quarantine topic: value = ``{"reason", "sourceId", "trackingPlanId", "trackingPlanVersion",
  "violations", "violationsTotal", "receivedAt", "event"}``;
- both: key = ``userId``, else ``anonymousId``; headers ``source-id, event-type, event-name,
  message-id, tracking-plan-id, tracking-plan-version, violations`` (a count; empty strings
  where a header does not apply, so consumers always find the same set).

Every record is bounded whatever the client sent, so that no input can make Kafka refuse a
request or turn a small request into a flood of output:

- a key longer than ``MAX_KEY_BYTES`` is replaced by ``sha256:<hex digest>`` of it (the same
  user still lands in the same partition; the full id stays in the value);
- header values are cut to ``MAX_HEADER_BYTES`` (on a UTF-8 character boundary);
- violations are listed up to ``MAX_VIOLATIONS`` per event, their texts cut to
  ``MAX_TEXT_CHARS``; the full count travels beside the list;
- an event too large (``ingest.max_event_bytes``) or too deeply nested to store is quarantined
  as a *stub*: its identifying fields, each cut to ``MAX_TEXT_CHARS``, and its size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.outcomes import EVENT_TYPES, QuarantineReason

MAX_KEY_BYTES = 256
MAX_HEADER_BYTES = 256
MAX_VIOLATIONS = 100
MAX_TEXT_CHARS = 256
TRUNCATED_MARK = "…"
STUB_FIELDS = ("type", "event", "name", "messageId", "userId", "anonymousId", "receivedAt")


def cut_text(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + TRUNCATED_MARK


def event_in(value: bytes, quarantined: bool) -> Any:
    """The event a record's value holds (a quarantine record's under ``event``); None if the
    value cannot be read."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if quarantined:
        return doc.get("event") if isinstance(doc, dict) else None
    return doc


def stub(event: Any, event_bytes: int | None) -> dict[str, Any]:
    """What is kept of an event too large or too deep to store: its identifying fields."""
    kept: dict[str, Any] = {}
    if isinstance(event, dict):
        for k in STUB_FIELDS:
            value = event.get(k)
            if isinstance(value, str):
                kept[k] = cut_text(value)
            elif isinstance(value, int | float | bool):
                kept[k] = value
    kept["_truncated"] = True
    if event_bytes is not None:
        kept["_originalBytes"] = event_bytes
    return kept


def _bounded_violation(violation: dict[str, Any]) -> dict[str, Any]:
    """A copy of the violation with its texts (and those of its ``meta``) cut to
    MAX_TEXT_CHARS."""
    bounded: dict[str, Any] = {}
    for k, value in violation.items():
        if isinstance(value, str):
            bounded[k] = cut_text(value)
        elif isinstance(value, dict):
            bounded[k] = {
                mk: cut_text(mv) if isinstance(mv, str) else mv for mk, mv in value.items()
            }
        else:
            bounded[k] = value
    return bounded


def _has_long_text(violation: dict[str, Any]) -> bool:
    for value in violation.values():
        if isinstance(value, str):
            if len(value) > MAX_TEXT_CHARS:
                return True
        elif isinstance(value, dict):
            for meta_value in value.values():
                if isinstance(meta_value, str) and len(meta_value) > MAX_TEXT_CHARS:
                    return True
    return False


def _bounded(violation: dict[str, Any]) -> dict[str, Any]:
    """The violation, or (rarely) a copy with its texts cut."""
    return _bounded_violation(violation) if _has_long_text(violation) else violation


def bounded_violations(violations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first MAX_VIOLATIONS violations, their texts cut; the caller records the total."""
    return [_bounded(violation) for violation in violations[:MAX_VIOLATIONS]]


def _violations_json(violations: Sequence[dict[str, Any]]) -> bytes:
    """``orjson.dumps(bounded_violations(violations))``, each violation written once: no text
    of a violation is longer than its JSON, so only one whose JSON is longer needs its texts
    checked."""
    parts = []
    for violation in violations[:MAX_VIOLATIONS]:
        written = orjson.dumps(violation)
        if len(written) > MAX_TEXT_CHARS and (bounded := _bounded(violation)) is not violation:
            written = orjson.dumps(bounded)
        parts.append(written)
    return b"[" + b",".join(parts) + b"]"


def bounded_texts(texts: Sequence[str]) -> list[str]:
    """The first MAX_VIOLATIONS texts (e.g. omitted property paths), each cut."""
    return [cut_text(t) for t in texts[:MAX_VIOLATIONS]]


def event_key(event: Any) -> bytes | None:
    if not isinstance(event, dict):
        return None
    for field in ("userId", "anonymousId"):
        value = event.get(field)
        if value is not None and value != "" and not isinstance(value, dict | list):
            key = (value if isinstance(value, str) else orjson.dumps(value).decode()).encode()
            if len(key) > MAX_KEY_BYTES:
                return b"sha256:" + hashlib.sha256(key).hexdigest().encode()
            return key
    return None


def event_name(event: dict[str, Any]) -> str:
    name = event.get("event") if event.get("type") == "track" else event.get("name")
    return name if isinstance(name, str) else ""


def _cut_header(encoded: bytes) -> bytes:
    # errors="ignore" drops a character cut in half, so the value stays valid UTF-8.
    return encoded[:MAX_HEADER_BYTES].decode(errors="ignore").encode()


Header = tuple[str, bytes]
_EVENT_TYPE_HEADERS = {t: ("event-type", t.encode()) for t in EVENT_TYPES}
_COUNT_HEADERS = tuple(("violations", str(n).encode()) for n in range(MAX_VIOLATIONS + 1))


def request_headers(
    source_id: str, plan_id: str | None, plan_version: int | None
) -> tuple[Header, Header, Header]:
    """The headers all records of a request share: its source and its plan (or none)."""
    return (
        ("source-id", source_id.encode()),
        ("tracking-plan-id", (plan_id or "").encode()),
        ("tracking-plan-version", b"" if plan_version is None else str(plan_version).encode()),
    )


def headers_for(event: Any, shared: tuple[Header, Header, Header], violations: int) -> list[Header]:
    """A record's headers, in a fixed order; ``shared`` comes from :func:`request_headers`."""
    type_header = ("event-type", b"")
    name = message_id = b""
    if isinstance(event, dict):
        # Inline rather than a helper per header: this runs for every event.
        value = event.get("type")
        known = _EVENT_TYPE_HEADERS.get(value) if isinstance(value, str) else None
        if known is not None:
            type_header = known
        elif isinstance(value, str):
            type_header = ("event-type", _cut_header(value.encode()))
        value = event.get("event") if value == "track" else event.get("name")
        if isinstance(value, str):
            name = value.encode()
            if len(name) > MAX_HEADER_BYTES:
                name = _cut_header(name)
        value = event.get("messageId")
        if isinstance(value, str):
            message_id = value.encode()
            if len(message_id) > MAX_HEADER_BYTES:
                message_id = _cut_header(message_id)
    count = (
        _COUNT_HEADERS[violations]
        if violations <= MAX_VIOLATIONS
        else ("violations", str(violations).encode())
    )
    return [
        shared[0],
        type_header,
        ("event-name", name),
        ("message-id", message_id),
        shared[1],
        shared[2],
        count,
    ]


class QuarantineRecords:
    """Writes the quarantine records of one request (layout: see the module's docstring).

    The parts every record of the request shares (its source, time, and per reason and plan
    the record's head) are written once; each record adds its violations and its event's
    JSON, embedded as it is (not serialized again), so a record costs no second pass over the
    event and adds no nesting level to it.
    """

    __slots__ = ("_heads", "_source_id", "_tail")

    def __init__(self, source_id: str, received_at: str) -> None:
        self._source_id = source_id
        self._tail = b',"receivedAt":' + orjson.dumps(received_at) + b',"event":'
        self._heads: dict[tuple[QuarantineReason, str | None, int | None], bytes] = {}

    def value(
        self,
        reason: QuarantineReason,
        plan_id: str | None,
        plan_version: int | None,
        violations: Sequence[dict[str, Any]],
        event: bytes | dict[str, Any],
    ) -> bytes:
        """One record; ``event`` is the event's JSON as published, or a stub."""
        key = (reason, plan_id, plan_version)
        head = self._heads.get(key)
        if head is None:
            shared = {
                "reason": reason,  # a StrEnum: orjson writes its value
                "sourceId": self._source_id,
                "trackingPlanId": plan_id,
                "trackingPlanVersion": plan_version,
            }
            head = self._heads[key] = orjson.dumps(shared)[:-1] + b',"violations":'
        return b"".join(
            (
                head,
                _violations_json(violations),
                b',"violationsTotal":%d' % len(violations),
                self._tail,
                event if isinstance(event, bytes) else orjson.dumps(event),
                b"}",
            )
        )


def quarantine_value(
    *,
    reason: QuarantineReason,
    source_id: str,
    plan_id: str | None,
    plan_version: int | None,
    violations: Sequence[dict[str, Any]],
    received_at: str,
    event: bytes | dict[str, Any],
) -> bytes:
    """A single quarantine record (see :class:`QuarantineRecords`)."""
    records = QuarantineRecords(source_id, received_at)
    return records.value(reason, plan_id, plan_version, violations, event)
