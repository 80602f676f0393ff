"""Replay jobs and the events replays published (see gateway.replay), on both databases.

A replayed event is *claimed* (a row, ``done`` false) before its record is produced and marked
done once Kafka acknowledged it, in the job's transactions: the primary key (source, messageId)
makes a second claim of the same event — by this job again, another job, another run — find
the row and publish nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, delete, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import schema

jobs, replayed = schema.replay_jobs, schema.replayed_events
# Keys above this length are kept as their digest (the column's width).
MAX_KEY_CHARS = schema.NAME
CLAIM_CHUNK = 200  # rows per statement: well below both databases' parameter limits


def message_key(message_id: str) -> str:
    """The stored form of a messageId: itself, or ``sha256:<hex>`` when it is too long."""
    if len(message_id) <= MAX_KEY_CHARS:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


async def insert_job(conn: AsyncConnection, job_id: str, now: str, **values: Any) -> None:
    await conn.execute(insert(jobs).values(id=job_id, created_at=now, updated_at=now, **values))


async def get_job(conn: AsyncConnection, job_id: str) -> Any:
    return (await conn.execute(select(jobs).where(jobs.c.id == job_id))).one_or_none()


async def list_jobs(conn: AsyncConnection, limit: int) -> list[Any]:
    query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
    return list(await conn.execute(query))


async def update_job(conn: AsyncConnection, job_id: str, now: str, **values: Any) -> None:
    await conn.execute(update(jobs).where(jobs.c.id == job_id).values(updated_at=now, **values))


async def claim(
    conn: AsyncConnection,
    job_id: str,
    now: str,
    wanted: Sequence[tuple[str, str, str]],
) -> set[tuple[str, str]]:
    """Claim (source id, message key, where it was quarantined) entries for ``job_id``; the
    (source id, message key) pairs now claimed by this job and not yet done — those already
    replayed, or claimed by another job (even one claiming them at this moment), are left
    out: an existing claim is never overwritten (INSERT … ON CONFLICT DO NOTHING)."""
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    claimed: set[tuple[str, str]] = set()
    for start in range(0, len(wanted), CLAIM_CHUNK):
        part = wanted[start : start + CLAIM_CHUNK]
        rows = [
            {
                "source_id": source_id,
                "message_id": key,
                "job_id": job_id,
                "done": False,
                "quarantined_at": where,
                "replayed_at": now,
            }
            for source_id, key, where in part
        ]
        await conn.execute(module.insert(replayed).on_conflict_do_nothing(), rows)
        keys = [(source_id, key) for source_id, key, _ in part]
        mine = await conn.execute(
            select(replayed.c.source_id, replayed.c.message_id).where(
                tuple_(replayed.c.source_id, replayed.c.message_id).in_(keys),
                replayed.c.job_id == job_id,
                replayed.c.done.is_(False),
            )
        )
        claimed.update((row.source_id, row.message_id) for row in mine)
    return claimed


async def pending(conn: AsyncConnection, job_id: str) -> list[tuple[str, str]]:
    """The job's claims whose records may or may not have reached Kafka (a run cut short)."""
    rows = await conn.execute(
        select(replayed.c.source_id, replayed.c.message_id).where(
            and_(replayed.c.job_id == job_id, replayed.c.done.is_(False))
        )
    )
    return [(row.source_id, row.message_id) for row in rows]


async def mark_done(
    conn: AsyncConnection, job_id: str, keys: Iterable[tuple[str, str]] | None = None
) -> None:
    """The job's claims (all of them, or ``keys``) reached Kafka."""
    condition = and_(replayed.c.job_id == job_id, replayed.c.done.is_(False))
    if keys is None:
        await conn.execute(update(replayed).where(condition).values(done=True))
        return
    listed = list(keys)
    for start in range(0, len(listed), CLAIM_CHUNK):
        part = listed[start : start + CLAIM_CHUNK]
        await conn.execute(
            update(replayed)
            .where(condition, tuple_(replayed.c.source_id, replayed.c.message_id).in_(part))
            .values(done=True)
        )


async def release(conn: AsyncConnection, job_id: str) -> None:
    """Drop the job's claims that did not reach Kafka: the events can be claimed again."""
    await conn.execute(
        delete(replayed).where(and_(replayed.c.job_id == job_id, replayed.c.done.is_(False)))
    )
