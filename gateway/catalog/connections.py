"""Tracking plan ↔ source connections and their enforcement config (Data Catalog API), declared.

    POST   /catalog/tracking-plans/{id}/sources/{sourceId}   {"config": {...}}  connect
    PUT    /catalog/tracking-plans/{id}/sources/{sourceId}   {"config": {...}}  update config
    GET    /catalog/tracking-plans/{id}/sources              {"connections": [...]}
    DELETE /catalog/tracking-plans/{id}/sources/{sourceId}   204

Config sections ``global track identify page screen group``; each present section must hold at
least one setting. ``allowUnplannedEvents`` belongs to ``track`` and ``global`` only. Values are
strings (any case) or booleans; ``unplannedProperties`` also accepts ``omit`` (beyond
RudderStack). A source is connected to at most one plan.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog.declared import Input, Route
from gateway.catalog.plans import PLANS
from gateway.catalog.store import connections as stored
from gateway.catalog.store import plans, sources
from gateway.errors import BadRequest

SECTIONS = ("global", "track", "identify", "page", "screen", "group")
CHOICES: dict[str, tuple[str, ...]] = {
    "allowUnplannedEvents": ("true", "false"),
    "unplannedProperties": ("forward", "drop", "omit"),
    "anyOtherViolation": ("forward", "drop"),
    "propagateValidationErrors": ("true", "false"),
    # Which version of an event's rule an event that names none is checked against.
    "defaultRuleVersion": ("oldest", "latest"),
}
UNPLANNED_EVENT_SECTIONS = ("global", "track")


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def _setting(choices: tuple[str, ...]) -> Any:
    text = Annotated[
        str,
        msgspec.Meta(
            pattern="^(?:" + "|".join(_any_case(c) for c in choices) + ")$",
            description=f"One of {', '.join(choices)} (case-insensitive).",
        ),
    ]
    return text | bool if set(choices) == {"true", "false"} else text


def _section(name: str) -> type[msgspec.Struct]:
    settings = [
        (key, _setting(choices) | UnsetType, UNSET)
        for key, choices in CHOICES.items()
        if key != "allowUnplannedEvents" or name in UNPLANNED_EVENT_SECTIONS
    ]
    return msgspec.defstruct(
        f"{name.title()}Settings", settings, forbid_unknown_fields=True, omit_defaults=True
    )


# What no struct type says: a section present, and the config, hold at least one entry.
AT_LEAST_ONE = msgspec.Meta(extra_json_schema={"minProperties": 1})
ConnectionConfig = msgspec.defstruct(
    "ConnectionConfig",
    [(name, Annotated[_section(name), AT_LEAST_ONE] | UnsetType, UNSET) for name in SECTIONS],
    forbid_unknown_fields=True,
    omit_defaults=True,
)
ConnectionConfig.__doc__ = (
    "Enforcement settings: an event's settings are `global` shallow-merged with its type's "
    "section. A section present must hold at least one setting."
)


class ConnectionRequest(msgspec.Struct):
    config: Annotated[ConnectionConfig, AT_LEAST_ONE]  # type: ignore[valid-type]


class Connection(msgspec.Struct, rename="camel"):
    source_id: str
    tracking_plan_id: str
    config: dict[str, Any]


class ConnectionConfigAnswer(msgspec.Struct):
    config: dict[str, Any]


class ConnectionList(msgspec.Struct):
    connections: list[Connection]


def _config(body: ConnectionRequest) -> dict[str, Any]:
    """The config as stored: what was sent, checked (a type cannot say "at least one")."""
    config: dict[str, Any] = msgspec.to_builtins(body.config)
    if not config:
        raise BadRequest("config: a non-empty object is required")
    for section, settings in config.items():
        if not settings:
            raise BadRequest(f"config.{section}: must be an object with at least one setting")
    return config


async def _check(conn: AsyncConnection, plan_id: str, source_id: str) -> Any:
    """Plan must exist (404); source must exist (400, as documented). Returns its connection."""
    await plans.get(conn, plan_id)
    if await sources.get(conn, source_id) is None:
        raise BadRequest(f"invalid source id {source_id}")
    return await stored.of_source(conn, source_id)


async def connect_source(
    conn: AsyncConnection, plan_id: str, source_id: str, config: dict[str, Any]
) -> None:
    """Connect the source to the plan (it may have one plan at a time)."""
    existing = await _check(conn, plan_id, source_id)
    if existing is not None:
        if existing.plan_id == plan_id:
            raise BadRequest("source already connected to tracking plan")
        raise BadRequest(
            f"source is already connected to tracking plan {existing.plan_id}; disconnect it first"
        )
    await stored.insert_connection(conn, source_id, plan_id, config)


async def disconnect_source(conn: AsyncConnection, plan_id: str, source_id: str) -> None:
    existing = await _check(conn, plan_id, source_id)
    if existing is None or existing.plan_id != plan_id:
        raise BadRequest("source already disconnected from tracking plan")
    await stored.delete_connection(conn, source_id)


async def connect(call: Input[ConnectionRequest, None]) -> Connection:
    config = _config(call.body)
    plan_id, source_id = call.path["plan_id"], call.path["source_id"]
    async with call.store.write() as conn:
        await connect_source(conn, plan_id, source_id, config)
    return Connection(source_id, plan_id, config)


async def update_config(call: Input[ConnectionRequest, None]) -> ConnectionConfigAnswer:
    config = _config(call.body)
    plan_id, source_id = call.path["plan_id"], call.path["source_id"]
    async with call.store.write() as conn:
        existing = await _check(conn, plan_id, source_id)
        if existing is None or existing.plan_id != plan_id:
            raise BadRequest("source is not connected to tracking plan")
        await stored.update_config(conn, source_id, config)
    return ConnectionConfigAnswer(config)


async def list_connections(call: Input[None, None]) -> ConnectionList:
    plan_id = call.path["plan_id"]
    async with call.store.read() as conn:
        await plans.get(conn, plan_id)
        rows = await stored.of_plan(conn, plan_id)
        return ConnectionList([Connection(r.source_id, r.plan_id, r.config) for r in rows])


async def disconnect(call: Input[None, None]) -> None:
    async with call.store.write() as conn:
        await disconnect_source(conn, call.path["plan_id"], call.path["source_id"])


ONE = PLANS + "/{plan_id}/sources/{source_id}"
ROUTES = [
    Route(
        "GET",
        PLANS + "/{plan_id}/sources",
        "listConnections",
        "List the sources connected to a plan",
        list_connections,
        answer=ConnectionList,
        answer_description="The connections.",
        errors=(404,),
    ),
    Route(
        "POST",
        ONE,
        "connectSource",
        "Connect a source to a plan, with its enforcement config",
        connect,
        body=ConnectionRequest,
        answer=Connection,
        answer_description="The connection.",
        errors=(400, 404),
        description="A source is connected to at most one plan; an unknown source is a 400.",
    ),
    Route(
        "PUT",
        ONE,
        "updateConnection",
        "Replace a connection's enforcement config",
        update_config,
        body=ConnectionRequest,
        answer=ConnectionConfigAnswer,
        answer_description="The new config.",
        errors=(400, 404),
    ),
    Route(
        "DELETE",
        ONE,
        "disconnectSource",
        "Disconnect a source from a plan",
        disconnect,
        errors=(400, 404),
    ),
]
