"""Custom types: the rows of ``custom_types`` (each with its built ``rules`` and the ``defs`` of
the custom types it references)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import new_id, now_text, row_or_404, schema

TABLE = schema.custom_types
WHAT = "custom type"


async def get(conn: AsyncConnection, type_id: str) -> Any:
    return await row_or_404(conn, schema.custom_types, type_id, WHAT)


async def named(conn: AsyncConnection, name: str) -> Any:
    """The custom type with this name, or None."""
    table = schema.custom_types
    return (await conn.execute(select(table).where(table.c.name == name))).one_or_none()


async def referring_to(conn: AsyncConnection, name: str, *, other_than: str) -> str | None:
    """The name of another custom type whose definitions include ``name``, if any."""
    for row in await conn.execute(select(schema.custom_types)):
        if row.id != other_than and name in row.defs:
            return str(row.name)
    return None


async def insert_type(conn: AsyncConnection, **values: Any) -> str:
    """A new custom type at version 1; ``values`` are its columns but id, version and times."""
    type_id = new_id("def")
    now = now_text()
    await conn.execute(
        insert(schema.custom_types).values(
            id=type_id, version=1, created_at=now, updated_at=now, **values
        )
    )
    return type_id


async def update_type(conn: AsyncConnection, type_id: str, **values: Any) -> None:
    """Apply ``values`` as the next version."""
    table = schema.custom_types
    await conn.execute(
        update(table)
        .where(table.c.id == type_id)
        .values(**values, version=table.c.version + 1, updated_at=now_text())
    )


async def delete_type(conn: AsyncConnection, type_id: str) -> None:
    await conn.execute(delete(schema.custom_types).where(schema.custom_types.c.id == type_id))
