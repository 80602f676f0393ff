"""The catalog's tables and their versioned migrations (SQLite and PostgreSQL alike).

JSON values (rules, configs, property types) are stored as text written by orjson, through
one column type (:class:`Json`), and times as ISO 8601 strings, so both databases hold
byte-identical data and no dialect-specific type is needed.
Migrations are applied in order at startup, each in its own transaction, and recorded in
``schema_migrations``; a migration is never edited once released — add a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    inspect,
    text,
)

metadata = MetaData()


class Json(TypeDecorator[Any]):
    """A JSON value, stored as the text orjson writes (the same bytes on both databases). A value
    compared with such a column is written the same way, so queries compare JSON texts."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else orjson.loads(value)


ID = 40  # prefixed KSUID-style ids ("tp_" + 27 characters) fit with room to spare
NAME = 200
TIME = 32
MAX_INTEGER = 2**31 - 1  # the largest value an Integer column takes (PostgreSQL's int4)

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", String(TIME), nullable=False),
)

# One row: the workspace id and a revision bumped by every change the snapshot depends on.
catalog_state = Table(
    "catalog_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace_id", String(ID), nullable=False),
    Column("revision", Integer, nullable=False),
)

sources = Table(
    "sources",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(NAME), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
)

write_keys = Table(
    "write_keys",
    metadata,
    Column("key", String(NAME), primary_key=True),
    Column("source_id", String(ID), ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", String(TIME), nullable=False),
)

tracking_plans = Table(
    "tracking_plans",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(NAME), nullable=False),
    Column("description", Text, nullable=True),
    Column("version", Integer, nullable=False),
    Column("creation_type", String(NAME), nullable=False),
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
    # Segment's plan type: LIVE, PROPERTY_LIBRARY, RULE_LIBRARY or TEMPLATE (migration 3).
    Column("plan_type", String(32), nullable=False, server_default="LIVE"),
    # The COMMON rule every event of the plan must also satisfy: {"version", "rules",
    # "createdAt", "updatedAt"}, or null (migration 3).
    Column("common_rule", Json, nullable=True),
)

# Every version of every plan, exactly as it was (plan fields, events and rules).
tracking_plan_versions = Table(
    "tracking_plan_versions",
    metadata,
    Column("plan_id", String(ID), ForeignKey("tracking_plans.id", ondelete="CASCADE")),
    Column("version", Integer),
    Column("document", Json, nullable=False),
    PrimaryKeyConstraint("plan_id", "version"),
)

categories = Table(
    "categories",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(NAME), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(NAME), nullable=False),
    Column("description", Text, nullable=True),
    Column("event_type", String(16), nullable=False),
    Column("category_id", String(ID), ForeignKey("categories.id"), nullable=True),
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
)

properties = Table(
    "properties",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(NAME), nullable=False),
    Column("description", Text, nullable=True),
    Column("type", Json, nullable=False),  # "" (any), a type, or a list of types
    Column("prop_config", Json, nullable=True),  # an object of advanced keywords
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
)

custom_types = Table(
    "custom_types",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(NAME), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("type", String(16), nullable=False),
    Column("config", Json, nullable=False),
    Column("properties", Json, nullable=False),  # a list of {"id", "required"}
    Column("rules", Json, nullable=False),  # the JSON schema built from type/config/properties
    Column("defs", Json, nullable=False),  # {name: rules} of the custom types it references
    Column("version", Integer, nullable=False),
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
)

tracking_plan_events = Table(
    "tracking_plan_events",
    metadata,
    Column("plan_id", String(ID), ForeignKey("tracking_plans.id", ondelete="CASCADE")),
    Column("event_id", String(ID), ForeignKey("events.id")),
    Column("identity_section", String(32), nullable=False),
    Column("additional_properties", Boolean, nullable=False),
    Column("rules", Json, nullable=False),  # a JSON schema
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
    # Rule versions (migration 3): ``rules`` is the oldest, numbered ``rule_version``; the
    # others are {"<version>": {"rules", "createdAt", "updatedAt"}}, or null when there are none.
    Column("rule_version", Integer, nullable=False, server_default="1"),
    Column("other_versions", Json, nullable=True),
    PrimaryKeyConstraint("plan_id", "event_id"),
)

# A source is connected to at most one tracking plan.
connections = Table(
    "connections",
    metadata,
    Column("source_id", String(ID), ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "plan_id",
        String(ID),
        ForeignKey("tracking_plans.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("config", Json, nullable=False),
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
    # A candidate plan every event is also checked against, without effect (migration 5):
    # {"planId", "version"} (version null: the plan's current one), or null.
    Column("shadow", Json, nullable=True),
)


# The change log: one row per write through any management surface, newest last.
changes = Table(
    "changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(TIME), nullable=False),
    Column("token", String(NAME), nullable=False),  # the token's identity, never the token
    Column("surface", String(32), nullable=False),
    Column("action", String(NAME), nullable=False),
    Column("targets", Json, nullable=False),  # a list of the ids the change is about
    Column("plans", Json, nullable=False),  # a list of {"planId", "before", "after"}
    Column("reason", Text, nullable=True),
)

# Which change is about which id: the change log's filter by target.
change_targets = Table(
    "change_targets",
    metadata,
    Column("change_id", Integer, ForeignKey("changes.id", ondelete="CASCADE")),
    Column("target_id", String(ID)),
    PrimaryKeyConstraint("change_id", "target_id"),
    Index("change_targets_by_target", "target_id"),
)

# Replays of the quarantine topic (gateway.replay): one row per job, its spec, where it is and
# what it did so far.
replay_jobs = Table(
    "replay_jobs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("spec", Json, nullable=False),
    Column("status", String(32), nullable=False),
    Column("progress", Json, nullable=False),
    # Next quarantine offset per partition, and the end offsets the job stops at.
    Column("positions", Json, nullable=False),
    Column("ends", Json, nullable=False),
    # Events-topic end offsets when the chunk in flight was claimed (null: none in flight).
    Column("pending_since", Json, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
)

# Every event a replay published (or claimed, while its chunk is in flight): a messageId is
# replayed once per source, whatever job, range or run comes across it again.
replayed_events = Table(
    "replayed_events",
    metadata,
    Column("source_id", String(ID)),
    Column("message_id", String(NAME)),
    Column("job_id", String(ID), nullable=False),
    Column("done", Boolean, nullable=False),
    Column("quarantined_at", String(NAME), nullable=False),  # topic/partition/offset
    Column("replayed_at", String(TIME), nullable=False),
    PrimaryKeyConstraint("source_id", "message_id"),
    Index("replayed_events_by_job", "job_id", "done"),
)

V1_TABLES = (
    catalog_state,
    sources,
    write_keys,
    tracking_plans,
    tracking_plan_versions,
    categories,
    events,
    properties,
    custom_types,
    tracking_plan_events,
    connections,
)


def _v1_initial(conn: Connection) -> None:
    # Creates the tables as defined above, with the columns later migrations added: each of
    # those adds only what a database lacks, so old and new databases end up alike.
    metadata.create_all(conn, tables=list(V1_TABLES))


def _v2_change_log(conn: Connection) -> None:
    metadata.create_all(conn, tables=[changes, change_targets])


def _v3_rule_versions(conn: Connection) -> None:
    _add_missing_columns(conn, tracking_plans, ("plan_type", "common_rule"))
    _add_missing_columns(conn, tracking_plan_events, ("rule_version", "other_versions"))


def _v4_replays(conn: Connection) -> None:
    metadata.create_all(conn, tables=[replay_jobs, replayed_events])


def _v5_shadow_plans(conn: Connection) -> None:
    _add_missing_columns(conn, connections, ("shadow",))


def _add_missing_columns(conn: Connection, table: Table, names: tuple[str, ...]) -> None:
    present = {column["name"] for column in inspect(conn).get_columns(table.name)}
    for name in names:
        if name in present:
            continue
        column = table.c[name]
        kind = column.type.compile(dialect=conn.dialect)
        default = ""
        if column.server_default is not None:
            value = column.server_default.arg  # type: ignore[attr-defined]
            default = (
                f" DEFAULT '{value}'" if isinstance(column.type, String) else f" DEFAULT {value}"
            )
        null = "" if column.nullable else " NOT NULL"
        conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}{default}{null}"))


# (version, description, migration); append only.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial catalog schema", _v1_initial),
    (2, "change log", _v2_change_log),
    (3, "rule versions, common rules and plan types", _v3_rule_versions),
    (4, "replays of the quarantine topic", _v4_replays),
    (5, "shadow plans of connections", _v5_shadow_plans),
]
