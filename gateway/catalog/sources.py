"""Sources and their write keys: what the native API's source operations do.

A source is created with one write key; a key is rotated by adding a new one and removing the
old one when every client has moved (both work meanwhile). Deleting a source deletes its keys
and its plan connection. Each change bumps the catalog revision: ingest learns about it with
its next snapshot.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import Store
from gateway.catalog.store import sources as stored
from gateway.catalog.store.sources import Source
from gateway.errors import BadRequest, NotFound


async def list_sources(store: Store) -> list[Source]:
    async with store.read() as conn:
        return await stored.list_all(conn)


async def get_source(store: Store, source_id: str) -> Source:
    async with store.read() as conn:
        return await _existing(conn, source_id)


async def create_source(store: Store, name: str, enabled: bool) -> Source:
    async with store.write() as conn:
        source_id = await stored.insert_source(conn, _clean(name), enabled)
        return await _existing(conn, source_id)


async def update_source(
    store: Store, source_id: str, name: str | None, enabled: bool | None
) -> Source:
    values: dict[str, object] = {}
    if name is not None:
        values["name"] = _clean(name)
    if enabled is not None:
        values["enabled"] = enabled
    if not values:
        raise BadRequest("send at least one of name, enabled")
    async with store.write() as conn:
        await _existing(conn, source_id)
        await stored.update_source(conn, source_id, **values)
        return await _existing(conn, source_id)


async def delete_source(store: Store, source_id: str) -> Source:
    """The source as it was; its write keys and plan connection go with it."""
    async with store.write() as conn:
        source = await _existing(conn, source_id)
        await stored.delete_source(conn, source_id)
    return source


async def add_write_key(store: Store, source_id: str) -> Source:
    async with store.write() as conn:
        await _existing(conn, source_id)
        await stored.add_key(conn, source_id)
        await stored.update_source(conn, source_id)
        return await _existing(conn, source_id)


async def remove_write_key(store: Store, source_id: str, key: str) -> Source:
    async with store.write() as conn:
        await _existing(conn, source_id)
        if not await stored.remove_key(conn, source_id, key):
            raise NotFound(f"source {source_id} has no such write key")
        await stored.update_source(conn, source_id)
        return await _existing(conn, source_id)


async def _existing(conn: AsyncConnection, source_id: str) -> Source:
    source = await stored.get(conn, source_id)
    if source is None:
        raise NotFound(f"source {source_id} not found")
    return source


def _clean(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise BadRequest("name: must not be blank")
    return cleaned
