"""Tracking plans and their sources, the Segment way (see gateway.catalog.segment).

A plan made here is the catalog's plan: the RudderStack-compatible API and the native API see
and change the same one. Segment's fields map to it as: ``type`` (LIVE, ENGAGE,
PROPERTY_LIBRARY, RULE_LIBRARY or TEMPLATE; only a LIVE plan takes sources), ``slug`` (empty,
as Segment leaves it) and ``resourceSchemaId`` (``rs_`` and the plan id's own part). A source
connected here gets the default enforcement settings; the RudderStack API's connection routes
change them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from gateway.catalog import plans as plan_service
from gateway.catalog.connections import connect_source, disconnect_source
from gateway.catalog.declared import Input
from gateway.catalog.models import EntityName, Id, Time
from gateway.catalog.plans import TrackingPlanUpdate
from gateway.catalog.segment import (
    SUCCESS,
    ListQuery,
    Pagination,
    Status,
    page_of,
)
from gateway.catalog.store import connections as stored_connections
from gateway.catalog.store import plans as stored
from gateway.catalog.store import sources as stored_sources
from gateway.errors import BadRequest

PlanType = Literal["LIVE", "ENGAGE", "PROPERTY_LIBRARY", "RULE_LIBRARY", "TEMPLATE"]
LIVE = "LIVE"

# --- types -------------------------------------------------------------------------------------


class SegmentPlan(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    name: str
    resource_schema_id: str
    slug: str
    description: str
    type: PlanType
    updated_at: Time
    created_at: Time


class PlanAnswer(msgspec.Struct, rename="camel"):
    tracking_plan: SegmentPlan


class PlanUpdated(msgspec.Struct, rename="camel"):
    status: str
    tracking_plan: SegmentPlan


class PlanList(msgspec.Struct, rename="camel"):
    tracking_plans: list[SegmentPlan]
    pagination: Pagination


class PlanCreate(msgspec.Struct):
    name: EntityName
    type: PlanType
    description: str | None = None


class PlanListQuery(ListQuery):
    type: Annotated[PlanType | None, msgspec.Meta(description="Only plans of this type.")] = None


class SourceMetadata(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    slug: str
    name: str
    categories: list[str]
    description: str
    logos: dict[str, Any]
    options: list[Any]
    is_cloud_event_source: bool


# Every source of this gateway is an HTTP source: SDKs and plain HTTP clients post to it.
HTTP_SOURCE = SourceMetadata(
    id="http-api",
    slug="http-api",
    name="HTTP API",
    categories=["Server"],
    description="Events posted to the gateway's ingest routes by any SDK or HTTP client.",
    logos={},
    options=[],
    is_cloud_event_source=False,
)


class SegmentSource(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    slug: str
    name: str
    workspace_id: str
    enabled: bool
    write_keys: list[str]
    metadata: SourceMetadata
    settings: dict[str, Any]
    labels: list[Any]


class SourceList(msgspec.Struct):
    sources: list[SegmentSource]
    pagination: Pagination


class SourceConnect(msgspec.Struct, rename="camel"):
    source_id: Id


class SourceQuery(msgspec.Struct, rename="camel"):
    source_id: Id


# --- answers -----------------------------------------------------------------------------------


def segment_plan(row: Any) -> SegmentPlan:
    return SegmentPlan(
        id=row.id,
        name=row.name,
        resource_schema_id="rs_" + row.id.partition("_")[2],
        slug="",
        description=row.description or "",
        type=row.plan_type,
        updated_at=row.updated_at,
        created_at=row.created_at,
    )


def slug_of(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _segment_source(source: stored_sources.Source, workspace_id: str) -> SegmentSource:
    return SegmentSource(
        id=source.id,
        slug=slug_of(source.name),
        name=source.name,
        workspace_id=workspace_id,
        enabled=source.enabled,
        write_keys=source.write_keys,
        metadata=HTTP_SOURCE,
        settings={},
        labels=[],
    )


# --- plans -------------------------------------------------------------------------------------


async def create_plan(call: Input[PlanCreate, None]) -> PlanAnswer:
    body = call.body
    async with call.store.write() as conn:
        plan = await plan_service.new_plan(
            conn,
            call.store.workspace_id,
            name=body.name,
            description=body.description,
            creation_type="SegmentAPI",
            plan_type=body.type,
        )
        row = await stored.get(conn, plan.id)
    return PlanAnswer(segment_plan(row))


async def list_plans(call: Input[None, PlanListQuery]) -> PlanList:
    async with call.store.read() as conn:
        rows = await stored.list_all(conn)
    kind = call.query.type
    page = page_of(
        [segment_plan(r) for r in rows if kind in (None, r.plan_type)], call.query.pagination
    )
    return PlanList(page.items, page.pagination)


async def get_plan(call: Input[None, None]) -> PlanAnswer:
    async with call.store.read() as conn:
        row = await stored.get(conn, call.path["trackingPlanId"])
    return PlanAnswer(segment_plan(row))


async def update_plan(call: Input[TrackingPlanUpdate, None]) -> PlanUpdated:
    plan_id = call.path["trackingPlanId"]
    async with call.store.write() as conn:
        await plan_service.change_plan(conn, plan_id, call.store.workspace_id, call.body)
        row = await stored.get(conn, plan_id)
    return PlanUpdated(SUCCESS.status, segment_plan(row))


async def delete_plan(call: Input[None, None]) -> Status:
    async with call.store.write() as conn:
        await plan_service.remove_plan(conn, call.path["trackingPlanId"], call.store.workspace_id)
    return SUCCESS


# --- sources -----------------------------------------------------------------------------------


async def add_source(call: Input[SourceConnect, None]) -> Status:
    plan_id = call.path["trackingPlanId"]
    async with call.store.write() as conn:
        row = await stored.get(conn, plan_id)
        if row.plan_type != LIVE:
            raise BadRequest(f"only a LIVE plan takes sources; {plan_id} is {row.plan_type}")
        await connect_source(conn, plan_id, call.body.source_id, {})
    return SUCCESS


async def list_sources(call: Input[None, ListQuery]) -> SourceList:
    plan_id = call.path["trackingPlanId"]
    async with call.store.read() as conn:
        await stored.get(conn, plan_id)
        connected = {c.source_id for c in await stored_connections.of_plan(conn, plan_id)}
        found = [s for s in await stored_sources.list_all(conn) if s.id in connected]
    workspace_id = call.store.workspace_id
    page = page_of([_segment_source(s, workspace_id) for s in found], call.query.pagination)
    return SourceList(page.items, page.pagination)


async def remove_source(call: Input[None, SourceQuery]) -> Status:
    async with call.store.write() as conn:
        await disconnect_source(conn, call.path["trackingPlanId"], call.query.source_id)
    return SUCCESS
