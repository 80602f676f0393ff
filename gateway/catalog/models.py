"""The catalog's shared request and answer types (msgspec), declared once for the routes that
decode and answer with them and for ``/openapi.json``, which is generated from them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from gateway.catalog import request_rules as v
from gateway.catalog.declared import Audited

EntityName = Annotated[
    str,
    msgspec.Meta(
        pattern=v.ENTITY_NAME.pattern,
        description="3 to 65 characters: a letter, then letters, digits and `_ , - .` or spaces.",
    ),
]
PropertyName = Annotated[
    str,
    msgspec.Meta(
        pattern=v.PROPERTY_NAME.pattern,
        max_length=200,
        description="A letter, then letters, digits, `_` and spaces.",
    ),
]
EventType = v.PlannedEventType
IdentitySection = v.IdentitySection
# Optional in requests: "" or null means the event type's default section.
SectionChoice = Annotated[
    IdentitySection | Literal[""] | None,
    msgspec.Meta(description="Default: `traits` for identify and group, else `properties`."),
]
Id = Annotated[str, msgspec.Meta(min_length=1, pattern=r"\S")]
EventName = Annotated[
    str,
    msgspec.Meta(
        description="Track events are named (3 to 65 characters); every other type uses the "
        "empty name."
    ),
]
PropertyType = Annotated[
    str | list[str],
    msgspec.Meta(
        description='A type, several (a list), "" for any type, or a custom type\'s name.'
    ),
]
Keywords = Annotated[dict[str, Any], msgspec.Meta(description="Extra JSON Schema keywords.")]
RULES_TEXT = (
    "A JSON Schema (draft-07 by default; draft-04/06 by `$schema`) over the whole normalized "
    "message."
)
RuleSchema = Annotated[dict[str, Any], msgspec.Meta(description=RULES_TEXT)]
Rules = Annotated[dict[str, Any], msgspec.Meta(min_length=1, description=RULES_TEXT)]  # to write
Time = Annotated[str, msgspec.Meta(description="ISO 8601, UTC.")]


class Category(Audited, kw_only=True):
    id: str
    name: str
    description: str | None
    workspace_id: str
    created_at: Time
    updated_at: Time


class CatalogEvent(Audited, kw_only=True):
    id: str
    name: str
    description: str | None
    event_type: str
    category_id: str | None
    workspace_id: str
    created_at: Time
    updated_at: Time


def category_of(row: Any, workspace_id: str) -> Category:
    return Category(
        id=row.id,
        name=row.name,
        description=row.description,
        workspace_id=workspace_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def event_of(row: Any, workspace_id: str) -> CatalogEvent:
    return CatalogEvent(
        id=row.id,
        name=row.name,
        description=row.description,
        event_type=row.event_type,
        category_id=row.category_id,
        workspace_id=workspace_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
