"""Catalog events, properties and categories (RudderStack Data Catalog API).

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

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import delete, insert, select, update

from gateway.catalog import request_rules as v
from gateway.catalog import schema
from gateway.catalog.http import STORE_KEY, json_body, page_response
from gateway.catalog.plans import (
    bump_plans_using,
    ensure_category,
    event_fields,
    event_named,
    insert_event,
)
from gateway.catalog.rules import check_rule
from gateway.catalog.store import new_id, now_text, row_or_404
from gateway.catalog.type_refs import definitions_of
from gateway.errors import BadRequest
from gateway.http import json_ok

Document = Callable[[Any, str], dict[str, Any]]


# --- shared ------------------------------------------------------------------------------------


def _audit(document: dict[str, Any]) -> dict[str, Any]:
    # This gateway has tokens, not users: there is no author to name.
    return {**document, "createdBy": None, "updatedBy": None}


# --- categories --------------------------------------------------------------------------------


def category_fields(row: Any, workspace_id: str) -> dict[str, Any]:
    return _audit(
        {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "workspaceId": workspace_id,
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
        }
    )


async def create_category(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = v.entity_name(body.get("name"), "category")
    description = v.optional_text(body.get("description"), "description")
    store = request.app[STORE_KEY]
    now = now_text()
    category_id = new_id("cat")
    async with store.write(snapshot=False) as conn:
        taken = await conn.scalar(
            select(schema.categories.c.id).where(schema.categories.c.name == name)
        )
        if taken is not None:
            raise BadRequest(f"a category named {name!r} already exists")
        await conn.execute(
            insert(schema.categories).values(
                id=category_id, name=name, description=description, created_at=now, updated_at=now
            )
        )
        row = await row_or_404(conn, schema.categories, category_id, "category")
    return json_ok(category_fields(row, store.workspace_id))


async def list_categories(request: web.Request) -> web.Response:
    return await page_response(request, schema.categories, category_fields)


async def get_category(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    async with store.read() as conn:
        row = await row_or_404(conn, schema.categories, request.match_info["id"], "category")
    return json_ok(category_fields(row, store.workspace_id))


async def delete_category(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    category_id = request.match_info["id"]
    async with store.write(snapshot=False) as conn:
        row = await row_or_404(conn, schema.categories, category_id, "category")
        events = schema.events
        await conn.execute(
            update(events).where(events.c.category_id == category_id).values(category_id=None)
        )
        await conn.execute(delete(schema.categories).where(schema.categories.c.id == category_id))
    return json_ok(category_fields(row, store.workspace_id))


# --- events ------------------------------------------------------------------------------------


def catalog_event_fields(row: Any, workspace_id: str) -> dict[str, Any]:
    return _audit(event_fields(row, workspace_id))


async def create_event(request: web.Request) -> web.Response:
    body = await json_body(request)
    kind = v.event_type(body.get("eventType"))
    name = v.event_name(body.get("name"), kind)
    description = v.optional_text(body.get("description"), "description")
    category_id = v.optional_id(body.get("categoryId"), "categoryId")
    store = request.app[STORE_KEY]
    events = schema.events
    async with store.write(snapshot=False) as conn:
        if await event_named(conn, name, kind) is not None:
            raise BadRequest(f"an event named {name!r} already exists")
        if category_id is not None:
            await ensure_category(conn, category_id)
        event_id = await insert_event(
            conn, name=name, event_type=kind, description=description, category_id=category_id
        )
        row = await row_or_404(conn, events, event_id, "event")
    return json_ok(catalog_event_fields(row, store.workspace_id))


async def list_events(request: web.Request) -> web.Response:
    return await page_response(request, schema.events, catalog_event_fields)


async def get_event(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    async with store.read() as conn:
        row = await row_or_404(conn, schema.events, request.match_info["id"], "event")
        category = None
        if row.category_id is not None:
            found = await conn.execute(
                select(schema.categories).where(schema.categories.c.id == row.category_id)
            )
            category_row = found.one_or_none()
            if category_row is not None:
                category = category_fields(category_row, store.workspace_id)
    return json_ok({**catalog_event_fields(row, store.workspace_id), "category": category})


async def update_event(request: web.Request) -> web.Response:
    body = await json_body(request)
    store = request.app[STORE_KEY]
    event_id = request.match_info["id"]
    events = schema.events
    async with store.write() as conn:
        row = await row_or_404(conn, events, event_id, "event")
        if "eventType" in body and body["eventType"] != row.event_type:
            raise BadRequest("an event's type cannot be changed")
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = v.event_name(body["name"], row.event_type)
            if (
                await event_named(conn, values["name"], row.event_type, other_than=event_id)
                is not None
            ):
                raise BadRequest(f"an event named {values['name']!r} already exists")
        if "description" in body:
            values["description"] = v.optional_text(body["description"], "description")
        if "categoryId" in body:
            values["category_id"] = v.optional_id(body["categoryId"], "categoryId")
            if values["category_id"] is not None:
                await ensure_category(conn, values["category_id"])
        if not values:
            raise BadRequest("send at least one of name, description, categoryId")
        await conn.execute(
            update(events).where(events.c.id == event_id).values(**values, updated_at=now_text())
        )
        await bump_plans_using(conn, event_id, store.workspace_id)
        row = await row_or_404(conn, events, event_id, "event")
    return json_ok(catalog_event_fields(row, store.workspace_id))


async def delete_event(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    event_id = request.match_info["id"]
    async with store.write(snapshot=False) as conn:
        row = await row_or_404(conn, schema.events, event_id, "event")
        te = schema.tracking_plan_events
        used = await conn.scalar(select(te.c.plan_id).where(te.c.event_id == event_id).limit(1))
        if used is not None:
            raise BadRequest(
                f"event {event_id} is used by tracking plan {used}; remove it from the plan first"
            )
        await conn.execute(delete(schema.events).where(schema.events.c.id == event_id))
    return json_ok(catalog_event_fields(row, store.workspace_id))


# --- properties --------------------------------------------------------------------------------


def property_fields(row: Any, workspace_id: str) -> dict[str, Any]:
    return _audit(
        {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "type": orjson.loads(row.type),
            "propConfig": orjson.loads(row.prop_config) if row.prop_config else {},
            "workspaceId": workspace_id,
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
        }
    )


async def create_property(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = v.property_name(body.get("name"))
    if "type" not in body:
        raise BadRequest("type is required")
    kind = v.property_type(body["type"])
    config = v.prop_config(body.get("propConfig"))
    # Its keywords go into the rules of every event that uses the property.
    await check_rule(config, "propConfig")
    description = v.optional_text(body.get("description"), "description")
    store = request.app[STORE_KEY]
    now = now_text()
    property_id = new_id("prop")
    async with store.write(snapshot=False) as conn:
        if v.is_custom_type(kind):
            await definitions_of(conn, str(kind))
        await conn.execute(
            insert(schema.properties).values(
                id=property_id,
                name=name,
                description=description,
                type=orjson.dumps(kind).decode(),
                prop_config=orjson.dumps(config).decode(),
                created_at=now,
                updated_at=now,
            )
        )
        row = await row_or_404(conn, schema.properties, property_id, "property")
    return json_ok(property_fields(row, store.workspace_id))


async def list_properties(request: web.Request) -> web.Response:
    return await page_response(request, schema.properties, property_fields)


async def get_property(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    async with store.read() as conn:
        row = await row_or_404(conn, schema.properties, request.match_info["id"], "property")
    return json_ok(property_fields(row, store.workspace_id))


async def update_property(request: web.Request) -> web.Response:
    body = await json_body(request)
    values: dict[str, Any] = {}
    if "name" in body:
        values["name"] = v.property_name(body["name"])
    if "description" in body:
        values["description"] = v.optional_text(body["description"], "description")
    new_type = v.property_type(body["type"]) if "type" in body else None
    if new_type is not None:
        values["type"] = orjson.dumps(new_type).decode()
    if "propConfig" in body:
        config = v.prop_config(body["propConfig"])
        await check_rule(config, "propConfig")
        values["prop_config"] = orjson.dumps(config).decode()
    if not values:
        raise BadRequest("send at least one of name, description, type, propConfig")
    store = request.app[STORE_KEY]
    property_id = request.match_info["id"]
    async with store.write(snapshot=False) as conn:
        await row_or_404(conn, schema.properties, property_id, "property")
        if v.is_custom_type(new_type):
            await definitions_of(conn, str(new_type))
        await conn.execute(
            update(schema.properties)
            .where(schema.properties.c.id == property_id)
            .values(**values, updated_at=now_text())
        )
        row = await row_or_404(conn, schema.properties, property_id, "property")
    return json_ok(property_fields(row, store.workspace_id))


async def delete_property(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    property_id = request.match_info["id"]
    async with store.write(snapshot=False) as conn:
        row = await row_or_404(conn, schema.properties, property_id, "property")
        await conn.execute(delete(schema.properties).where(schema.properties.c.id == property_id))
    return json_ok(property_fields(row, store.workspace_id))


def add_entity_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/catalog/categories", create_category)
    r.add_get("/catalog/categories", list_categories)
    r.add_get("/catalog/categories/{id}", get_category)
    r.add_delete("/catalog/categories/{id}", delete_category)
    r.add_post("/catalog/events", create_event)
    r.add_get("/catalog/events", list_events)
    r.add_get("/catalog/events/{id}", get_event)
    r.add_put("/catalog/events/{id}", update_event)
    r.add_delete("/catalog/events/{id}", delete_event)
    r.add_post("/catalog/properties", create_property)
    r.add_get("/catalog/properties", list_properties)
    r.add_get("/catalog/properties/{id}", get_property)
    r.add_put("/catalog/properties/{id}", update_property)
    r.add_delete("/catalog/properties/{id}", delete_property)
