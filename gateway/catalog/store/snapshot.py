"""The plan snapshot's document, read from the catalog in one consistent transaction (see
gateway.catalog.snapshot_builder for what it is and how it is served)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import Store, schema
from gateway.catalog.store import plans as stored_plans
from gateway.catalog.store import sources as stored_sources


async def read_snapshot_document(store: Store, pinned_versions: int = 0) -> dict[str, Any]:
    """The snapshot's document; each connected plan with up to ``pinned_versions`` of its
    versions before the current one (``pastVersions``)."""
    async with store.engine.connect() as conn:
        if not store.is_sqlite:
            # One consistent view across the statements below (SQLite's read transaction
            # already is one).
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            return await _snapshot_document(conn, pinned_versions)


async def _snapshot_document(conn: AsyncConnection, pinned_versions: int) -> dict[str, Any]:
    revision = await conn.scalar(select(schema.catalog_state.c.revision))
    connection_rows = list(await conn.execute(select(schema.connections)))
    connected = {
        row.source_id: {"id": row.plan_id, "config": row.config} for row in connection_rows
    }
    plans = {row.id: row for row in await conn.execute(select(schema.tracking_plans))}
    shadows = _shadows(connection_rows, plans)
    for source_id, shadow in shadows.items():
        connected[source_id]["shadow"] = {"id": shadow[0], "version": shadow[1]}
    events: dict[str, list[dict[str, Any]]] = {plan_id: [] for plan_id in plans}
    rows = await conn.execute(
        select(
            schema.tracking_plan_events.c.plan_id,
            schema.tracking_plan_events.c.identity_section,
            schema.tracking_plan_events.c.rules,
            schema.tracking_plan_events.c.rule_version,
            schema.tracking_plan_events.c.other_versions,
            schema.events.c.name,
            schema.events.c.event_type,
        )
        .join(schema.events, schema.events.c.id == schema.tracking_plan_events.c.event_id)
        .order_by(schema.tracking_plan_events.c.created_at, schema.events.c.name)
    )
    for row in rows:
        event = {
            "name": row.name,
            "eventType": row.event_type,
            "identitySection": row.identity_section,
            "rules": row.rules,
        }
        if row.rule_version != 1:
            event["ruleVersion"] = row.rule_version
        if row.other_versions:
            event["otherVersions"] = {n: v["rules"] for n, v in row.other_versions.items()}
        events[row.plan_id].append(event)
    sources = []
    for source in await stored_sources.list_all(conn):
        connection = connected.get(source.id)
        if connection is not None:
            connection["version"] = plans[connection["id"]].version
        sources.append(
            {
                "id": source.id,
                "name": source.name,
                "enabled": source.enabled,
                "writeKeys": source.write_keys,
                "trackingPlan": connection,
            }
        )
    documents = [_plan(plan, events[plan.id]) for plan in plans.values()]
    past: dict[str, list[dict[str, Any]]] = {}
    if pinned_versions:
        past = await _past_versions(conn, {c["id"] for c in connected.values()}, pinned_versions)
    for plan_id, version in shadows.values():  # a shadow may name a past version
        if version != plans[plan_id].version and all(
            p["version"] != version for p in past.get(plan_id, ())
        ):
            document = await plan_at_version(conn, plan_id, version)
            if document is None:  # not in the history (any more): no shadow then
                for source_id, shadow in shadows.items():
                    if shadow == (plan_id, version):
                        del connected[source_id]["shadow"]
                continue
            del document["id"], document["name"]
            past.setdefault(plan_id, []).append(document)
    for document in documents:
        if past.get(document["id"]):
            document["pastVersions"] = sorted(past[document["id"]], key=lambda p: p["version"])
    return {"revision": str(revision), "sources": sources, "trackingPlans": documents}


def _shadows(connections: list[Any], plans: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Each source's shadow plan and version (a plan deleted since is no shadow)."""
    shadows = {}
    for row in connections:
        shadow = row.shadow
        if shadow is not None and shadow["planId"] in plans:
            plan = plans[shadow["planId"]]
            shadows[row.source_id] = (plan.id, shadow.get("version") or plan.version)
    return shadows


async def _past_versions(
    conn: AsyncConnection, plan_ids: set[str], count: int
) -> dict[str, list[dict[str, Any]]]:
    """Up to ``count`` versions before the current one of each plan, oldest first."""
    versions, plans = schema.tracking_plan_versions, schema.tracking_plans
    rows = await conn.execute(
        select(versions.c.plan_id, versions.c.version, versions.c.document)
        .join(plans, plans.c.id == versions.c.plan_id)
        .where(
            versions.c.version < plans.c.version,
            versions.c.version >= plans.c.version - count,
        )
        .order_by(versions.c.plan_id, versions.c.version)
    )
    past: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.plan_id in plan_ids:
            version = _of_version_document(row.plan_id, row.version, row.document)
            del version["id"], version["name"]
            past.setdefault(row.plan_id, []).append(version)
    return past


def _plan(row: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
    plan = {"id": row.id, "name": row.name, "version": row.version, "events": events}
    if row.common_rule is not None:
        plan["commonRule"] = {
            "version": row.common_rule["version"],
            "rules": row.common_rule["rules"],
        }
    return plan


async def plan_at_version(
    conn: AsyncConnection, plan_id: str, version: int
) -> dict[str, Any] | None:
    """A plan as the snapshot describes it, at ``version`` (from its history); None when the
    plan has no such version."""
    document = await stored_plans.version_document(conn, plan_id, version)
    if document is None:
        return None
    return _of_version_document(plan_id, version, document)


def _of_version_document(plan_id: str, version: int, document: Any) -> dict[str, Any]:
    """A plan's recorded version (the RudderStack API's plan document) as the snapshot has it."""
    events = []
    for e in document["events"]:
        event = {
            "name": e["name"],
            "eventType": e["eventType"],
            "identitySection": e["identitySection"],
            "rules": e["rules"],
        }
        if e.get("ruleVersion", 1) != 1:
            event["ruleVersion"] = e["ruleVersion"]
        if e.get("otherRuleVersions"):
            event["otherVersions"] = {
                str(other["version"]): other["rules"] for other in e["otherRuleVersions"]
            }
        events.append(event)
    plan = {"id": plan_id, "name": document["name"], "version": version, "events": events}
    common = document.get("commonRule")
    if common is not None:
        plan["commonRule"] = {"version": common["version"], "rules": common["rules"]}
    return plan
