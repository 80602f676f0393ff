"""The one outcome vocabulary shared by responses, metrics, logs and quarantine records.

Every event that reaches the gateway in a well-formed request ends with exactly one outcome:
``forwarded`` (events topic) or ``quarantined`` (quarantine topic) with one reason.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    FORWARDED = "forwarded"
    QUARANTINED = "quarantined"


class QuarantineReason(StrEnum):
    UNPLANNED_EVENT = "unplanned-event"
    UNPLANNED_PROPERTIES = "unplanned-properties"
    VIOLATION = "violation"
    INVALID_EVENT = "invalid-event"


# Event types the ingest API accepts, in the Segment spec's order.
EVENT_TYPES: tuple[str, ...] = ("track", "identify", "page", "screen", "group", "alias")
