"""Tracking plan ↔ source connections and their enforcement config (Data Catalog API).

    POST   /catalog/tracking-plans/{id}/sources/{sourceId}   {"config": {...}}  connect
    PUT    /catalog/tracking-plans/{id}/sources/{sourceId}   {"config": {...}}  update config
    GET    /catalog/tracking-plans/{id}/sources              {"connections": [...]}
    DELETE /catalog/tracking-plans/{id}/sources/{sourceId}   204

Config sections ``global track identify page screen group``; each present section must hold at
least one setting. ``allowUnplannedEvents`` belongs to ``track`` and ``global`` only. Values are
strings or booleans; ``unplannedProperties`` also accepts ``omit`` (beyond RudderStack).
A source is connected to at most one plan.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog import schema
from gateway.catalog.http import STORE_KEY, json_body
from gateway.catalog.plans import PLANS, plan_row
from gateway.catalog.store import now_text
from gateway.errors import BadRequest
from gateway.http import json_ok

SECTIONS = ("global", "track", "identify", "page", "screen", "group")
CHOICES: dict[str, tuple[str, ...]] = {
    "allowUnplannedEvents": ("true", "false"),
    "unplannedProperties": ("forward", "drop", "omit"),
    "anyOtherViolation": ("forward", "drop"),
    "propagateValidationErrors": ("true", "false"),
}
UNPLANNED_EVENT_SECTIONS = ("global", "track")


def validate_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict) or not config:
        raise BadRequest("config: a non-empty object is required")
    for section, settings in config.items():
        if section not in SECTIONS:
            raise BadRequest(f"config.{section}: unknown section; use {', '.join(SECTIONS)}")
        if not isinstance(settings, dict) or not settings:
            raise BadRequest(f"config.{section}: must be an object with at least one setting")
        for key, value in settings.items():
            allowed = CHOICES.get(key)
            if allowed is None:
                raise BadRequest(f"config.{section}.{key}: unknown setting")
            if key == "allowUnplannedEvents" and section not in UNPLANNED_EVENT_SECTIONS:
                raise BadRequest(f"config.{section}.{key}: applies to track and global only")
            text = str(value).lower() if isinstance(value, bool | str) else None
            if text not in allowed:
                raise BadRequest(f"config.{section}.{key}: must be one of {', '.join(allowed)}")
    return config


def connection_document(row: Any) -> dict[str, Any]:
    return {
        "sourceId": row.source_id,
        "trackingPlanId": row.plan_id,
        "config": orjson.loads(row.config),
    }


async def _check(conn: AsyncConnection, plan_id: str, source_id: str) -> Any:
    """Plan must exist (404); source must exist (400, as documented). Returns its connection."""
    await plan_row(conn, plan_id)
    source = await conn.scalar(select(schema.sources.c.id).where(schema.sources.c.id == source_id))
    if source is None:
        raise BadRequest(f"invalid source id {source_id}")
    return (
        await conn.execute(
            select(schema.connections).where(schema.connections.c.source_id == source_id)
        )
    ).one_or_none()


async def connect(request: web.Request) -> web.Response:
    body = await json_body(request)
    config = validate_config(body.get("config"))
    plan_id, source_id = request.match_info["plan_id"], request.match_info["source_id"]
    now = now_text()
    async with request.app[STORE_KEY].write() as conn:
        existing = await _check(conn, plan_id, source_id)
        if existing is not None:
            if existing.plan_id == plan_id:
                raise BadRequest("source already connected to tracking plan")
            raise BadRequest(
                f"source is already connected to tracking plan {existing.plan_id}; "
                "disconnect it first"
            )
        await conn.execute(
            insert(schema.connections).values(
                source_id=source_id,
                plan_id=plan_id,
                config=orjson.dumps(config).decode(),
                created_at=now,
                updated_at=now,
            )
        )
    return json_ok({"sourceId": source_id, "trackingPlanId": plan_id, "config": config})


async def update_config(request: web.Request) -> web.Response:
    body = await json_body(request)
    config = validate_config(body.get("config"))
    plan_id, source_id = request.match_info["plan_id"], request.match_info["source_id"]
    async with request.app[STORE_KEY].write() as conn:
        existing = await _check(conn, plan_id, source_id)
        if existing is None or existing.plan_id != plan_id:
            raise BadRequest("source is not connected to tracking plan")
        await conn.execute(
            update(schema.connections)
            .where(schema.connections.c.source_id == source_id)
            .values(config=orjson.dumps(config).decode(), updated_at=now_text())
        )
    return json_ok({"config": config})


async def list_connections(request: web.Request) -> web.Response:
    plan_id = request.match_info["plan_id"]
    async with request.app[STORE_KEY].read() as conn:
        await plan_row(conn, plan_id)
        rows = await conn.execute(
            select(schema.connections)
            .where(schema.connections.c.plan_id == plan_id)
            .order_by(schema.connections.c.created_at)
        )
        return json_ok({"connections": [connection_document(r) for r in rows]})


async def disconnect(request: web.Request) -> web.Response:
    plan_id, source_id = request.match_info["plan_id"], request.match_info["source_id"]
    async with request.app[STORE_KEY].write() as conn:
        existing = await _check(conn, plan_id, source_id)
        if existing is None or existing.plan_id != plan_id:
            raise BadRequest("source already disconnected from tracking plan")
        await conn.execute(
            delete(schema.connections).where(schema.connections.c.source_id == source_id)
        )
    return web.Response(status=204)


def add_connection_routes(app: web.Application) -> None:
    path = PLANS + "/{plan_id}/sources/{source_id}"
    app.router.add_post(path, connect)
    app.router.add_put(path, update_config)
    app.router.add_delete(path, disconnect)
    app.router.add_get(PLANS + "/{plan_id}/sources", list_connections)
