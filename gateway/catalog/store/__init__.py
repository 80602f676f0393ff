"""The catalog store: async access to SQLite (default) or PostgreSQL through SQLAlchemy Core.

All database work runs on the driver's own async I/O (aiosqlite's thread, asyncpg's protocol):
nothing blocks the event loop. Every write that changes what the data plane sees bumps
``catalog_state.revision`` in the same transaction, which makes the snapshot's ETag.
"""

from __future__ import annotations

import logging
import secrets
import string
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, event, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.catalog import changelog
from gateway.catalog.store import schema
from gateway.catalog.store.changes import insert_change
from gateway.errors import BadRequest, NotFound
from gateway.times import format_timestamp

log = logging.getLogger(__name__)

_ALPHABET = string.digits + string.ascii_letters


def new_id(prefix: str) -> str:
    """A sortable, KSUID-like id: ``prefix_`` + 27 base62 characters (time, then randomness)."""
    value = (int(time.time()) << 128) | secrets.randbits(128)
    chars = []
    for _ in range(27):
        value, digit = divmod(value, 62)
        chars.append(_ALPHABET[digit])
    minted = f"{prefix}_{''.join(reversed(chars))}"
    changelog.minted(minted)
    return minted


def new_write_key() -> str:
    return secrets.token_urlsafe(24)


def now_text() -> str:
    return format_timestamp(datetime.now(UTC))


def async_url(database_url: str) -> str:
    """Map a plain URL to its async driver: sqlite → aiosqlite, postgresql → asyncpg."""
    for plain, driver in (
        ("sqlite:", "sqlite+aiosqlite:"),
        ("postgresql:", "postgresql+asyncpg:"),
        ("postgres:", "postgresql+asyncpg:"),
    ):
        if database_url.startswith(plain):
            return driver + database_url[len(plain) :]
    raise ValueError(f"unsupported catalog.database_url {database_url!r}")


class Store:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.is_sqlite = database_url.startswith("sqlite:")
        if self.is_sqlite:
            _ensure_sqlite_dir(database_url)
        self.engine: AsyncEngine = create_async_engine(async_url(database_url))
        self.workspace_id = ""  # read (or created) by open()
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(self.engine.sync_engine, "before_cursor_execute", _refuse_nul)

    async def open(self) -> None:
        """Apply pending migrations and make sure the state row exists."""
        async with self.engine.begin() as conn:
            await conn.run_sync(lambda c: schema.schema_migrations.create(c, checkfirst=True))
        for version, description, migrate in schema.MIGRATIONS:
            async with self.engine.begin() as conn:
                done = await conn.scalar(
                    select(schema.schema_migrations.c.version).where(
                        schema.schema_migrations.c.version == version
                    )
                )
                if done is not None:
                    continue
                await conn.run_sync(migrate)
                await conn.execute(
                    insert(schema.schema_migrations).values(version=version, applied_at=now_text())
                )
                log.info("catalog migration %d applied: %s", version, description)
        async with self.engine.begin() as conn:
            exists = await conn.scalar(select(schema.catalog_state.c.id))
            if exists is None:
                await conn.execute(
                    insert(schema.catalog_state).values(
                        id=1, workspace_id=new_id("ws")[3:], revision=1
                    )
                )
        self.workspace_id, _ = await self.state()

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self, *, snapshot: bool = True) -> AsyncIterator[AsyncConnection]:
        """A transaction that also bumps the catalog revision (the snapshot's ETag) and, for a
        change being recorded (gateway.catalog.changelog), writes its change-log row.

        ``snapshot=False`` for writes the plan snapshot does not show (categories, properties,
        custom types, unused events): every ingest replica would fetch and rebuild it for
        nothing.
        """
        async with self.engine.begin() as conn:
            yield conn
            change = changelog.current()
            if change is not None:  # recorded with the write, in its transaction
                await insert_change(conn, change, now_text())
                change.plans.clear()  # a later write of the same request records its own
            if snapshot:
                await conn.execute(
                    update(schema.catalog_state).values(
                        revision=schema.catalog_state.c.revision + 1
                    )
                )

    async def ping(self) -> bool:
        try:
            async with self.read() as conn:
                await conn.scalar(select(schema.catalog_state.c.revision))
        except Exception:  # any driver error means "not ready"
            log.warning("catalog store is not answering", exc_info=True)
            return False
        return True

    async def state(self) -> tuple[str, int]:
        """(workspace id, revision)."""
        async with self.read() as conn:
            row = (
                await conn.execute(
                    select(schema.catalog_state.c.workspace_id, schema.catalog_state.c.revision)
                )
            ).one()
        return str(row.workspace_id), int(row.revision)


async def row_or_404(conn: AsyncConnection, table: Table, row_id: str, what: str) -> Any:
    """The row with this id, or a 404 naming the entity ("tracking plan tp_x not found")."""
    row = (await conn.execute(select(table).where(table.c.id == row_id))).one_or_none()
    if row is None:
        raise NotFound(f"{what} {row_id} not found")
    return row


async def page(
    conn: AsyncConnection,
    query: Select[Any],
    order: Sequence[ColumnElement[Any]],
    number: int,
    size: int,
) -> tuple[int, list[Any]]:
    """(total, rows) of page ``number`` (from 1) of ``query``'s rows in ``order``."""
    total = await conn.scalar(select(func.count()).select_from(query.subquery()))
    rows = await conn.execute(query.order_by(*order).limit(size).offset((number - 1) * size))
    return int(total or 0), list(rows)


async def page_of_table(
    conn: AsyncConnection, table: Table, column: str, descending: bool, number: int, size: int
) -> tuple[int, list[Any]]:
    """(total, rows) of a page of the whole table by ``column`` (ids break ties)."""
    order = table.c[column].desc() if descending else table.c[column].asc()
    return await page(conn, select(table), (order, table.c.id), number, size)


class NulCharacter(BadRequest):
    """Text containing the NUL character (U+0000), which the catalog does not store."""

    # PostgreSQL cannot store U+0000 in text, nor compare with it; neither database is asked
    # to, so both answer alike.


def _refuse_nul(
    _conn: Any, _cursor: Any, _statement: str, parameters: Any, _context: Any, _many: bool
) -> None:
    rows = parameters if isinstance(parameters, list) else [parameters]
    for row in rows:
        values = row.values() if isinstance(row, dict) else row
        if any(isinstance(value, str) and "\x00" in value for value in values or ()):
            raise NulCharacter("text may not contain the NUL character (U+0000)")


def _ensure_sqlite_dir(database_url: str) -> None:
    path = database_url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    # WAL lets readers run beside a writer; foreign keys make ON DELETE CASCADE work.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
