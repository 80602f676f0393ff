"""Sources and their write keys in the catalog database.

Deleting a source deletes its write keys and its plan connection with it, explicitly: cascades
are not relied on (SQLite needs a pragma for them).
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import new_id, new_write_key, now_text, schema

sources, write_keys = schema.sources, schema.write_keys


class Source(msgspec.Struct, rename="camel"):
    """A source as the APIs show it: its write keys oldest first."""

    id: str
    name: str
    enabled: bool
    write_keys: list[str]
    created_at: str
    updated_at: str


async def get(conn: AsyncConnection, source_id: str) -> Source | None:
    row = (await conn.execute(select(sources).where(sources.c.id == source_id))).one_or_none()
    if row is None:
        return None
    keys = await _keys_by_source(conn, [source_id])
    return _source(row, keys.get(source_id, []))


async def list_all(conn: AsyncConnection) -> list[Source]:
    """Every source, oldest first."""
    rows = (await conn.execute(select(sources).order_by(sources.c.created_at, sources.c.id))).all()
    keys = await _keys_by_source(conn, [r.id for r in rows])
    return [_source(r, keys.get(r.id, [])) for r in rows]


async def insert_source(conn: AsyncConnection, name: str, enabled: bool) -> str:
    """A new source with one write key; its id."""
    now = now_text()
    source_id = new_id("src")
    await conn.execute(
        insert(sources).values(
            id=source_id, name=name, enabled=enabled, created_at=now, updated_at=now
        )
    )
    await add_key(conn, source_id)
    return source_id


async def update_source(conn: AsyncConnection, source_id: str, **values: Any) -> None:
    await conn.execute(
        update(sources).where(sources.c.id == source_id).values(**values, updated_at=now_text())
    )


async def delete_source(conn: AsyncConnection, source_id: str) -> None:
    """The source, its write keys and its plan connection."""
    await conn.execute(
        delete(schema.connections).where(schema.connections.c.source_id == source_id)
    )
    await conn.execute(delete(write_keys).where(write_keys.c.source_id == source_id))
    await conn.execute(delete(sources).where(sources.c.id == source_id))


async def add_key(conn: AsyncConnection, source_id: str) -> str:
    key = new_write_key()
    await conn.execute(
        insert(write_keys).values(key=key, source_id=source_id, created_at=now_text())
    )
    return key


async def remove_key(conn: AsyncConnection, source_id: str, key: str) -> bool:
    """Whether the source had the key."""
    result = await conn.execute(
        delete(write_keys).where(write_keys.c.source_id == source_id, write_keys.c.key == key)
    )
    return bool(result.rowcount)


async def _keys_by_source(conn: AsyncConnection, ids: list[str]) -> dict[str, list[str]]:
    if not ids:
        return {}
    rows = await conn.execute(
        select(write_keys.c.source_id, write_keys.c.key)
        .where(write_keys.c.source_id.in_(ids))
        .order_by(write_keys.c.created_at, write_keys.c.key)
    )
    keys: dict[str, list[str]] = {}
    for source_id, key in rows:
        keys.setdefault(source_id, []).append(key)
    return keys


def _source(row: Any, keys: list[str]) -> Source:
    return Source(
        id=row.id,
        name=row.name,
        enabled=bool(row.enabled),
        write_keys=keys,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
