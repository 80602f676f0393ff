"""Tracking plans: ``tracking_plans``, the events of each plan (``tracking_plan_events``) and
every version of each (``tracking_plan_versions``, the whole plan as a JSON document)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import now_text, page, row_or_404, schema
from gateway.errors import NotFound

WHAT = "tracking plan"
_PLAN_EVENTS_ORDER = (schema.tracking_plan_events.c.created_at, schema.events.c.name)


async def get(conn: AsyncConnection, plan_id: str) -> Any:
    return await row_or_404(conn, schema.tracking_plans, plan_id, WHAT)


async def list_all(conn: AsyncConnection) -> list[Any]:
    table = schema.tracking_plans
    return list(await conn.execute(select(table).order_by(table.c.created_at)))


async def insert_plan(
    conn: AsyncConnection,
    plan_id: str,
    *,
    name: str,
    description: str | None,
    creation_type: str,
    plan_type: str = "LIVE",
) -> None:
    now = now_text()
    await conn.execute(
        insert(schema.tracking_plans).values(
            id=plan_id,
            name=name,
            description=description,
            version=1,
            creation_type=creation_type,
            plan_type=plan_type,
            created_at=now,
            updated_at=now,
        )
    )


async def next_version(conn: AsyncConnection, plan_id: str, **values: Any) -> None:
    """Apply ``values`` and count one more version."""
    table = schema.tracking_plans
    await conn.execute(
        update(table)
        .where(table.c.id == plan_id)
        .values(**values, version=table.c.version + 1, updated_at=now_text())
    )


async def delete_plan(conn: AsyncConnection, plan_id: str) -> None:
    """The plan, its events, its history and its connections."""
    for table in (schema.connections, schema.tracking_plan_events, schema.tracking_plan_versions):
        await conn.execute(delete(table).where(table.c.plan_id == plan_id))
    await conn.execute(delete(schema.tracking_plans).where(schema.tracking_plans.c.id == plan_id))


# --- versions ----------------------------------------------------------------------------------


async def insert_version(
    conn: AsyncConnection, plan_id: str, version: int, document: dict[str, Any]
) -> None:
    await conn.execute(
        insert(schema.tracking_plan_versions).values(
            plan_id=plan_id, version=version, document=document
        )
    )


async def version_document(conn: AsyncConnection, plan_id: str, version: int) -> Any:
    """The plan as recorded at ``version``, or None."""
    table = schema.tracking_plan_versions
    return await conn.scalar(
        select(table.c.document).where(table.c.plan_id == plan_id, table.c.version == version)
    )


# --- events of a plan ----------------------------------------------------------------------------


def _events_of(plan_id: str) -> Select[Any]:
    """Each event of the plan: the catalog event's columns and the plan's for it
    (``identity_section``, ``additional_properties``, ``rules``, ``rule_version``,
    ``other_versions``, and when it was added and changed: ``added_at``, ``changed_at``)."""
    te = schema.tracking_plan_events
    return (
        select(
            schema.events,
            te.c.identity_section,
            te.c.additional_properties,
            te.c.rules,
            te.c.rule_version,
            te.c.other_versions,
            te.c.created_at.label("added_at"),
            te.c.updated_at.label("changed_at"),
        )
        .join(te, te.c.event_id == schema.events.c.id)
        .where(te.c.plan_id == plan_id)
    )


async def events(conn: AsyncConnection, plan_id: str) -> list[Any]:
    """Every event of the plan, in the order they were added."""
    return list(await conn.execute(_events_of(plan_id).order_by(*_PLAN_EVENTS_ORDER)))


async def events_page(
    conn: AsyncConnection, plan_id: str, number: int, size: int
) -> tuple[int, list[Any]]:
    return await page(conn, _events_of(plan_id), _PLAN_EVENTS_ORDER, number, size)


async def event(conn: AsyncConnection, plan_id: str, event_id: str) -> Any:
    """One event of the plan: 404 if the plan or the event in it is missing."""
    await get(conn, plan_id)
    row = await find_event(conn, plan_id, event_id)
    if row is None:
        raise NotFound(f"event {event_id} is not in tracking plan {plan_id}")
    return row


async def find_event(conn: AsyncConnection, plan_id: str, event_id: str) -> Any:
    """One event of the plan, or None."""
    te = schema.tracking_plan_events
    query = _events_of(plan_id).where(te.c.event_id == event_id)
    return (await conn.execute(query)).one_or_none()


async def put_event(
    conn: AsyncConnection,
    plan_id: str,
    event_id: str,
    *,
    section: str,
    additional_properties: bool,
    rules: dict[str, Any],
) -> None:
    """Insert or replace one event's rules in a plan (its oldest version's, when it has more)."""
    te = schema.tracking_plan_events
    now = now_text()
    values = {
        "identity_section": section,
        "additional_properties": additional_properties,
        "rules": rules,
        "updated_at": now,
    }
    result = await conn.execute(
        update(te).where(te.c.plan_id == plan_id, te.c.event_id == event_id).values(**values)
    )
    if not result.rowcount:
        await conn.execute(
            insert(te).values(plan_id=plan_id, event_id=event_id, created_at=now, **values)
        )


async def put_versions(
    conn: AsyncConnection,
    plan_id: str,
    event_id: str,
    *,
    rule_version: int,
    other_versions: dict[str, Any] | None,
) -> None:
    """Number the event's ``rules`` and set its other versions (the row must exist)."""
    te = schema.tracking_plan_events
    await conn.execute(
        update(te)
        .where(te.c.plan_id == plan_id, te.c.event_id == event_id)
        .values(rule_version=rule_version, other_versions=other_versions or None)
    )


async def set_common_rule(conn: AsyncConnection, plan_id: str, rule: dict[str, Any] | None) -> None:
    table = schema.tracking_plans
    await conn.execute(update(table).where(table.c.id == plan_id).values(common_rule=rule))


async def remove_event(conn: AsyncConnection, plan_id: str, event_id: str) -> None:
    te = schema.tracking_plan_events
    await conn.execute(delete(te).where(te.c.plan_id == plan_id, te.c.event_id == event_id))


async def using_event(conn: AsyncConnection, event_id: str) -> list[str]:
    """The ids of the plans that have this catalog event."""
    te = schema.tracking_plan_events
    rows = await conn.execute(select(te.c.plan_id).where(te.c.event_id == event_id))
    return [str(row.plan_id) for row in rows]
