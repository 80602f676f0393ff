"""How a custom type is used elsewhere: referenced as ``#/$defs/<Name>``, its definitions inlined
under ``$defs`` (never fetched remotely). Shared by custom types and property forms."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.store import custom_types as stored
from gateway.errors import BadRequest


def ref_to(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


async def definitions_of(conn: AsyncConnection, name: str) -> dict[str, Any]:
    """``{name: rules, **its own defs}`` for a custom type used somewhere else."""
    row = await stored.named(conn, name)
    if row is None:
        raise BadRequest(f"custom type {name} does not exist")
    return {name: row.rules, **row.defs}
