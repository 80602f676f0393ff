"""The change log's rows (see gateway.catalog.changelog)."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.changelog import Change
from gateway.catalog.store import schema

changes, change_targets = schema.changes, schema.change_targets


class PlanMove(msgspec.Struct, rename="camel"):
    plan_id: str
    before: int | None
    after: int | None


class ChangeRecord(msgspec.Struct, rename="camel"):
    id: int
    at: str
    token: str
    surface: str
    action: str
    targets: list[str]
    plans: list[PlanMove]
    reason: str | None


async def insert_change(conn: AsyncConnection, change: Change, at: str) -> None:
    result = await conn.execute(
        insert(changes)
        .returning(changes.c.id)
        .values(
            at=at,
            token=change.token,
            surface=change.surface,
            action=change.action,
            targets=change.targets,
            plans=change.plans,
            reason=change.reason,
        )
    )
    change_id = result.scalar_one()
    if change.targets:
        await conn.execute(
            insert(change_targets),
            [{"change_id": change_id, "target_id": t} for t in change.targets],
        )


async def list_changes(
    conn: AsyncConnection,
    *,
    target: str | None,
    since: str | None,
    until: str | None,
    limit: int,
) -> list[ChangeRecord]:
    """Newest first. ``since`` inclusive, ``until`` exclusive (ISO 8601 times, UTC)."""
    query = select(changes).order_by(changes.c.id.desc()).limit(limit)
    if target is not None:
        query = query.where(
            changes.c.id.in_(
                select(change_targets.c.change_id).where(change_targets.c.target_id == target)
            )
        )
    if since is not None:
        query = query.where(changes.c.at >= since)
    if until is not None:
        query = query.where(changes.c.at < until)
    return [_record(row) for row in await conn.execute(query)]


def _record(row: Any) -> ChangeRecord:
    return ChangeRecord(
        id=row.id,
        at=row.at,
        token=row.token,
        surface=row.surface,
        action=row.action,
        targets=row.targets,
        plans=[PlanMove(p["planId"], p["before"], p["after"]) for p in row.plans],
        reason=row.reason,
    )
