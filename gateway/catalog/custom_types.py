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

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog import properties_form as form
from gateway.catalog import request_rules as v
from gateway.catalog.declared import Audited, Input, Page, PageQuery, Route, list_page
from gateway.catalog.rules import check_rule, recheck
from gateway.catalog.store import custom_types as stored
from gateway.catalog.store import properties
from gateway.catalog.type_refs import definitions_of, ref_to
from gateway.errors import BadRequest

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


def _validate_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
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
    conn: AsyncConnection,
    kind: str,
    config: dict[str, Any],
    members: list[form.PropertyById] | None,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(rules, defs, stored properties) of a custom type, from the catalog as it is (reads
    only). The caller checks :func:`servable_form` before its write transaction."""
    rules: dict[str, Any] = {"type": [kind]}
    defs: dict[str, Any] = {}
    listed: list[dict[str, Any]] = []
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
        specs = form.by_id(members or [])
        await form.resolve(conn, specs)
        rules.update(form.object_schema(specs, None))
        defs.update(form.definitions(specs))
        listed = [{"id": s.id, "required": s.required} for s in specs]
    return rules, defs, listed


def servable_form(rules: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """What is inlined into the rules of every event that uses the type: checked (400 if it
    cannot be served) as ``config``."""
    return {**rules, "$defs": defs} if defs else rules


PropertyTypeName = v.PropertyType
CustomTypeName = Annotated[
    str,
    msgspec.Meta(
        pattern=v.CUSTOM_TYPE_NAME.pattern,
        description="2 to 65 characters: a capital letter, then letters, digits, `_` and `-`.",
    ),
]
Config = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description="string: enum minLength maxLength pattern format; number/integer: enum "
        "minimum maximum exclusiveMinimum exclusiveMaximum multipleOf; array: itemTypes "
        "(types, or one custom type); others: {}."
    ),
]
Members = Annotated[
    list[form.PropertyById],
    msgspec.Meta(min_length=1, description="An object type's catalog properties."),
]


class CustomTypeCreate(msgspec.Struct):
    name: CustomTypeName
    type: PropertyTypeName
    config: Config
    description: str | None = None
    properties: Members | None = None


class CustomTypeUpdate(msgspec.Struct):
    """A new version: ``type`` and ``config`` again, ``properties`` for an object type."""

    type: PropertyTypeName
    config: Config
    properties: Members | None = None
    description: str | UnsetType | None = UNSET


class CustomTypeDeleted(Audited, kw_only=True):
    config: dict[str, Any]
    rules: Annotated[
        dict[str, Any], msgspec.Meta(description="The JSON schema built from type and config.")
    ]
    defs: list[str]
    item_definitions: list[Any]
    id: str
    name: str
    type: str
    data_type: str
    version: int
    description: str
    workspace_id: str
    created_at: str
    updated_at: str


class CustomType(CustomTypeDeleted, kw_only=True):
    properties: list[dict[str, Any]]


def _deleted(row: Any, workspace_id: str) -> CustomTypeDeleted:
    return CustomTypeDeleted(
        config=row.config,
        rules=row.rules,
        defs=sorted(row.defs),
        item_definitions=[],
        id=row.id,
        name=row.name,
        type=row.type,
        data_type=row.type,
        version=row.version,
        description=row.description or "",
        workspace_id=workspace_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _custom_type(row: Any, workspace_id: str) -> CustomType:
    deleted = _deleted(row, workspace_id)
    return CustomType(**msgspec.structs.asdict(deleted), properties=row.properties)


async def create(call: Input[CustomTypeCreate, None]) -> CustomType:
    body = call.body
    config = _validate_config(body.type, body.config)
    if body.type == "object" and body.properties is None:
        raise BadRequest("properties is required for an object custom type")

    async def name_free(conn: AsyncConnection) -> None:
        if await stored.named(conn, body.name) is not None:
            raise BadRequest(f"a custom type named {body.name} already exists")

    async with call.store.read() as conn:
        await name_free(conn)
        rules, defs, _ = await build(conn, body.type, config, body.properties)
    checked = servable_form(rules, defs)
    await check_rule(checked, "config")  # before the transaction: see rules.py
    async with call.store.write(snapshot=False) as conn:
        await name_free(conn)
        rules, defs, members = await build(conn, body.type, config, body.properties)
        await recheck(servable_form(rules, defs), checked, "config")
        type_id = await stored.insert_type(
            conn,
            name=body.name,
            description=body.description,
            type=body.type,
            config=config,
            properties=members,
            rules=rules,
            defs=defs,
        )
        row = await stored.get(conn, type_id)
    return _custom_type(row, call.store.workspace_id)


async def list_all(call: Input[None, PageQuery]) -> Page[CustomType]:
    return await list_page(call, stored.TABLE, _custom_type)


async def get(call: Input[None, None]) -> CustomType:
    async with call.store.read() as conn:
        row = await stored.get(conn, call.path["id"])
    return _custom_type(row, call.store.workspace_id)


async def update_type(call: Input[CustomTypeUpdate, None]) -> CustomType:
    """A new version. Plans built earlier keep the rules they were built with until their
    event is upserted again (rules are inlined into plan events, never looked up at run time)."""
    body = call.body
    config = _validate_config(body.type, body.config)
    if body.type == "object" and body.properties is None:
        raise BadRequest("properties is required for an object custom type")
    type_id = call.path["id"]
    async with call.store.read() as conn:
        await stored.get(conn, type_id)
        rules, defs, _ = await build(conn, body.type, config, body.properties)
    checked = servable_form(rules, defs)
    await check_rule(checked, "config")  # before the transaction: see rules.py
    async with call.store.write(snapshot=False) as conn:
        row = await stored.get(conn, type_id)
        rules, defs, members = await build(conn, body.type, config, body.properties)
        await recheck(servable_form(rules, defs), checked, "config")
        if row.name in defs:
            raise BadRequest(f"custom type {row.name} cannot contain itself")
        values: dict[str, Any] = {
            "type": body.type,
            "config": config,
            "properties": members,
            "rules": rules,
            "defs": defs,
        }
        if body.description is not UNSET:
            values["description"] = body.description
        await stored.update_type(conn, type_id, **values)
        row = await stored.get(conn, type_id)
    return _custom_type(row, call.store.workspace_id)


async def remove(call: Input[None, None]) -> CustomTypeDeleted:
    type_id = call.path["id"]
    async with call.store.write(snapshot=False) as conn:
        row = await stored.get(conn, type_id)
        used_by = await properties.first_of_type(conn, row.name)
        if used_by is not None:
            raise BadRequest(f"custom type {row.name} is used by property {used_by}")
        other = await stored.referring_to(conn, row.name, other_than=type_id)
        if other is not None:
            raise BadRequest(f"custom type {row.name} is used by custom type {other}")
        await stored.delete_type(conn, type_id)
    return _deleted(row, call.store.workspace_id)


ROUTES = [
    Route(
        "POST",
        PATH,
        "createCustomType",
        "Create a custom type",
        create,
        body=CustomTypeCreate,
        answer=CustomType,
        answer_description="The custom type.",
        errors=(400,),
    ),
    Route(
        "GET",
        PATH,
        "listCustomTypes",
        "List custom types",
        list_all,
        query=PageQuery,
        answer=Page[CustomType],
        answer_description="A page of custom types.",
        errors=(400,),
    ),
    Route(
        "GET",
        PATH + "/{id}",
        "getCustomType",
        "Get a custom type",
        get,
        answer=CustomType,
        answer_description="The custom type.",
        errors=(404,),
    ),
    Route(
        "PUT",
        PATH + "/{id}",
        "updateCustomType",
        "Update a custom type (a new version)",
        update_type,
        body=CustomTypeUpdate,
        answer=CustomType,
        answer_description="The custom type.",
        errors=(400, 404),
    ),
    Route(
        "DELETE",
        PATH + "/{id}",
        "deleteCustomType",
        "Delete a custom type no property or custom type uses",
        remove,
        answer=CustomTypeDeleted,
        answer_description="The deleted custom type.",
        errors=(400, 404),
    ),
]
