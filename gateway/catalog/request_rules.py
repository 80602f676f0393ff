"""Request validation rules of the Data Catalog API (names, event types, paging, ordering)."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from gateway.errors import BadRequest
from gateway.outcomes import EVENT_TYPES
from gateway.plans.snapshot import IDENTITY_SECTIONS

# Plans, events and categories: 3-65 characters, a letter first, then letters, digits and
# `_ , space - .`
ENTITY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_, .\-]{2,64}\Z")
# Properties: a letter first, then letters, digits, `_` and spaces.
PROPERTY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*\Z")
# The event types a plan has rules for: every type but alias, which carries no payload to check.
PlannedEventType = Literal["track", "identify", "page", "screen", "group"]
PLANNED_EVENT_TYPES: tuple[str, ...] = get_args(PlannedEventType)
if set(PLANNED_EVENT_TYPES) != set(EVENT_TYPES) - {"alias"}:
    raise RuntimeError("PlannedEventType must be gateway.outcomes.EVENT_TYPES without alias")
IdentitySection = Literal["properties", "traits", "context.traits"]
if get_args(IdentitySection) != IDENTITY_SECTIONS:
    raise RuntimeError("IdentitySection must be gateway.plans.snapshot.IDENTITY_SECTIONS")
PropertyType = Literal["string", "integer", "number", "object", "array", "boolean", "null"]
PROPERTY_TYPES: tuple[str, ...] = get_args(PropertyType)


def ecma_pattern(pattern: str) -> str:
    """A Python pattern as ECMA-262, the regex dialect of JSON Schema (no ``\\Z``)."""
    return pattern.removesuffix(r"\Z") + "$" if pattern.endswith(r"\Z") else pattern


PAGE_SIZE = 50
MAX_PAGES = 50
ORDER_FIELDS = {"name": "name", "createdAt": "created_at", "updatedAt": "updated_at"}


def event_name(value: Any, event_type: str) -> str:
    """Track events have names; other event types must use the empty name."""
    if event_type != "track":
        if value not in ("", None):
            raise BadRequest(f"the name of a {event_type} event must be an empty string")
        return ""
    if not isinstance(value, str) or not ENTITY_NAME.match(value):
        raise BadRequest(
            "event name must be 3 to 65 characters, start with a letter and contain only "
            "letters, numbers, underscores, commas, spaces, dashes and dots"
        )
    return value


CUSTOM_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z0-9_-]{1,64}\Z")


def is_custom_type(kind: Any) -> bool:
    return isinstance(kind, str) and kind not in PROPERTY_TYPES and kind != ""


def property_type(value: Any) -> str | list[str]:
    """A type, a list of types (multi-type), "" for any type, or a custom type's name
    (whose existence the caller checks)."""
    if value == "":
        return ""
    if isinstance(value, str) and (value in PROPERTY_TYPES or CUSTOM_TYPE_NAME.match(value)):
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(t, str) and t in PROPERTY_TYPES for t in value)
        and len(set(value)) == len(value)
    ):
        return value
    raise BadRequest(
        f"type must be one of {', '.join(PROPERTY_TYPES)}, a list of them, or a custom type name"
    )
