"""Connection settings → what happens to an event with violations (README: Enforcement).

Effective settings = the connection config's ``global`` section shallow-merged with the event
type's section. Values may be strings or booleans, case-insensitive. A missing (or unrecognised)
setting never drops anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.enforce.violations import ADDITIONAL_PROPERTIES, UNPLANNED_EVENT, Violation
from gateway.outcomes import EVENT_TYPES, QuarantineReason


@dataclass(frozen=True, slots=True)
class Policy:
    allow_unplanned_events: bool = True
    unplanned_properties: str = "forward"  # forward | drop | omit
    any_other_violation: str = "forward"  # forward | drop
    propagate_validation_errors: bool = True
    # An event that names no version of its rule (context.protocols.event_version) is checked
    # against the oldest, or with defaultRuleVersion "latest", the latest.
    latest_rule_version: bool = False

    def drop_reason(self, violations: list[Violation]) -> QuarantineReason | None:
        """The reason to quarantine, or None to forward; several drop rules drop once, for
        the most specific reason (the record lists every violation anyway): an unplanned
        event, then unplanned properties, then any other violation."""
        found: QuarantineReason | None = None
        for v in violations:
            kind = v["type"]
            if kind == UNPLANNED_EVENT:
                if not self.allow_unplanned_events:
                    return QuarantineReason.UNPLANNED_EVENT
            elif kind == ADDITIONAL_PROPERTIES:
                if self.unplanned_properties == "drop":
                    found = QuarantineReason.UNPLANNED_PROPERTIES
            elif found is None and self.any_other_violation == "drop":
                found = QuarantineReason.VIOLATION
        return found


def policies_for(config: Mapping[str, Any]) -> dict[str, Policy]:
    """The effective policy of every event type under one connection config.

    Computed once per connection when a snapshot is parsed, so enforcing an event is a dict
    lookup rather than merging settings again for every event.
    """
    return {event_type: _policy(config, event_type) for event_type in EVENT_TYPES}


def _policy(config: Mapping[str, Any], event_type: str) -> Policy:
    merged: dict[str, Any] = {}
    for section in ("global", event_type):
        values = config.get(section)
        if isinstance(values, dict):
            merged.update(values)
    return Policy(
        allow_unplanned_events=_flag(merged.get("allowUnplannedEvents"), default=True),
        unplanned_properties=_choice(
            merged.get("unplannedProperties"), ("forward", "drop", "omit"), "forward"
        ),
        any_other_violation=_choice(
            merged.get("anyOtherViolation"), ("forward", "drop"), "forward"
        ),
        propagate_validation_errors=_flag(merged.get("propagateValidationErrors"), default=True),
        latest_rule_version=_choice(
            merged.get("defaultRuleVersion"), ("oldest", "latest"), "oldest"
        )
        == "latest",
    )


def _flag(value: Any, *, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return default


def _choice(value: Any, allowed: tuple[str, ...], default: str) -> str:
    if isinstance(value, str) and value.strip().lower() in allowed:
        return value.strip().lower()
    return default
