"""The violation stream (``kafka.violations_topic``): one "Violation Generated" record per
violation of an event, beside the event's own record.

Each names the source, the plan and its version, the event (its type, its name, the metrics
label), the rule version checked, the violation (type, message, property, instance and schema
paths), the offending value (its JSON, cut to ``MAX_VALUE_CHARS``), the event's ``messageId``
and ``receivedAt``, and what happened to the event (``outcome``, ``reason``). At most
``MAX_PER_EVENT`` per event (``violationsTotal`` says how many it had); the key is the source
id, so one source's violations keep their order.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.enforce.violations import MISSING, node_at, pointer_tokens
from gateway.outcomes import QuarantineReason
from gateway.publish.producer import Record
from gateway.publish.records import MAX_TEXT_CHARS, cut_text, event_name

VIOLATION_GENERATED = "Violation Generated"
MAX_PER_EVENT = 20
MAX_VALUE_CHARS = 256


def violation_records(
    topic: str,
    event: dict[str, Any],
    source_id: str,
    plan: tuple[str, int],
    labels: tuple[str, str],
    violations: list[dict[str, Any]],
    reason: QuarantineReason | None,
) -> list[Record]:
    """``plan``: (id, version); ``labels``: (metrics event label, rule version)."""
    plan_id, plan_version = plan
    label, rule_version = labels
    shared = {
        "type": VIOLATION_GENERATED,
        "sourceId": source_id,
        "trackingPlanId": plan_id,
        "trackingPlanVersion": plan_version,
        "eventType": _text(event.get("type")),
        "eventName": cut_text(event_name(event)),
        "event": label,
        "ruleVersion": rule_version,
        "messageId": _text(event.get("messageId")),
        "receivedAt": _text(event.get("receivedAt")),
        "outcome": "forwarded" if reason is None else "quarantined",
        "reason": reason.value if reason is not None else None,
        "violationsTotal": len(violations),
    }
    headers = [
        ("source-id", source_id.encode()),
        ("tracking-plan-id", plan_id.encode()),
        ("event", label.encode()[:MAX_TEXT_CHARS]),
    ]
    key = source_id.encode()
    records = []
    for violation in violations[:MAX_PER_EVENT]:
        meta = violation.get("meta") if isinstance(violation.get("meta"), dict) else {}
        path = meta.get("instancePath") if isinstance(meta, dict) else None
        value = {
            **shared,
            "violationType": violation.get("type", ""),
            "message": cut_text(str(violation.get("message", ""))),
            "property": cut_text(str(violation.get("property", ""))),
            "instancePath": cut_text(path) if isinstance(path, str) else None,
            "schemaPath": _text(meta.get("schemaPath")) if isinstance(meta, dict) else None,
            "value": _offending(event, path) if isinstance(path, str) else None,
        }
        records.append(
            Record(
                topic,
                key,
                orjson.dumps(value),
                [*headers, ("violation-type", value["violationType"].encode())],
            )
        )
    return records


def _text(value: Any) -> str | None:
    return cut_text(value) if isinstance(value, str) else None


def _offending(event: dict[str, Any], pointer: str) -> str | None:
    """The JSON of the value at ``pointer`` (RFC 6901) in the event, cut; None if absent."""
    found = node_at(event, pointer_tokens(pointer))
    if found is MISSING:
        return None
    try:
        text = orjson.dumps(found).decode()
    except orjson.JSONEncodeError:
        return None
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"
