"""Request validation rules of the Data Catalog API (names, event types, paging, ordering)."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from aiohttp import web

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
PropertyType = Literal["string", "integer", "number", "object", "array", "boolean", "null"]
PROPERTY_TYPES: tuple[str, ...] = get_args(PropertyType)


def ecma_pattern(pattern: str) -> str:
    """A Python pattern as ECMA-262, the regex dialect of JSON Schema (no ``\\Z``)."""
    return pattern.removesuffix(r"\Z") + "$" if pattern.endswith(r"\Z") else pattern


PAGE_SIZE = 50
MAX_PAGES = 50
ORDER_FIELDS = {"name": "name", "createdAt": "created_at", "updatedAt": "updated_at"}


def entity_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not ENTITY_NAME.match(value):
        raise BadRequest(
            f"{what} name must be 3 to 65 characters, start with a letter and contain only "
            "letters, numbers, underscores, commas, spaces, dashes and dots"
        )
    return value


def event_name(value: Any, event_type: str) -> str:
    """Track events have names; other event types must use the empty name."""
    if event_type != "track":
        if value not in ("", None):
            raise BadRequest(f"the name of a {event_type} event must be an empty string")
        return ""
    return entity_name(value, "event")


def event_type(value: Any, default: str | None = "track") -> str:
    if value is None and default is not None:
        return default
    if value not in PLANNED_EVENT_TYPES:
        raise BadRequest(f"eventType must be one of {', '.join(PLANNED_EVENT_TYPES)}")
    return str(value)


def identity_section(value: Any, event_type: str) -> str:
    if value is None or value == "":
        return "traits" if event_type in ("identify", "group") else "properties"
    if value not in IDENTITY_SECTIONS:
        raise BadRequest(f"identitySection must be one of {', '.join(IDENTITY_SECTIONS)}")
    return str(value)


def optional_text(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{what} must be a string")
    return value


def optional_id(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} must be a valid, non-empty string")
    return value


# Query numbers are ASCII digits only, and short: str.isdigit() also accepts "²", which int()
# then refuses, as it refuses numbers of more than 4,300 digits (both were a 500).
QUERY_NUMBER = re.compile(r"[0-9]{1,9}\Z")


def positive_query_number(request: web.Request, name: str, default: str | None) -> int | None:
    """``?name=N`` as a positive integer (``default`` when absent); 400 for anything else."""
    raw = request.query.get(name, default)
    if raw is None:
        return None
    if not QUERY_NUMBER.match(raw) or int(raw) < 1:
        raise BadRequest(f"{name} must be a positive integer")
    return int(raw)


def page_of(request: web.Request) -> int:
    page = positive_query_number(request, "page", "1")
    assert page is not None
    if page > MAX_PAGES:
        raise BadRequest(f"page must be at most {MAX_PAGES}")
    return page


def version_of(request: web.Request) -> int | None:
    return positive_query_number(request, "version", None)


def page_document(items: list[Any], total: int, page: int) -> dict[str, Any]:
    return {"data": items, "total": total, "currentPage": page, "pageSize": PAGE_SIZE}


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


def prop_config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("propConfig must be an object of JSON Schema keywords")
    return value


def property_name(value: Any) -> str:
    if not isinstance(value, str) or not PROPERTY_NAME.match(value) or len(value) > 200:
        raise BadRequest(
            "property name must start with a letter and contain only letters, numbers, "
            "underscores and spaces"
        )
    return value
