"""Catalog events, properties and categories (RudderStack Data Catalog API), declared.

    POST /catalog/{events|properties|categories}           create
    GET  /catalog/{events|properties|categories}           {"data", "total", "currentPage",
                                                           "pageSize"}; ?page=N&orderBy=f:asc
    GET  /catalog/{events|properties|categories}/{id}      one
    PUT  /catalog/{events|properties}/{id}                 update (at least one field)
    DELETE /catalog/{events|properties|categories}/{id}    the deleted entity

An event's type never changes, and an event used by a tracking plan cannot be deleted. Renaming
an event (or recategorising it) is a change to every plan that uses it: those plans get a new
version, so their history stays true.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType
from sqlalchemy import delete, insert, select, update

from gateway.catalog import request_rules as v
from gateway.catalog import schema
from gateway.catalog.declared import Audited, Input, Page, PageQuery, Route, list_page
from gateway.catalog.plans import bump_plans_using, ensure_category, event_named, insert_event
from gateway.catalog.rules import check_rule
from gateway.catalog.store import new_id, now_text, row_or_404
from gateway.catalog.type_refs import definitions_of
from gateway.errors import BadRequest

# --- types -----------------------------------------------------------------------------------

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
Time = Annotated[str, msgspec.Meta(description="ISO 8601, UTC.")]


class Category(Audited, kw_only=True):
    id: str
    name: str
    description: str | None
    workspace_id: str
    created_at: Time
    updated_at: Time


class CategoryCreate(msgspec.Struct):
    name: EntityName
    description: str | None = None


class CatalogEvent(Audited, kw_only=True):
    id: str
    name: str
    description: str | None
    event_type: str
    category_id: str | None
    workspace_id: str
    created_at: Time
    updated_at: Time


class CatalogEventWithCategory(CatalogEvent, kw_only=True):
    category: Category | None


class CatalogEventCreate(msgspec.Struct, rename="camel"):
    name: EventName | None = None
    event_type: EventType = "track"
    description: str | None = None
    category_id: Id | None = None


class CatalogEventUpdate(msgspec.Struct, rename="camel"):
    """At least one of name, description, categoryId; ``eventType`` cannot change."""

    name: EventName | UnsetType | None = UNSET
    event_type: EventType | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    category_id: Id | UnsetType | None = UNSET


class Property(Audited, kw_only=True):
    id: str
    name: str
    description: str | None
    type: PropertyType
    prop_config: Keywords
    workspace_id: str
    created_at: Time
    updated_at: Time


class PropertyCreate(msgspec.Struct, rename="camel"):
    name: PropertyName
    type: PropertyType
    prop_config: Keywords | None = None
    description: str | None = None


class PropertyUpdate(msgspec.Struct, rename="camel"):
    """At least one field."""

    name: PropertyName | UnsetType = UNSET
    type: PropertyType | UnsetType = UNSET
    prop_config: Keywords | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET


# --- rows ------------------------------------------------------------------------------------


def _category(row: Any, workspace_id: str) -> Category:
    return Category(
        id=row.id,
        name=row.name,
        description=row.description,
        workspace_id=workspace_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _event(row: Any, workspace_id: str) -> CatalogEvent:
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


def _property(row: Any, workspace_id: str) -> Property:
    return Property(
        id=row.id,
        name=row.name,
        description=row.description,
        type=row.type,
        prop_config=row.prop_config or {},
        workspace_id=workspace_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# --- categories ------------------------------------------------------------------------------


async def create_category(call: Input[CategoryCreate, None]) -> Category:
    body = call.body
    now = now_text()
    category_id = new_id("cat")
    async with call.store.write(snapshot=False) as conn:
        taken = await conn.scalar(
            select(schema.categories.c.id).where(schema.categories.c.name == body.name)
        )
        if taken is not None:
            raise BadRequest(f"a category named {body.name!r} already exists")
        await conn.execute(
            insert(schema.categories).values(
                id=category_id,
                name=body.name,
                description=body.description,
                created_at=now,
                updated_at=now,
            )
        )
        row = await row_or_404(conn, schema.categories, category_id, "category")
    return _category(row, call.store.workspace_id)


async def list_categories(call: Input[None, PageQuery]) -> Page[Category]:
    return await list_page(call, schema.categories, _category)


async def get_category(call: Input[None, None]) -> Category:
    async with call.store.read() as conn:
        row = await row_or_404(conn, schema.categories, call.path["id"], "category")
    return _category(row, call.store.workspace_id)


async def delete_category(call: Input[None, None]) -> Category:
    category_id = call.path["id"]
    async with call.store.write(snapshot=False) as conn:
        row = await row_or_404(conn, schema.categories, category_id, "category")
        events = schema.events
        await conn.execute(
            update(events).where(events.c.category_id == category_id).values(category_id=None)
        )
        await conn.execute(delete(schema.categories).where(schema.categories.c.id == category_id))
    return _category(row, call.store.workspace_id)


# --- events ----------------------------------------------------------------------------------


async def create_event(call: Input[CatalogEventCreate, None]) -> CatalogEvent:
    body = call.body
    name = v.event_name(body.name, body.event_type)
    async with call.store.write(snapshot=False) as conn:
        if await event_named(conn, name, body.event_type) is not None:
            raise BadRequest(f"an event named {name!r} already exists")
        if body.category_id is not None:
            await ensure_category(conn, body.category_id)
        event_id = await insert_event(
            conn,
            name=name,
            event_type=body.event_type,
            description=body.description,
            category_id=body.category_id,
        )
        row = await row_or_404(conn, schema.events, event_id, "event")
    return _event(row, call.store.workspace_id)


async def list_events(call: Input[None, PageQuery]) -> Page[CatalogEvent]:
    return await list_page(call, schema.events, _event)


async def get_event(call: Input[None, None]) -> CatalogEventWithCategory:
    workspace_id = call.store.workspace_id
    async with call.store.read() as conn:
        row = await row_or_404(conn, schema.events, call.path["id"], "event")
        category = None
        if row.category_id is not None:
            found = await conn.execute(
                select(schema.categories).where(schema.categories.c.id == row.category_id)
            )
            category_row = found.one_or_none()
            if category_row is not None:
                category = _category(category_row, workspace_id)
    event = _event(row, workspace_id)
    return CatalogEventWithCategory(**msgspec.structs.asdict(event), category=category)


async def update_event(call: Input[CatalogEventUpdate, None]) -> CatalogEvent:
    body = call.body
    event_id = call.path["id"]
    events = schema.events
    async with call.store.write() as conn:
        row = await row_or_404(conn, events, event_id, "event")
        if body.event_type is not UNSET and body.event_type != row.event_type:
            raise BadRequest("an event's type cannot be changed")
        values: dict[str, Any] = {}
        if body.name is not UNSET:
            values["name"] = v.event_name(body.name, row.event_type)
            if (
                await event_named(conn, values["name"], row.event_type, other_than=event_id)
                is not None
            ):
                raise BadRequest(f"an event named {values['name']!r} already exists")
        if body.description is not UNSET:
            values["description"] = body.description
        if body.category_id is not UNSET:
            values["category_id"] = body.category_id
            if body.category_id is not None:
                await ensure_category(conn, body.category_id)
        if not values:
            raise BadRequest("send at least one of name, description, categoryId")
        await conn.execute(
            update(events).where(events.c.id == event_id).values(**values, updated_at=now_text())
        )
        await bump_plans_using(conn, event_id, call.store.workspace_id)
        row = await row_or_404(conn, events, event_id, "event")
    return _event(row, call.store.workspace_id)


async def delete_event(call: Input[None, None]) -> CatalogEvent:
    event_id = call.path["id"]
    async with call.store.write(snapshot=False) as conn:
        row = await row_or_404(conn, schema.events, event_id, "event")
        te = schema.tracking_plan_events
        used = await conn.scalar(select(te.c.plan_id).where(te.c.event_id == event_id).limit(1))
        if used is not None:
            raise BadRequest(
                f"event {event_id} is used by tracking plan {used}; remove it from the plan first"
            )
        await conn.execute(delete(schema.events).where(schema.events.c.id == event_id))
    return _event(row, call.store.workspace_id)


# --- properties ------------------------------------------------------------------------------


async def create_property(call: Input[PropertyCreate, None]) -> Property:
    body = call.body
    kind = v.property_type(body.type)
    config = body.prop_config or {}
    # Its keywords go into the rules of every event that uses the property.
    await check_rule(config, "propConfig")
    now = now_text()
    property_id = new_id("prop")
    async with call.store.write(snapshot=False) as conn:
        if v.is_custom_type(kind):
            await definitions_of(conn, str(kind))
        await conn.execute(
            insert(schema.properties).values(
                id=property_id,
                name=body.name,
                description=body.description,
                type=kind,
                prop_config=config,
                created_at=now,
                updated_at=now,
            )
        )
        row = await row_or_404(conn, schema.properties, property_id, "property")
    return _property(row, call.store.workspace_id)


async def list_properties(call: Input[None, PageQuery]) -> Page[Property]:
    return await list_page(call, schema.properties, _property)


async def get_property(call: Input[None, None]) -> Property:
    async with call.store.read() as conn:
        row = await row_or_404(conn, schema.properties, call.path["id"], "property")
    return _property(row, call.store.workspace_id)


async def update_property(call: Input[PropertyUpdate, None]) -> Property:
    body = call.body
    values: dict[str, Any] = {}
    if body.name is not UNSET:
        values["name"] = body.name
    if body.description is not UNSET:
        values["description"] = body.description
    new_type = v.property_type(body.type) if body.type is not UNSET else None
    if new_type is not None:
        values["type"] = new_type
    if body.prop_config is not UNSET:
        config = body.prop_config or {}
        await check_rule(config, "propConfig")
        values["prop_config"] = config
    if not values:
        raise BadRequest("send at least one of name, description, type, propConfig")
    property_id = call.path["id"]
    async with call.store.write(snapshot=False) as conn:
        await row_or_404(conn, schema.properties, property_id, "property")
        if v.is_custom_type(new_type):
            await definitions_of(conn, str(new_type))
        await conn.execute(
            update(schema.properties)
            .where(schema.properties.c.id == property_id)
            .values(**values, updated_at=now_text())
        )
        row = await row_or_404(conn, schema.properties, property_id, "property")
    return _property(row, call.store.workspace_id)


async def delete_property(call: Input[None, None]) -> Property:
    property_id = call.path["id"]
    async with call.store.write(snapshot=False) as conn:
        row = await row_or_404(conn, schema.properties, property_id, "property")
        await conn.execute(delete(schema.properties).where(schema.properties.c.id == property_id))
    return _property(row, call.store.workspace_id)


# --- routes ----------------------------------------------------------------------------------

CATEGORIES, EVENTS, PROPERTIES = "/catalog/categories", "/catalog/events", "/catalog/properties"
ONE = "/{id}"
ROUTES = [
    Route(
        "POST",
        CATEGORIES,
        "createCategory",
        "Create a category",
        create_category,
        body=CategoryCreate,
        answer=Category,
        errors=(400,),
    ),
    Route(
        "GET",
        CATEGORIES,
        "listCategories",
        "List categories",
        list_categories,
        query=PageQuery,
        answer=Page[Category],
        errors=(400,),
    ),
    Route(
        "GET",
        CATEGORIES + ONE,
        "getCategory",
        "Get a category",
        get_category,
        answer=Category,
        errors=(404,),
    ),
    Route(
        "DELETE",
        CATEGORIES + ONE,
        "deleteCategory",
        "Delete a category",
        delete_category,
        answer=Category,
        answer_description="The deleted category.",
        errors=(404,),
    ),
    Route(
        "POST",
        EVENTS,
        "createCatalogEvent",
        "Create a catalog event",
        create_event,
        body=CatalogEventCreate,
        answer=CatalogEvent,
        errors=(400,),
    ),
    Route(
        "GET",
        EVENTS,
        "listCatalogEvents",
        "List catalog events",
        list_events,
        query=PageQuery,
        answer=Page[CatalogEvent],
        errors=(400,),
    ),
    Route(
        "GET",
        EVENTS + ONE,
        "getCatalogEvent",
        "Get a catalog event",
        get_event,
        answer=CatalogEventWithCategory,
        errors=(404,),
    ),
    Route(
        "PUT",
        EVENTS + ONE,
        "updateCatalogEvent",
        "Update a catalog event",
        update_event,
        body=CatalogEventUpdate,
        answer=CatalogEvent,
        errors=(400, 404),
    ),
    # An event that a tracking plan uses cannot be deleted (400).
    Route(
        "DELETE",
        EVENTS + ONE,
        "deleteCatalogEvent",
        "Delete a catalog event",
        delete_event,
        answer=CatalogEvent,
        answer_description="The deleted event.",
        errors=(400, 404),
    ),
    Route(
        "POST",
        PROPERTIES,
        "createProperty",
        "Create a property",
        create_property,
        body=PropertyCreate,
        answer=Property,
        errors=(400,),
    ),
    Route(
        "GET",
        PROPERTIES,
        "listProperties",
        "List properties",
        list_properties,
        query=PageQuery,
        answer=Page[Property],
        errors=(400,),
    ),
    Route(
        "GET",
        PROPERTIES + ONE,
        "getProperty",
        "Get a property",
        get_property,
        answer=Property,
        errors=(404,),
    ),
    Route(
        "PUT",
        PROPERTIES + ONE,
        "updateProperty",
        "Update a property",
        update_property,
        body=PropertyUpdate,
        answer=Property,
        errors=(400, 404),
    ),
    Route(
        "DELETE",
        PROPERTIES + ONE,
        "deleteProperty",
        "Delete a property",
        delete_property,
        answer=Property,
        answer_description="The deleted property.",
        errors=(404,),
    ),
]
