"""Plan events described by catalog properties instead of a raw JSON schema.

``POST …/events`` sends properties by name (missing catalog properties are created) and
``PUT …/events`` by catalog id; both become one JSON schema (draft-07) over the whole message:

- each property becomes ``{"type": [...], **propConfig}`` (no ``type`` for "any type");
- nested properties of an object become its ``properties`` / ``required`` and, when given,
  ``additionalProperties``; of an array, the same under ``items``;
- the identity section (``properties``, ``traits`` or ``context.traits``) holds them, and is
  itself required when any of its properties is.

A property name already in the catalog with the same type but different advanced keywords
(``propConfig``) is refused, as RudderStack does, so one property means one thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.models import Id, Keywords, PropertyName, PropertyType
from gateway.catalog.request_rules import is_custom_type, property_type
from gateway.catalog.store import properties as stored
from gateway.catalog.type_refs import definitions_of, ref_to
from gateway.enforce.compile import DRAFT_07
from gateway.errors import BadRequest

MAX_DEPTH = 10

Flag = Annotated[bool | None, msgspec.Meta(description="Default false.")]
Additional = Annotated[
    bool | None,
    msgspec.Meta(description="Whether keys beside the nested properties are allowed."),
]


class PropertyByName(msgspec.Struct, rename="camel", kw_only=True):
    """A property by name: the catalog property with this name and type, created if missing."""

    name: PropertyName
    type: PropertyType
    prop_config: Keywords | None = None
    description: str | None = None
    required: Flag = None
    additional_properties: Additional = None
    properties: Annotated[list[PropertyByName], msgspec.Meta(min_length=1)] | None = None


class PropertyById(msgspec.Struct, rename="camel", kw_only=True):
    """A catalog property by id."""

    id: Id
    required: Flag = None
    additional_properties: Additional = None
    properties: Annotated[list[PropertyById], msgspec.Meta(min_length=1)] | None = None


@dataclass
class PropertySpec:
    name: str
    type: str | list[str]
    config: dict[str, Any]
    description: str | None = None
    required: bool = False
    additional_properties: bool | None = None
    nested: list[PropertySpec] = field(default_factory=list)
    id: str | None = None
    # For a custom-typed property: {name: rules, ...} of the custom types it needs.
    defs: dict[str, Any] = field(default_factory=dict)


def by_name(items: list[PropertyByName], depth: int = 0) -> list[PropertySpec]:
    """The ``properties`` of ``POST …/events``."""
    _depth(depth)
    specs = [
        PropertySpec(
            name=item.name,
            type=property_type(item.type),
            config=item.prop_config or {},
            description=item.description,
            required=bool(item.required),
            additional_properties=item.additional_properties,
            nested=by_name(item.properties, depth + 1) if item.properties else [],
        )
        for item in items
    ]
    _unique(specs)
    return specs


def by_id(items: list[PropertyById], depth: int = 0) -> list[PropertySpec]:
    """The ``properties`` of ``PUT …/events`` (and of an object custom type): ids, filled in
    by :func:`resolve`."""
    _depth(depth)
    return [
        PropertySpec(
            name="",
            type="",
            config={},
            required=bool(item.required),
            additional_properties=item.additional_properties,
            nested=by_id(item.properties, depth + 1) if item.properties else [],
            id=item.id,
        )
        for item in items
    ]


def _depth(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadRequest(f"properties nest deeper than {MAX_DEPTH} levels")


def _unique(specs: list[PropertySpec]) -> None:
    names = [s.name for s in specs]
    if len(names) != len(set(names)):
        raise BadRequest("properties: each name may appear once per level")


async def resolve(conn: AsyncConnection, specs: list[PropertySpec], *, create: bool = True) -> None:
    """Give every spec its catalog property: found, created, or (by id) loaded.

    ``create=False`` creates none (a by-name spec new to the catalog keeps no id): it reads
    what the rules will be, to check them before the write transaction opens.
    """
    for spec in specs:
        if spec.id is not None:
            row = await stored.find(conn, spec.id)
            if row is None:
                raise BadRequest(f"property {spec.id} does not exist")
            spec.name = row.name
            spec.type = row.type
            spec.config = row.prop_config or {}
        else:
            row = await stored.named(conn, spec.name, spec.type)
            if row is not None:
                if (row.prop_config or {}) != spec.config:
                    raise BadRequest(
                        f"Property with name [{spec.name}] and type [{_type_text(spec.type)}] "
                        "already exists with different advanced keywords."
                    )
                spec.id = row.id
            elif create:
                spec.id = await stored.insert_property(
                    conn,
                    name=spec.name,
                    kind=spec.type,
                    config=spec.config,
                    description=spec.description,
                )
        if is_custom_type(spec.type):
            spec.defs = await definitions_of(conn, str(spec.type))
        if spec.nested:
            await resolve(conn, spec.nested, create=create)
    _unique(specs)  # by-id specs get their names only now


def _type_text(kind: str | list[str]) -> str:
    return ",".join(kind) if isinstance(kind, list) else kind


def _types(kind: str | list[str]) -> list[str]:
    return [kind] if isinstance(kind, str) else list(kind)


def property_schema(spec: PropertySpec) -> dict[str, Any]:
    node: dict[str, Any] = {}
    if is_custom_type(spec.type):
        # In draft-07 keywords beside a $ref are ignored: extra ones go beside an allOf.
        reference = ref_to(str(spec.type))
        return {"allOf": [reference], **spec.config} if spec.config else reference
    if spec.type != "":
        node["type"] = _types(spec.type)
    node.update(spec.config)
    if spec.nested:
        container = object_schema(spec.nested, spec.additional_properties)
        if "array" in _types(spec.type) and "object" not in _types(spec.type):
            node["items"] = {"type": "object", **container}
        else:
            node.update(container)
    return node


def definitions(specs: list[PropertySpec]) -> dict[str, Any]:
    """Every custom type definition the specs (and their nested specs) need."""
    found: dict[str, Any] = {}
    for spec in specs:
        found.update(spec.defs)
        found.update(definitions(spec.nested))
    return found


def object_schema(specs: list[PropertySpec], additional: bool | None) -> dict[str, Any]:
    node: dict[str, Any] = {"properties": {s.name: property_schema(s) for s in specs}}
    required = [s.name for s in specs if s.required]
    if required:
        node["required"] = required
    if additional is not None:
        node["additionalProperties"] = additional
    return node


def build_rules(specs: list[PropertySpec], section: str) -> dict[str, Any]:
    """The event's JSON schema over the whole message, the properties under ``section``."""
    inner: dict[str, Any] = {"type": "object", **object_schema(specs, None)}
    parts = section.split(".")
    for part in reversed(parts):
        wrapped: dict[str, Any] = {"type": "object", "properties": {part: inner}}
        if "required" in inner:
            wrapped["required"] = [part]
        inner = wrapped
    rules: dict[str, Any] = {"$schema": DRAFT_07, **inner}
    defs = definitions(specs)
    if defs:
        rules["$defs"] = defs
    return rules


def _custom_type_of(node: dict[str, Any]) -> str | None:
    prefix = "#/$defs/"
    ref = node.get("$ref")
    if ref is None and isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
        ref = node["allOf"][0].get("$ref") if isinstance(node["allOf"][0], dict) else None
    return ref[len(prefix) :] if isinstance(ref, str) and ref.startswith(prefix) else None


def rules_to_properties(rules: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """The ``?format=properties`` view of an event's rules (the inverse of build_rules)."""
    node: Any = rules
    for part in section.split("."):
        node = node.get("properties", {}).get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return []
    return _describe(node)


async def attach_ids(conn: AsyncConnection, described: list[dict[str, Any]]) -> None:
    """Name each described property's catalog entry (``id``; null if it has none)."""
    for entry in described:
        kind = entry["type"]
        kinds = [kind] if isinstance(kind, str) and kind else kind or ""
        entry["id"] = await stored.id_of(conn, entry["name"], [kind, kinds])
        if "properties" in entry:
            await attach_ids(conn, entry["properties"])


def _describe(node: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(node.get("required", [])) if isinstance(node.get("required"), list) else set()
    described = []
    for name, sub in (node.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        kind = sub.get("type", "")
        config = {
            k: val
            for k, val in sub.items()
            if k not in ("type", "properties", "required", "additionalProperties", "items")
        }
        custom = _custom_type_of(sub)
        if custom is not None:
            kind = custom
            config = {k: val for k, val in config.items() if k not in ("$ref", "allOf")}
        entry: dict[str, Any] = {
            "name": name,
            "type": kind[0] if isinstance(kind, list) and len(kind) == 1 else kind,
            "propConfig": config,
            "required": name in required,
        }
        items = sub.get("items")
        nested_at: dict[str, Any] = items if isinstance(items, dict) else sub
        if isinstance(nested_at.get("properties"), dict):
            entry["properties"] = _describe(nested_at)
            if "additionalProperties" in nested_at:
                entry["additionalProperties"] = nested_at["additionalProperties"]
        described.append(entry)
    return described
