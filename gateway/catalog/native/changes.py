"""The change log in the native API (version 1).

    GET /api/{v}/changes?target=&since=&until=&limit=   listChanges, newest first

Every write through a management surface — this API, the RudderStack-compatible catalog — is
recorded with the write (see gateway.catalog.changelog): when, by which token (a digest, never
the token), through which surface, the operation, the ids it was about (those it created
included), each plan version it moved (``before`` null: created; ``after`` null: deleted),
and the ``reason`` a native call gave.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from gateway.catalog.native import Answer, Call, Operation, Version
from gateway.catalog.store import changes as stored
from gateway.catalog.store.changes import ChangeRecord
from gateway.errors import BadRequest
from gateway.times import format_timestamp

MAX_LIMIT = 1000
Time = Annotated[datetime, msgspec.Meta(tz=True)]


class ChangeQuery(msgspec.Struct, forbid_unknown_fields=True):
    """``target``: changes about this id; ``since`` (inclusive) and ``until`` (exclusive):
    ISO 8601 times with a zone; at most ``limit`` changes, newest first."""

    target: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    since: Time | None = None
    until: Time | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = 100


class Changes(msgspec.Struct):
    changes: list[ChangeRecord]


async def list_changes(call: Call) -> Answer:
    query: ChangeQuery = call.params
    async with call.store.read() as conn:
        found = await stored.list_changes(
            conn,
            target=query.target,
            since=format_timestamp(query.since) if query.since else None,
            until=format_timestamp(query.until) if query.until else None,
            limit=query.limit,
        )
    return Answer(Changes(found))


OPERATIONS = (
    Operation(
        "GET",
        "/changes",
        "listChanges",
        "The change log: writes through every management surface, newest first",
        {1: Version(list_changes, ChangeQuery, Changes)},
        errors=(BadRequest,),
    ),
)
