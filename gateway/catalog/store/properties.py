"""Catalog properties: the rows of ``properties``. A property's ``type`` is a JSON value (a
type, a list of types, "" or a custom type's name), compared as the JSON text it is stored as."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import new_id, now_text, row_or_404, schema

TABLE = schema.properties
WHAT = "property"


async def get(conn: AsyncConnection, property_id: str) -> Any:
    return await row_or_404(conn, schema.properties, property_id, WHAT)


async def find(conn: AsyncConnection, property_id: str) -> Any:
    """The property, or None."""
    table = schema.properties
    return (await conn.execute(select(table).where(table.c.id == property_id))).one_or_none()


async def named(conn: AsyncConnection, name: str, kind: Any) -> Any:
    """The first property with this name and type, if any."""
    table = schema.properties
    return (
        await conn.execute(select(table).where(table.c.name == name, table.c.type == kind))
    ).first()


async def id_of(conn: AsyncConnection, name: str, kinds: list[Any]) -> str | None:
    """The id of a property with this name and one of these types (as stored), if any."""
    table = schema.properties
    found = await conn.scalar(
        select(table.c.id).where(table.c.name == name, table.c.type.in_(kinds))
    )
    return None if found is None else str(found)


async def first_of_type(conn: AsyncConnection, kind: str) -> str | None:
    """The name of a property of this (custom) type, if any."""
    table = schema.properties
    found = await conn.scalar(select(table.c.name).where(table.c.type == kind).limit(1))
    return None if found is None else str(found)


async def insert_property(
    conn: AsyncConnection,
    *,
    name: str,
    kind: Any,
    config: dict[str, Any],
    description: str | None,
) -> str:
    property_id = new_id("prop")
    now = now_text()
    await conn.execute(
        insert(schema.properties).values(
            id=property_id,
            name=name,
            description=description,
            type=kind,
            prop_config=config,
            created_at=now,
            updated_at=now,
        )
    )
    return property_id


async def update_property(conn: AsyncConnection, property_id: str, **values: Any) -> None:
    table = schema.properties
    await conn.execute(
        update(table).where(table.c.id == property_id).values(**values, updated_at=now_text())
    )


async def delete_property(conn: AsyncConnection, property_id: str) -> None:
    await conn.execute(delete(schema.properties).where(schema.properties.c.id == property_id))
