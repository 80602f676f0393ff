"""Catalog events: the rows of ``events``.

Name and type identify a catalog event: track events by their name, each other type is its one
unnamed event (the request rules force their name to "" and track names to 3+ characters).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import new_id, now_text, row_or_404, schema

TABLE = schema.events
WHAT = "event"


async def get(conn: AsyncConnection, event_id: str) -> Any:
    return await row_or_404(conn, schema.events, event_id, WHAT)


async def find(conn: AsyncConnection, event_id: str) -> Any:
    """The event, or None."""
    table = schema.events
    return (await conn.execute(select(table).where(table.c.id == event_id))).one_or_none()


async def named(
    conn: AsyncConnection, name: str, event_type: str, *, other_than: str | None = None
) -> Any:
    """The catalog event with this name and type, if any (besides ``other_than``)."""
    table = schema.events
    query = select(table).where(table.c.name == name, table.c.event_type == event_type)
    if other_than is not None:
        query = query.where(table.c.id != other_than)
    return (await conn.execute(query)).first()


async def insert_event(
    conn: AsyncConnection,
    *,
    name: str,
    event_type: str,
    description: str | None,
    category_id: str | None,
) -> str:
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


async def update_event(conn: AsyncConnection, event_id: str, **values: Any) -> None:
    table = schema.events
    await conn.execute(
        update(table).where(table.c.id == event_id).values(**values, updated_at=now_text())
    )


async def delete_event(conn: AsyncConnection, event_id: str) -> None:
    await conn.execute(delete(schema.events).where(schema.events.c.id == event_id))
