"""Custom types (RudderStack Data Catalog API, beta): named, reusable property types.

    POST   /catalog/custom-types           {"name", "description"?, "type", "config", "properties"?}
    GET    /catalog/custom-types           {"data": [...], "total", "currentPage", "pageSize"}
    GET    /catalog/custom-types/{id}
    PUT    /catalog/custom-types/{id}      {"type", "config", "properties"?, "description"?}
    DELETE /catalog/custom-types/{id}      refused while a property or custom type uses it

A custom type's ``config`` becomes its ``rules`` (a JSON schema): string and number keywords
as they are (``format: datetime`` is JSON Schema's ``date-time``), ``itemTypes`` as ``items``,
an object's catalog properties as ``properties``/``required``. A custom type used inside another
(an array of it, a property of it) is referenced as ``#/$defs/<Name>``; ``defs`` carries those
definitions, so a plan event's rules can inline them under ``$defs`` — never fetched remotely.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog import properties_form as form
from gateway.catalog import request_rules as v
from gateway.catalog import schema
from gateway.catalog.http import STORE_KEY, json_body, page_response
from gateway.catalog.rules import check_rule, recheck
from gateway.catalog.store import new_id, now_text, row_or_404
from gateway.catalog.type_refs import definitions_of, ref_to
from gateway.errors import BadRequest
from gateway.http import json_ok

TYPES = v.PROPERTY_TYPES
NUMBER_KEYS = {"enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
CONFIG_KEYS: dict[str, set[str]] = {
    "string": {"enum", "minLength", "maxLength", "pattern", "format"},
    "number": NUMBER_KEYS,
    "integer": NUMBER_KEYS,
    "array": {"itemTypes"},
    "boolean": set(),
    "null": set(),
    "object": set(),
}
STRING_FORMATS = {
    "datetime": "date-time",
    "date-time": "date-time",
    "date": "date",
    "time": "time",
    "email": "email",
    "uuid": "uuid",
    "hostname": "hostname",
    "ipv4": "ipv4",
    "ipv6": "ipv6",
}
PATH = "/catalog/custom-types"


def _validate_config(kind: str, config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise BadRequest("config: an object is required (it may be empty)")
    unknown = set(config) - CONFIG_KEYS[kind]
    if unknown:
        allowed = ", ".join(sorted(CONFIG_KEYS[kind])) or "nothing"
        raise BadRequest(
            f"config: {', '.join(sorted(unknown))} not allowed for {kind}; use {allowed}"
        )
    if "format" in config and config["format"] not in STRING_FORMATS:
        raise BadRequest(f"config.format must be one of {', '.join(STRING_FORMATS)}")
    if "enum" in config and (not isinstance(config["enum"], list) or not config["enum"]):
        raise BadRequest("config.enum must be a non-empty array")
    item_types = config.get("itemTypes")
    if item_types is not None:
        if not isinstance(item_types, list) or not item_types:
            raise BadRequest("config.itemTypes must be a non-empty array of types")
        customs = [t for t in item_types if t not in TYPES]
        if customs and len(item_types) > 1:
            raise BadRequest("config.itemTypes: a custom type must be the only item type")
    return config


async def build(
    conn: AsyncConnection, kind: str, config: dict[str, Any], properties: Any
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(rules, defs, stored properties) of a custom type, from the catalog as it is (reads
    only). The caller checks :func:`servable_form` before its write transaction."""
    rules: dict[str, Any] = {"type": [kind]}
    defs: dict[str, Any] = {}
    stored: list[dict[str, Any]] = []
    if kind in ("string", "number", "integer"):
        rules.update(config)
        if "format" in config:
            rules["format"] = STRING_FORMATS[config["format"]]
    elif kind == "array" and "itemTypes" in config:
        item_types = config["itemTypes"]
        if item_types[0] not in TYPES:
            defs.update(await definitions_of(conn, item_types[0]))
            rules["items"] = ref_to(item_types[0])
        else:
            rules["items"] = {"type": item_types}
    elif kind == "object":
        specs = form.parse_by_id(properties)
        await form.resolve(conn, specs)
        rules.update(form.object_schema(specs, None))
        defs.update(form.definitions(specs))
        stored = [{"id": s.id, "required": s.required} for s in specs]
    return rules, defs, stored


def servable_form(rules: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """What is inlined into the rules of every event that uses the type: checked (400 if it
    cannot be served) as ``config``."""
    return {**rules, "$defs": defs} if defs else rules


def custom_type_document(row: Any, workspace_id: str) -> dict[str, Any]:
    return {
        "config": orjson.loads(row.config),
        "rules": orjson.loads(row.rules),
        "defs": sorted(orjson.loads(row.defs)),
        "itemDefinitions": [],
        "id": row.id,
        "name": row.name,
        "type": row.type,
        "dataType": row.type,
        "version": row.version,
        "description": row.description or "",
        "workspaceId": workspace_id,
        "createdBy": None,
        "updatedBy": None,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
        "properties": orjson.loads(row.properties),
    }


def _kind(body: dict[str, Any]) -> str:
    kind = body.get("type")
    if kind not in TYPES:
        raise BadRequest(f"type must be one of {', '.join(TYPES)}")
    return str(kind)


async def _row(conn: AsyncConnection, type_id: str) -> Any:
    return await row_or_404(conn, schema.custom_types, type_id, "custom type")


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not v.CUSTOM_TYPE_NAME.match(name):
        raise BadRequest(
            "name must be 2 to 65 characters, start with a capital letter and contain only "
            "letters, numbers, underscores and dashes"
        )
    kind = _kind(body)
    if "config" not in body:
        raise BadRequest("config is required (an empty object accepts any value)")
    config = _validate_config(kind, body["config"])
    if kind == "object" and "properties" not in body:
        raise BadRequest("properties is required for an object custom type")
    description = v.optional_text(body.get("description"), "description")
    store = request.app[STORE_KEY]
    type_id = new_id("def")
    now = now_text()

    async def name_free(conn: AsyncConnection) -> None:
        taken = await conn.scalar(
            select(schema.custom_types.c.id).where(schema.custom_types.c.name == name)
        )
        if taken is not None:
            raise BadRequest(f"a custom type named {name} already exists")

    async with store.read() as conn:
        await name_free(conn)
        rules, defs, _ = await build(conn, kind, config, body.get("properties"))
    checked = servable_form(rules, defs)
    await check_rule(checked, "config")  # before the transaction: see rules.py
    async with store.write(snapshot=False) as conn:
        await name_free(conn)
        rules, defs, stored = await build(conn, kind, config, body.get("properties"))
        await recheck(servable_form(rules, defs), checked, "config")
        await conn.execute(
            insert(schema.custom_types).values(
                id=type_id,
                name=name,
                description=description,
                type=kind,
                config=orjson.dumps(config).decode(),
                properties=orjson.dumps(stored).decode(),
                rules=orjson.dumps(rules).decode(),
                defs=orjson.dumps(defs).decode(),
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
        row = await _row(conn, type_id)
    return json_ok(custom_type_document(row, store.workspace_id))


async def list_all(request: web.Request) -> web.Response:
    return await page_response(request, schema.custom_types, custom_type_document)


async def get(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    async with store.read() as conn:
        row = await _row(conn, request.match_info["id"])
    return json_ok(custom_type_document(row, store.workspace_id))


async def update_type(request: web.Request) -> web.Response:
    """A new version. Plans built earlier keep the rules they were built with until their
    event is upserted again (rules are inlined into plan events, never looked up at run time)."""
    body = await json_body(request)
    kind = _kind(body)
    if "config" not in body:
        raise BadRequest("config is required")
    config = _validate_config(kind, body["config"])
    if kind == "object" and "properties" not in body:
        raise BadRequest("properties is required for an object custom type")
    store = request.app[STORE_KEY]
    type_id = request.match_info["id"]
    async with store.read() as conn:
        await _row(conn, type_id)
        rules, defs, _ = await build(conn, kind, config, body.get("properties"))
    checked = servable_form(rules, defs)
    await check_rule(checked, "config")  # before the transaction: see rules.py
    async with store.write(snapshot=False) as conn:
        row = await _row(conn, type_id)
        rules, defs, stored = await build(conn, kind, config, body.get("properties"))
        await recheck(servable_form(rules, defs), checked, "config")
        if row.name in defs:
            raise BadRequest(f"custom type {row.name} cannot contain itself")
        values: dict[str, Any] = {
            "type": kind,
            "config": orjson.dumps(config).decode(),
            "properties": orjson.dumps(stored).decode(),
            "rules": orjson.dumps(rules).decode(),
            "defs": orjson.dumps(defs).decode(),
            "version": row.version + 1,
            "updated_at": now_text(),
        }
        if "description" in body:
            values["description"] = v.optional_text(body["description"], "description")
        await conn.execute(
            update(schema.custom_types).where(schema.custom_types.c.id == type_id).values(**values)
        )
        row = await _row(conn, type_id)
    return json_ok(custom_type_document(row, store.workspace_id))


async def remove(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    type_id = request.match_info["id"]
    async with store.write(snapshot=False) as conn:
        row = await _row(conn, type_id)
        used_by = await conn.scalar(
            select(schema.properties.c.name).where(
                schema.properties.c.type == orjson.dumps(row.name).decode()
            )
        )
        if used_by is not None:
            raise BadRequest(f"custom type {row.name} is used by property {used_by}")
        for other in await conn.execute(select(schema.custom_types)):
            if other.id != type_id and row.name in orjson.loads(other.defs):
                raise BadRequest(f"custom type {row.name} is used by custom type {other.name}")
        await conn.execute(delete(schema.custom_types).where(schema.custom_types.c.id == type_id))
    document = custom_type_document(row, store.workspace_id)
    del document["properties"]
    return json_ok(document)


def add_custom_type_routes(app: web.Application) -> None:
    app.router.add_post(PATH, create)
    app.router.add_get(PATH, list_all)
    app.router.add_get(PATH + "/{id}", get)
    app.router.add_put(PATH + "/{id}", update_type)
    app.router.add_delete(PATH + "/{id}", remove)
