"""Connections: which tracking plan a source is connected to, and with what enforcement
config (at most one plan per source)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import now_text, schema


async def of_source(conn: AsyncConnection, source_id: str) -> Any:
    """The source's connection, or None."""
    table = schema.connections
    return (await conn.execute(select(table).where(table.c.source_id == source_id))).one_or_none()


async def of_plan(conn: AsyncConnection, plan_id: str) -> list[Any]:
    table = schema.connections
    return list(
        await conn.execute(
            select(table).where(table.c.plan_id == plan_id).order_by(table.c.created_at)
        )
    )


async def insert_connection(
    conn: AsyncConnection, source_id: str, plan_id: str, config: dict[str, Any]
) -> None:
    now = now_text()
    await conn.execute(
        insert(schema.connections).values(
            source_id=source_id, plan_id=plan_id, config=config, created_at=now, updated_at=now
        )
    )


async def update_config(conn: AsyncConnection, source_id: str, config: dict[str, Any]) -> None:
    table = schema.connections
    await conn.execute(
        update(table)
        .where(table.c.source_id == source_id)
        .values(config=config, updated_at=now_text())
    )


async def delete_connection(conn: AsyncConnection, source_id: str) -> None:
    table = schema.connections
    await conn.execute(delete(table).where(table.c.source_id == source_id))


async def set_shadow(conn: AsyncConnection, source_id: str, shadow: dict[str, Any] | None) -> None:
    table = schema.connections
    await conn.execute(
        update(table)
        .where(table.c.source_id == source_id)
        .values(shadow=shadow, updated_at=now_text())
    )


async def move_connection(conn: AsyncConnection, source_id: str, plan_id: str) -> None:
    """Connect the source to another plan, its config kept and its shadow cleared."""
    table = schema.connections
    await conn.execute(
        update(table)
        .where(table.c.source_id == source_id)
        .values(plan_id=plan_id, shadow=None, updated_at=now_text())
    )
