"""Kafka record layout (DESIGN §5): one message per event, keyed for per-user ordering.

- events topic: value = the normalized event (with any context stamps);
- quarantine topic: value = ``{"reason", "sourceId", "trackingPlanId", "trackingPlanVersion",
  "violations", "receivedAt", "event"}``;
- both: key = ``userId``, else ``anonymousId``; headers ``source-id, event-type, event-name,
  message-id, tracking-plan-id, tracking-plan-version, violations`` (a count; empty strings
  where a header does not apply, so consumers always find the same set).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gateway.outcomes import QuarantineReason

# A quarantined event larger than this is stored as a stub naming it, so that one oversized
# event can never exceed Kafka's message size and make its whole request fail forever.
MAX_QUARANTINED_EVENT_BYTES = 512 * 1024
STUB_FIELDS = ("type", "event", "name", "messageId", "userId", "anonymousId", "receivedAt")


def _stub(event: dict[str, Any], event_bytes: int | None) -> dict[str, Any]:
    """The identifying fields of an event too large (or too deep) to store whole."""
    stub: dict[str, Any] = {
        k: event[k] for k in STUB_FIELDS if isinstance(event.get(k), str | int | float | bool)
    }
    stub["_truncated"] = True
    if event_bytes is not None:
        stub["_originalBytes"] = event_bytes
    return stub


def event_key(event: Any) -> bytes | None:
    if not isinstance(event, dict):
        return None
    for field in ("userId", "anonymousId"):
        value = event.get(field)
        if value is not None and value != "" and not isinstance(value, dict | list):
            return (value if isinstance(value, str) else orjson.dumps(value).decode()).encode()
    return None


def event_name(event: dict[str, Any]) -> str:
    name = event.get("event") if event.get("type") == "track" else event.get("name")
    return name if isinstance(name, str) else ""


def headers_for(
    event: Any, source_id: bytes, plan_id: bytes, plan_version: bytes, violations: int
) -> list[tuple[str, bytes]]:
    is_obj = isinstance(event, dict)
    event_type = event.get("type") if is_obj else None
    message_id = event.get("messageId") if is_obj else None
    return [
        ("source-id", source_id),
        ("event-type", event_type.encode() if isinstance(event_type, str) else b""),
        ("event-name", event_name(event).encode() if is_obj else b""),
        ("message-id", message_id.encode() if isinstance(message_id, str) else b""),
        ("tracking-plan-id", plan_id),
        ("tracking-plan-version", plan_version),
        ("violations", str(violations).encode()),
    ]


def quarantine_value(
    *,
    reason: QuarantineReason,
    source_id: str,
    plan_id: str | None,
    plan_version: int | None,
    violations: Sequence[dict[str, Any]],
    received_at: str,
    event: Any,
    event_bytes: int | None,
) -> bytes:
    """The quarantine record; ``event_bytes`` None means the event could not be written."""
    if isinstance(event, dict) and (
        event_bytes is None or event_bytes > MAX_QUARANTINED_EVENT_BYTES
    ):
        event = _stub(event, event_bytes)
    return orjson.dumps(
        {
            "reason": reason.value,
            "sourceId": source_id,
            "trackingPlanId": plan_id,
            "trackingPlanVersion": plan_version,
            "violations": violations,
            "receivedAt": received_at,
            "event": event,
        }
    )
