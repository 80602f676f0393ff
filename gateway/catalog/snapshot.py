"""The plan snapshot built from the catalog (DESIGN §6), and ``GET /internal/v1/snapshot``.

The document is read in one transaction, so it is consistent; its ``revision`` is the catalog
revision, which every relevant write bumps, and the endpoint's ETag is that revision:
an unchanged catalog answers ``If-None-Match`` with 304 after a single-row read.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog import schema
from gateway.catalog.http import STORE_KEY
from gateway.catalog.sources import all_sources
from gateway.catalog.store import Store
from gateway.http import json_ok
from gateway.plans.providers import SNAPSHOT_PATH, Fetched, ProviderError


async def build_snapshot(store: Store) -> dict[str, Any]:
    async with store.engine.connect() as conn:
        if not store.is_sqlite:
            # One consistent view across the statements below (SQLite's read transaction
            # already is one).
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            return await _document(conn)


async def _document(conn: AsyncConnection) -> dict[str, Any]:
    revision = await conn.scalar(select(schema.catalog_state.c.revision))
    connected = {
        row.source_id: {"id": row.plan_id, "config": orjson.loads(row.config)}
        for row in await conn.execute(select(schema.connections))
    }
    plans = {row.id: row for row in await conn.execute(select(schema.tracking_plans))}
    events: dict[str, list[dict[str, Any]]] = {plan_id: [] for plan_id in plans}
    rows = await conn.execute(
        select(
            schema.tracking_plan_events.c.plan_id,
            schema.tracking_plan_events.c.identity_section,
            schema.tracking_plan_events.c.rules,
            schema.events.c.name,
            schema.events.c.event_type,
        )
        .join(schema.events, schema.events.c.id == schema.tracking_plan_events.c.event_id)
        .order_by(schema.tracking_plan_events.c.created_at, schema.events.c.name)
    )
    for row in rows:
        events[row.plan_id].append(
            {
                "name": row.name,
                "eventType": row.event_type,
                "identitySection": row.identity_section,
                "rules": orjson.loads(row.rules),
            }
        )
    sources = []
    for source in await all_sources(conn):
        connection = connected.get(source["id"])
        if connection is not None:
            connection["version"] = plans[connection["id"]].version
        sources.append(
            {
                "id": source["id"],
                "name": source["name"],
                "enabled": source["enabled"],
                "writeKeys": source["writeKeys"],
                "trackingPlan": connection,
            }
        )
    return {
        "revision": str(revision),
        "sources": sources,
        "trackingPlans": [
            {"id": plan.id, "name": plan.name, "version": plan.version, "events": events[plan.id]}
            for plan in plans.values()
        ],
    }


def etag_of(revision: int | str) -> str:
    return f'"{revision}"'


async def snapshot_endpoint(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    _, revision = await store.state()
    if request.headers.get("If-None-Match") == etag_of(revision):
        return web.Response(status=304, headers={"ETag": etag_of(revision)})
    document = await build_snapshot(store)
    response = json_ok(document)
    response.headers["ETag"] = etag_of(document["revision"])
    return response


class LocalProvider:
    """The snapshot straight from the catalog store, for role ``all`` (no HTTP hop)."""

    description = "local catalog"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def fetch(self, etag: str | None) -> Fetched | None:
        try:
            _, revision = await self.store.state()
            if etag == str(revision):
                return None
            document = await build_snapshot(self.store)
        except SQLAlchemyError as exc:
            raise ProviderError(f"catalog store: {exc}") from None
        return Fetched(orjson.dumps(document), document["revision"])

    async def close(self) -> None:
        return None


def add_snapshot_route(app: web.Application) -> None:
    app.router.add_get(SNAPSHOT_PATH, snapshot_endpoint)
