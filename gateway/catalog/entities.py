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

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from gateway.catalog import request_rules as v
from gateway.catalog.declared import Audited, Input, Page, PageQuery, Route, list_page
from gateway.catalog.models import (
    CatalogEvent,
    Category,
    EntityName,
    EventName,
    EventType,
    Id,
    Keywords,
    PropertyName,
    PropertyType,
    Time,
    category_of,
    event_of,
)
from gateway.catalog.plans import bump_plans_using, ensure_category
from gateway.catalog.rules import check_rule
from gateway.catalog.store import categories, events, properties
from gateway.catalog.store import plans as plan_store
from gateway.catalog.type_refs import definitions_of
from gateway.errors import BadRequest

# --- types -----------------------------------------------------------------------------------


class CategoryCreate(msgspec.Struct):
    name: EntityName
    description: str | None = None


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
    async with call.store.write(snapshot=False) as conn:
        if await categories.named(conn, body.name) is not None:
            raise BadRequest(f"a category named {body.name!r} already exists")
        row = await categories.insert_category(conn, body.name, body.description)
    return category_of(row, call.store.workspace_id)


async def list_categories(call: Input[None, PageQuery]) -> Page[Category]:
    return await list_page(call, categories.TABLE, category_of)


async def get_category(call: Input[None, None]) -> Category:
    async with call.store.read() as conn:
        row = await categories.get(conn, call.path["id"])
    return category_of(row, call.store.workspace_id)


async def delete_category(call: Input[None, None]) -> Category:
    async with call.store.write(snapshot=False) as conn:
        row = await categories.delete_category(conn, call.path["id"])
    return category_of(row, call.store.workspace_id)


# --- events ----------------------------------------------------------------------------------


async def create_event(call: Input[CatalogEventCreate, None]) -> CatalogEvent:
    body = call.body
    name = v.event_name(body.name, body.event_type)
    async with call.store.write(snapshot=False) as conn:
        if await events.named(conn, name, body.event_type) is not None:
            raise BadRequest(f"an event named {name!r} already exists")
        if body.category_id is not None:
            await ensure_category(conn, body.category_id)
        event_id = await events.insert_event(
            conn,
            name=name,
            event_type=body.event_type,
            description=body.description,
            category_id=body.category_id,
        )
        row = await events.get(conn, event_id)
    return event_of(row, call.store.workspace_id)


async def list_events(call: Input[None, PageQuery]) -> Page[CatalogEvent]:
    return await list_page(call, events.TABLE, event_of)


async def get_event(call: Input[None, None]) -> CatalogEventWithCategory:
    workspace_id = call.store.workspace_id
    async with call.store.read() as conn:
        row = await events.get(conn, call.path["id"])
        category_row = None
        if row.category_id is not None:
            category_row = await categories.find(conn, row.category_id)
    category = None if category_row is None else category_of(category_row, workspace_id)
    event = event_of(row, workspace_id)
    return CatalogEventWithCategory(**msgspec.structs.asdict(event), category=category)


async def update_event(call: Input[CatalogEventUpdate, None]) -> CatalogEvent:
    body = call.body
    event_id = call.path["id"]
    async with call.store.write() as conn:
        row = await events.get(conn, event_id)
        if body.event_type is not UNSET and body.event_type != row.event_type:
            raise BadRequest("an event's type cannot be changed")
        values: dict[str, Any] = {}
        if body.name is not UNSET:
            values["name"] = v.event_name(body.name, row.event_type)
            if await events.named(conn, values["name"], row.event_type, other_than=event_id):
                raise BadRequest(f"an event named {values['name']!r} already exists")
        if body.description is not UNSET:
            values["description"] = body.description
        if body.category_id is not UNSET:
            values["category_id"] = body.category_id
            if body.category_id is not None:
                await ensure_category(conn, body.category_id)
        if not values:
            raise BadRequest("send at least one of name, description, categoryId")
        await events.update_event(conn, event_id, **values)
        await bump_plans_using(conn, event_id, call.store.workspace_id)
        row = await events.get(conn, event_id)
    return event_of(row, call.store.workspace_id)


async def delete_event(call: Input[None, None]) -> CatalogEvent:
    event_id = call.path["id"]
    async with call.store.write(snapshot=False) as conn:
        row = await events.get(conn, event_id)
        used = await plan_store.using_event(conn, event_id)
        if used:
            raise BadRequest(
                f"event {event_id} is used by tracking plan {used[0]}; remove it from the plan "
                "first"
            )
        await events.delete_event(conn, event_id)
    return event_of(row, call.store.workspace_id)


# --- properties ------------------------------------------------------------------------------


async def create_property(call: Input[PropertyCreate, None]) -> Property:
    body = call.body
    kind = v.property_type(body.type)
    config = body.prop_config or {}
    # Its keywords go into the rules of every event that uses the property.
    await check_rule(config, "propConfig")
    async with call.store.write(snapshot=False) as conn:
        if v.is_custom_type(kind):
            await definitions_of(conn, str(kind))
        property_id = await properties.insert_property(
            conn, name=body.name, kind=kind, config=config, description=body.description
        )
        row = await properties.get(conn, property_id)
    return _property(row, call.store.workspace_id)


async def list_properties(call: Input[None, PageQuery]) -> Page[Property]:
    return await list_page(call, properties.TABLE, _property)


async def get_property(call: Input[None, None]) -> Property:
    async with call.store.read() as conn:
        row = await properties.get(conn, call.path["id"])
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
        await properties.get(conn, property_id)
        if v.is_custom_type(new_type):
            await definitions_of(conn, str(new_type))
        await properties.update_property(conn, property_id, **values)
        row = await properties.get(conn, property_id)
    return _property(row, call.store.workspace_id)


async def delete_property(call: Input[None, None]) -> Property:
    property_id = call.path["id"]
    async with call.store.write(snapshot=False) as conn:
        row = await properties.get(conn, property_id)
        await properties.delete_property(conn, property_id)
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
