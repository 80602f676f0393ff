"""Categories: the rows of ``categories``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import new_id, now_text, row_or_404, schema

TABLE = schema.categories
WHAT = "category"


async def get(conn: AsyncConnection, category_id: str) -> Any:
    return await row_or_404(conn, schema.categories, category_id, WHAT)


async def find(conn: AsyncConnection, category_id: str) -> Any:
    """The category, or None."""
    table = schema.categories
    return (await conn.execute(select(table).where(table.c.id == category_id))).one_or_none()


async def named(conn: AsyncConnection, name: str) -> Any:
    table = schema.categories
    return (await conn.execute(select(table).where(table.c.name == name))).first()


async def insert_category(conn: AsyncConnection, name: str, description: str | None) -> Any:
    category_id = new_id("cat")
    now = now_text()
    await conn.execute(
        insert(schema.categories).values(
            id=category_id, name=name, description=description, created_at=now, updated_at=now
        )
    )
    return await get(conn, category_id)


async def delete_category(conn: AsyncConnection, category_id: str) -> Any:
    """Delete it (its events keep no category); the row as it was."""
    row = await get(conn, category_id)
    events = schema.events
    await conn.execute(
        update(events).where(events.c.category_id == category_id).values(category_id=None)
    )
    await conn.execute(delete(schema.categories).where(schema.categories.c.id == category_id))
    return row
