"""Sources and their write keys (not part of RudderStack's catalog API; needed to issue keys).

    POST   /sources                         {"name", "enabled"?}  → the source
    GET    /sources                         → {"sources": [...]}
    GET    /sources/{id}                    → the source
    PATCH  /sources/{id}                    {"name"?, "enabled"?} → the source
    DELETE /sources/{id}                    → 204 (its keys and plan connection go too)
    POST   /sources/{id}/write-keys         → the source, with a new key last (rotation)
    DELETE /sources/{id}/write-keys/{key}   → the source

A source: ``{"id", "name", "enabled", "writeKeys": [...], "createdAt", "updatedAt"}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog import schema
from gateway.catalog.http import STORE_KEY, json_body
from gateway.catalog.store import new_id, new_write_key, now_text
from gateway.errors import BadRequest, NotFound
from gateway.http import json_ok

MAX_NAME = 200


async def source_document(conn: AsyncConnection, source_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(select(schema.sources).where(schema.sources.c.id == source_id))
    ).one_or_none()
    if row is None:
        return None
    keys = await _keys_by_source(conn, [source_id])
    return _document(row, keys.get(source_id, []))


async def all_sources(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(select(schema.sources).order_by(schema.sources.c.created_at))).all()
    keys = await _keys_by_source(conn, [r.id for r in rows])
    return [_document(r, keys.get(r.id, [])) for r in rows]


async def _keys_by_source(conn: AsyncConnection, ids: list[str]) -> dict[str, list[str]]:
    if not ids:
        return {}
    rows = await conn.execute(
        select(schema.write_keys.c.source_id, schema.write_keys.c.key)
        .where(schema.write_keys.c.source_id.in_(ids))
        .order_by(schema.write_keys.c.created_at, schema.write_keys.c.key)
    )
    keys: dict[str, list[str]] = {}
    for source_id, key in rows:
        keys.setdefault(source_id, []).append(key)
    return keys


def _document(row: Any, keys: list[str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "enabled": bool(row.enabled),
        "writeKeys": keys,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }


def _name(value: Any, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise BadRequest(f"name: a non-empty string of at most {MAX_NAME} characters is required")
    return value.strip()


def _enabled(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise BadRequest("enabled: must be true or false")
    return value


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = _name(body.get("name"), required=True)
    enabled = _enabled(body.get("enabled"))
    now = now_text()
    source_id = new_id("src")
    async with request.app[STORE_KEY].write() as conn:
        await conn.execute(
            insert(schema.sources).values(
                id=source_id,
                name=name,
                enabled=True if enabled is None else enabled,
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            insert(schema.write_keys).values(
                key=new_write_key(), source_id=source_id, created_at=now
            )
        )
        document = await source_document(conn, source_id)
    return json_ok(document)


async def list_all(request: web.Request) -> web.Response:
    async with request.app[STORE_KEY].read() as conn:
        return json_ok({"sources": await all_sources(conn)})


async def get(request: web.Request) -> web.Response:
    async with request.app[STORE_KEY].read() as conn:
        return json_ok(await _existing(conn, request.match_info["source_id"]))


async def patch(request: web.Request) -> web.Response:
    body = await json_body(request)
    values: dict[str, Any] = {}
    if (name := _name(body.get("name"), required=False)) is not None:
        values["name"] = name
    if (enabled := _enabled(body.get("enabled"))) is not None:
        values["enabled"] = enabled
    if not values:
        raise BadRequest("send at least one of name, enabled")
    source_id = request.match_info["source_id"]
    async with request.app[STORE_KEY].write() as conn:
        await _existing(conn, source_id)
        await conn.execute(
            update(schema.sources)
            .where(schema.sources.c.id == source_id)
            .values(**values, updated_at=now_text())
        )
        return json_ok(await source_document(conn, source_id))


async def remove(request: web.Request) -> web.Response:
    source_id = request.match_info["source_id"]
    async with request.app[STORE_KEY].write() as conn:
        await _existing(conn, source_id)
        # Explicit deletes: cascades are not relied on (SQLite needs a pragma for them).
        await conn.execute(
            delete(schema.connections).where(schema.connections.c.source_id == source_id)
        )
        await conn.execute(
            delete(schema.write_keys).where(schema.write_keys.c.source_id == source_id)
        )
        await conn.execute(delete(schema.sources).where(schema.sources.c.id == source_id))
    return web.Response(status=204)


async def add_key(request: web.Request) -> web.Response:
    source_id = request.match_info["source_id"]
    async with request.app[STORE_KEY].write() as conn:
        await _existing(conn, source_id)
        await conn.execute(
            insert(schema.write_keys).values(
                key=new_write_key(), source_id=source_id, created_at=now_text()
            )
        )
        await _touch(conn, source_id)
        return json_ok(await source_document(conn, source_id))


async def remove_key(request: web.Request) -> web.Response:
    source_id = request.match_info["source_id"]
    key = request.match_info["key"]
    async with request.app[STORE_KEY].write() as conn:
        await _existing(conn, source_id)
        result = await conn.execute(
            delete(schema.write_keys).where(
                schema.write_keys.c.source_id == source_id, schema.write_keys.c.key == key
            )
        )
        if not result.rowcount:
            raise NotFound(f"source {source_id} has no such write key")
        await _touch(conn, source_id)
        return json_ok(await source_document(conn, source_id))


async def _existing(conn: AsyncConnection, source_id: str) -> dict[str, Any]:
    document = await source_document(conn, source_id)
    if document is None:
        raise NotFound(f"source {source_id} not found")
    return document


async def _touch(conn: AsyncConnection, source_id: str) -> None:
    await conn.execute(
        update(schema.sources).where(schema.sources.c.id == source_id).values(updated_at=now_text())
    )


def add_source_routes(app: web.Application) -> None:
    app.router.add_post("/sources", create)
    app.router.add_get("/sources", list_all)
    app.router.add_get("/sources/{source_id}", get)
    app.router.add_patch("/sources/{source_id}", patch)
    app.router.add_delete("/sources/{source_id}", remove)
    app.router.add_post("/sources/{source_id}/write-keys", add_key)
    app.router.add_delete("/sources/{source_id}/write-keys/{key}", remove_key)
