"""Tracking plans and their events (RudderStack Data Catalog API), with full version history.

    POST   /catalog/tracking-plans                              create (version 1)
    GET    /catalog/tracking-plans                              {"trackingPlans": [...]}
    GET    /catalog/tracking-plans/{id}[?version=N]             the plan with its events
    PUT    /catalog/tracking-plans/{id}                         name / description
    DELETE /catalog/tracking-plans/{id}                         the plan as it was; connections go
    PATCH  /catalog/tracking-plans/{id}/events                  upsert an event with its rules
    GET    /catalog/tracking-plans/{id}/events[?page=N]         paginated plan events
    GET    /catalog/tracking-plans/{id}/events/{eventId}        one event with its rules
    DELETE /catalog/tracking-plans/{id}/events/{eventId}        204

Every change to a plan or its events bumps ``version`` and records the whole plan (fields,
events and rules) in ``tracking_plan_versions``, so ``?version=N`` returns exactly what was.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog import changelog, schema
from gateway.catalog import properties_form as form
from gateway.catalog import request_rules as v
from gateway.catalog.http import STORE_KEY, json_body
from gateway.catalog.rules import check_rule, recheck
from gateway.catalog.store import new_id, now_text, row_or_404
from gateway.errors import BadRequest, NotFound
from gateway.http import json_ok

CREATION_TYPE = "BackendAPI"
PLANS = "/catalog/tracking-plans"


# --- documents --------------------------------------------------------------------------------


def plan_fields(row: Any, workspace_id: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "version": row.version,
        "workspaceId": workspace_id,
        "creationType": row.creation_type,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }


def event_fields(row: Any, workspace_id: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "eventType": row.event_type,
        "categoryId": row.category_id,
        "workspaceId": workspace_id,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }


def _plan_event_fields(row: Any, workspace_id: str, *, with_rules: bool) -> dict[str, Any]:
    document = event_fields(row, workspace_id)
    document["identitySection"] = row.identity_section
    document["additionalProperties"] = bool(row.additional_properties)
    if with_rules:
        document["rules"] = row.rules
    return document


def _plan_events_query(plan_id: str) -> Any:
    te = schema.tracking_plan_events
    return (
        select(
            schema.events,
            te.c.identity_section,
            te.c.additional_properties,
            te.c.rules,
        )
        .join(te, te.c.event_id == schema.events.c.id)
        .where(te.c.plan_id == plan_id)
    )


async def plan_row(conn: AsyncConnection, plan_id: str) -> Any:
    return await row_or_404(conn, schema.tracking_plans, plan_id, "tracking plan")


async def current_plan_document(
    conn: AsyncConnection, plan_id: str, workspace_id: str
) -> dict[str, Any]:
    """The plan as it is now: fields, events and their rules."""
    row = await plan_row(conn, plan_id)
    events = await conn.execute(
        _plan_events_query(plan_id).order_by(
            schema.tracking_plan_events.c.created_at, schema.events.c.name
        )
    )
    document = plan_fields(row, workspace_id)
    document["events"] = [_plan_event_fields(e, workspace_id, with_rules=True) for e in events]
    return document


async def _record_version(conn: AsyncConnection, plan_id: str, workspace_id: str) -> dict[str, Any]:
    document = await current_plan_document(conn, plan_id, workspace_id)
    await conn.execute(
        insert(schema.tracking_plan_versions).values(
            plan_id=plan_id, version=document["version"], document=document
        )
    )
    return document


async def _bump(conn: AsyncConnection, plan_id: str, workspace_id: str, **values: Any) -> Any:
    """A new version of the plan: apply ``values``, bump, record the whole plan."""
    plans = schema.tracking_plans
    await conn.execute(
        update(plans)
        .where(plans.c.id == plan_id)
        .values(**values, version=plans.c.version + 1, updated_at=now_text())
    )
    document = await _record_version(conn, plan_id, workspace_id)
    changelog.plan_moved(plan_id, document["version"] - 1, document["version"])
    return document


async def bump_plans_using(conn: AsyncConnection, event_id: str, workspace_id: str) -> None:
    """A catalog event changed: every plan using it gets a new version."""
    te = schema.tracking_plan_events
    plan_ids = [
        row.plan_id
        for row in await conn.execute(select(te.c.plan_id).where(te.c.event_id == event_id))
    ]
    for plan_id in plan_ids:
        await _bump(conn, plan_id, workspace_id)


def _without_events(document: dict[str, Any]) -> dict[str, Any]:
    return {k: val for k, val in document.items() if k != "events"}


# --- tracking plans ---------------------------------------------------------------------------


async def create_plan(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = v.entity_name(body.get("name"), "tracking plan")
    description = v.optional_text(body.get("description"), "description")
    store = request.app[STORE_KEY]
    now = now_text()
    plan_id = new_id("tp")
    async with store.write() as conn:
        await conn.execute(
            insert(schema.tracking_plans).values(
                id=plan_id,
                name=name,
                description=description,
                version=1,
                creation_type=CREATION_TYPE,
                created_at=now,
                updated_at=now,
            )
        )
        document = await _record_version(conn, plan_id, store.workspace_id)
        changelog.plan_moved(plan_id, None, 1)
    return json_ok(_without_events(document))


async def list_plans(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    async with store.read() as conn:
        rows = await conn.execute(
            select(schema.tracking_plans).order_by(schema.tracking_plans.c.created_at)
        )
        plans = [plan_fields(r, store.workspace_id) for r in rows]
    return json_ok({"trackingPlans": plans})


async def get_plan(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    plan_id = request.match_info["plan_id"]
    version = v.version_of(request)
    async with store.read() as conn:
        if version is None:
            return json_ok(await current_plan_document(conn, plan_id, store.workspace_id))
        await plan_row(conn, plan_id)
        document = await conn.scalar(
            select(schema.tracking_plan_versions.c.document).where(
                schema.tracking_plan_versions.c.plan_id == plan_id,
                schema.tracking_plan_versions.c.version == version,
            )
        )
    if document is None:
        raise NotFound(f"tracking plan {plan_id} has no version {version}")
    return json_ok(document)


async def update_plan(request: web.Request) -> web.Response:
    body = await json_body(request)
    values: dict[str, Any] = {}
    if "name" in body:
        values["name"] = v.entity_name(body["name"], "tracking plan")
    if "description" in body:
        values["description"] = v.optional_text(body["description"], "description")
    if not values:
        raise BadRequest("send at least one of name, description")
    store = request.app[STORE_KEY]
    plan_id = request.match_info["plan_id"]
    async with store.write() as conn:
        await plan_row(conn, plan_id)
        document = await _bump(conn, plan_id, store.workspace_id, **values)
    return json_ok(_without_events(document))


async def delete_plan(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    plan_id = request.match_info["plan_id"]
    async with store.write() as conn:
        document = await current_plan_document(conn, plan_id, store.workspace_id)
        for table in (
            schema.connections,
            schema.tracking_plan_events,
            schema.tracking_plan_versions,
        ):
            await conn.execute(delete(table).where(table.c.plan_id == plan_id))
        await conn.execute(
            delete(schema.tracking_plans).where(schema.tracking_plans.c.id == plan_id)
        )
        changelog.plan_moved(plan_id, document["version"], None)
    return json_ok(document)


# --- events of a plan -------------------------------------------------------------------------


def _additional_properties(rules: dict[str, Any], section: str) -> bool:
    """Whether the rules allow properties beyond the planned ones in the identity section."""
    node: Any = rules
    for part in section.split("."):
        node = node.get("properties", {}).get(part, {}) if isinstance(node, dict) else {}
    return not (isinstance(node, dict) and node.get("additionalProperties") is False)


async def find_or_create_event(
    conn: AsyncConnection,
    *,
    name: str,
    event_type: str,
    description: str | None,
    category_id: str | None,
) -> str:
    """The catalog event with this name and type, created if missing."""
    events = schema.events
    event = await event_named(conn, name, event_type)
    if category_id is not None:
        await ensure_category(conn, category_id)
    now = now_text()
    if event is not None:
        changes = {
            k: val
            for k, val in (("description", description), ("category_id", category_id))
            if val is not None
        }
        if changes:
            await conn.execute(
                update(events).where(events.c.id == event.id).values(**changes, updated_at=now)
            )
        return str(event.id)
    return await insert_event(
        conn, name=name, event_type=event_type, description=description, category_id=category_id
    )


async def event_named(
    conn: AsyncConnection, name: str, event_type: str, *, other_than: str | None = None
) -> Any:
    """The catalog event with this name and type, if any (besides ``other_than``).

    Name and type identify a catalog event: track events by their name, each other type is
    its one unnamed event (validation forces their name to "" and track names to 3+ chars).
    """
    events = schema.events
    query = select(events).where(events.c.name == name, events.c.event_type == event_type)
    if other_than is not None:
        query = query.where(events.c.id != other_than)
    return (await conn.execute(query)).first()


async def insert_event(
    conn: AsyncConnection,
    *,
    name: str,
    event_type: str,
    description: str | None,
    category_id: str | None,
) -> str:
    """A new catalog event (its name and type already checked by the caller)."""
    event_id = new_id("ev")
    now = now_text()
    await conn.execute(
        insert(schema.events).values(
            id=event_id,
            name=name,
            description=description,
            event_type=event_type,
            category_id=category_id,
            created_at=now,
            updated_at=now,
        )
    )
    return event_id


async def ensure_category(conn: AsyncConnection, category_id: str) -> None:
    found = await conn.scalar(
        select(schema.categories.c.id).where(schema.categories.c.id == category_id)
    )
    if found is None:
        raise BadRequest(f"category {category_id} does not exist")


async def put_plan_event(
    conn: AsyncConnection,
    plan_id: str,
    event_id: str,
    section: str,
    rules: dict[str, Any],
) -> None:
    """Insert or replace one event's rules in a plan (checked by the caller: see rules.py)."""
    te = schema.tracking_plan_events
    now = now_text()
    values = {
        "identity_section": section,
        "additional_properties": _additional_properties(rules, section),
        "rules": rules,
        "updated_at": now,
    }
    result = await conn.execute(
        update(te).where(te.c.plan_id == plan_id, te.c.event_id == event_id).values(**values)
    )
    if not result.rowcount:
        await conn.execute(
            insert(te).values(plan_id=plan_id, event_id=event_id, created_at=now, **values)
        )


async def _rules_from_catalog(
    conn: AsyncConnection, specs: list[form.PropertySpec], section: str
) -> dict[str, Any]:
    """The rules ``specs`` make with the catalog as it is, read before the write transaction
    (which builds them again) so they are checked outside it; creates nothing."""
    unresolved = copy.deepcopy(specs)  # resolve() fills the specs in
    await form.resolve(conn, unresolved, create=False)
    return form.build_rules(unresolved, section)


async def upsert_event_with_rules(request: web.Request) -> web.Response:
    body = await json_body(request)
    kind = v.event_type(body.get("eventType"))
    name = v.event_name(body.get("name"), kind)
    rules = body.get("rules")
    if not isinstance(rules, dict) or not rules:
        raise BadRequest("rules: a non-empty JSON schema object is required")
    section = v.identity_section(body.get("identitySection"), kind)
    await check_rule(rules)
    store = request.app[STORE_KEY]
    plan_id = request.match_info["plan_id"]
    async with store.write() as conn:
        await plan_row(conn, plan_id)
        event_id = await find_or_create_event(
            conn,
            name=name,
            event_type=kind,
            description=v.optional_text(body.get("description"), "description"),
            category_id=v.optional_id(body.get("categoryId"), "categoryId"),
        )
        await put_plan_event(conn, plan_id, event_id, section, rules)
        document = await _bump(conn, plan_id, store.workspace_id)
    return json_ok(_without_events(document))


async def upsert_event_with_properties(request: web.Request) -> web.Response:
    """``POST``: the event and its properties by name (created in the catalog if missing)."""
    body = await json_body(request)
    if "eventType" not in body:
        raise BadRequest("eventType is required")
    kind = v.event_type(body.get("eventType"))
    name = v.event_name(body.get("name"), kind)
    section = v.identity_section(body.get("identitySection"), kind)
    specs = form.parse_by_name(body.get("properties"))
    store = request.app[STORE_KEY]
    plan_id = request.match_info["plan_id"]
    async with store.read() as conn:
        await plan_row(conn, plan_id)
        checked = await _rules_from_catalog(conn, specs, section)
    await check_rule(checked)
    async with store.write() as conn:
        await plan_row(conn, plan_id)
        await form.resolve(conn, specs)
        event_id = await find_or_create_event(
            conn,
            name=name,
            event_type=kind,
            description=v.optional_text(body.get("description"), "description"),
            category_id=v.optional_id(body.get("categoryId"), "categoryId"),
        )
        rules = form.build_rules(specs, section)
        await recheck(rules, checked)
        await put_plan_event(conn, plan_id, event_id, section, rules)
        document = await _bump(conn, plan_id, store.workspace_id)
    return json_ok(_without_events(document))


async def upsert_event_with_ids(request: web.Request) -> web.Response:
    """``PUT``: a catalog event and catalog properties, by id."""
    body = await json_body(request)
    event_id = body.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise BadRequest("id: the catalog event id is required")
    specs = form.parse_by_id(body.get("properties"))
    store = request.app[STORE_KEY]
    plan_id = request.match_info["plan_id"]

    async def section_of_event(conn: AsyncConnection) -> str:
        await plan_row(conn, plan_id)
        event = (
            await conn.execute(select(schema.events).where(schema.events.c.id == event_id))
        ).one_or_none()
        if event is None:
            raise BadRequest(f"event {event_id} does not exist")
        return v.identity_section(body.get("identitySection"), event.event_type)

    async with store.read() as conn:
        checked = await _rules_from_catalog(conn, specs, await section_of_event(conn))
    await check_rule(checked)
    async with store.write() as conn:
        section = await section_of_event(conn)
        await form.resolve(conn, specs)
        rules = form.build_rules(specs, section)
        await recheck(rules, checked)
        await put_plan_event(conn, plan_id, event_id, section, rules)
        document = await _bump(conn, plan_id, store.workspace_id)
    return json_ok(_without_events(document))


async def list_plan_events(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    plan_id = request.match_info["plan_id"]
    page = v.page_of(request)
    te = schema.tracking_plan_events
    async with store.read() as conn:
        await plan_row(conn, plan_id)
        total = await conn.scalar(
            select(func.count()).select_from(te).where(te.c.plan_id == plan_id)
        )
        rows = await conn.execute(
            _plan_events_query(plan_id)
            .order_by(te.c.created_at, schema.events.c.name)
            .limit(v.PAGE_SIZE)
            .offset((page - 1) * v.PAGE_SIZE)
        )
        items = [_plan_event_fields(r, store.workspace_id, with_rules=False) for r in rows]
    return json_ok(v.page_document(items, int(total or 0), page))


async def get_plan_event(request: web.Request) -> web.Response:
    """``?format=schema`` (default): with ``rules``; ``?format=properties``: with
    ``properties`` described from the rules, each naming its catalog property."""
    view = request.query.get("format", "schema")
    if view not in ("schema", "properties"):
        raise BadRequest("format must be schema or properties")
    store = request.app[STORE_KEY]
    plan_id = request.match_info["plan_id"]
    async with store.read() as conn:
        row = await _plan_event_row(conn, plan_id, request.match_info["event_id"])
        document = _plan_event_fields(row, store.workspace_id, with_rules=view == "schema")
        if view == "properties":
            described = form.rules_to_properties(row.rules, row.identity_section)
            await form.attach_ids(conn, described)
            document["properties"] = described
    return json_ok(document)


async def delete_plan_event(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    plan_id = request.match_info["plan_id"]
    event_id = request.match_info["event_id"]
    te = schema.tracking_plan_events
    async with store.write() as conn:
        await _plan_event_row(conn, plan_id, event_id)
        await conn.execute(delete(te).where(te.c.plan_id == plan_id, te.c.event_id == event_id))
        await _bump(conn, plan_id, store.workspace_id)
    return web.Response(status=204)


async def _plan_event_row(conn: AsyncConnection, plan_id: str, event_id: str) -> Any:
    await plan_row(conn, plan_id)
    row = (
        await conn.execute(
            _plan_events_query(plan_id).where(schema.tracking_plan_events.c.event_id == event_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"event {event_id} is not in tracking plan {plan_id}")
    return row


def add_plan_routes(app: web.Application) -> None:
    app.router.add_post(PLANS, create_plan)
    app.router.add_get(PLANS, list_plans)
    app.router.add_get(PLANS + "/{plan_id}", get_plan)
    app.router.add_put(PLANS + "/{plan_id}", update_plan)
    app.router.add_delete(PLANS + "/{plan_id}", delete_plan)
    app.router.add_patch(PLANS + "/{plan_id}/events", upsert_event_with_rules)
    app.router.add_post(PLANS + "/{plan_id}/events", upsert_event_with_properties)
    app.router.add_put(PLANS + "/{plan_id}/events", upsert_event_with_ids)
    app.router.add_get(PLANS + "/{plan_id}/events", list_plan_events)
    app.router.add_get(PLANS + "/{plan_id}/events/{event_id}", get_plan_event)
    app.router.add_delete(PLANS + "/{plan_id}/events/{event_id}", delete_plan_event)
