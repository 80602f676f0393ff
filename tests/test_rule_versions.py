"""Rule versions and common rules below the APIs: the snapshot's shape and checks, the choice of
version for an event, and the catalog migration that added them (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, text

from gateway.catalog.plans import new_plan
from gateway.catalog.store import Store, events, schema
from gateway.catalog.store import plans as stored
from gateway.enforce.enforcer import Enforcer
from gateway.plans.snapshot import SnapshotError, parse_snapshot
from tests.conftest import SOURCE_ID, snapshot_doc


def rule(kind: str) -> dict[str, Any]:
    return {"properties": {"properties": {"properties": {"n": {"type": kind}}}}}


def versioned_snapshot(config: dict[str, Any] | None = None, **event: Any) -> dict[str, Any]:
    doc = snapshot_doc()
    doc["sources"][0]["trackingPlan"] = {"id": "tp_v", "version": 1, "config": config or {}}
    doc["trackingPlans"] = [
        {
            "id": "tp_v",
            "name": "Versions",
            "version": 1,
            "events": [
                {
                    "name": "Checked",
                    "eventType": "track",
                    "rules": rule("integer"),
                    "ruleVersion": 2,
                    "otherVersions": {"3": rule("string"), "5": rule("boolean")},
                    **event,
                }
            ],
            "commonRule": {"version": 1, "rules": {"required": ["userId"]}},
        }
    ]
    return doc


def test_snapshot_holds_every_version_and_the_common_rule() -> None:
    plan = parse_snapshot(versioned_snapshot()).tracking_plans["tp_v"]
    event = plan.by_key["track", "Checked"]
    assert [v.version for v in event.all_versions()] == [2, 3, 5]
    assert event.version == 2
    assert event.latest is not None
    assert event.latest.version == 5
    at_3 = event.at_version(3)
    assert at_3 is not None
    assert at_3.rules == rule("string")
    assert event.at_version(1) is None
    assert event.at_version(4) is None
    assert plan.common is not None
    assert (plan.common.version, plan.common.rules) == (1, {"required": ["userId"]})


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"otherVersions": []}, "otherVersions: must be an object"),
        ({"otherVersions": {"2": {}}}, "'2' is not a version above 2"),
        ({"otherVersions": {"x": {}}}, "'x' is not a version above 2"),
        ({"otherVersions": {"4": 7}}, "otherVersions.4: must be a JSON schema object"),
        ({"ruleVersion": "2"}, "ruleVersion: must be an integer"),
    ],
)
def test_snapshot_checks_versions(event: dict[str, Any], problem: str) -> None:
    with pytest.raises(SnapshotError, match=problem):
        parse_snapshot(versioned_snapshot(**event))


def test_snapshot_checks_the_common_rule() -> None:
    doc = versioned_snapshot()
    doc["trackingPlans"][0]["commonRule"] = {"version": 1, "rules": []}
    with pytest.raises(SnapshotError, match=r"commonRule.rules: must be a JSON schema object"):
        parse_snapshot(doc)


def violations(
    pinned: Any, value: Any, config: dict[str, Any] | None = None, *, anonymous: bool = False
) -> list[tuple[str, str]]:
    snapshot = parse_snapshot(versioned_snapshot(config))
    [source] = [s for s in snapshot.sources if s.id == SOURCE_ID]
    message: dict[str, Any] = {
        "type": "track",
        "event": "Checked",
        "userId": "u",
        "properties": {"n": value},
    }
    if anonymous:
        del message["userId"]
    if pinned is not None:
        message["context"] = {"protocols": {"event_version": pinned}}
    decision = Enforcer().enforce(message, source, snapshot)
    assert decision is not None
    return [(v["type"], decision.rule_version) for v in decision.violations]


@pytest.mark.parametrize(
    ("pinned", "value", "expected"),
    [
        (None, 1, []),  # no version named: the oldest, 2, wants an integer
        (None, "x", [("Datatype-Mismatch", "2")]),
        (3, "x", []),
        ("3", "x", []),  # digits are a version too
        (5, "x", [("Datatype-Mismatch", "5")]),
        (4, 1, [("Unknown-Violation", "")]),
        (1, 1, [("Unknown-Violation", "")]),
        (True, 1, [("Unknown-Violation", "")]),  # not an integer
        ("9" * 40, 1, [("Unknown-Violation", "")]),
        ("\u00b2", 1, [("Unknown-Violation", "")]),  # a digit to str.isdigit, not to int()
        ("\u0663", 1, [("Unknown-Violation", "")]),  # an Arabic-Indic 3: versions are ASCII
        ({"v": 3}, 1, [("Unknown-Violation", "")]),
    ],
)
def test_the_version_an_event_is_checked_against(
    pinned: Any, value: Any, expected: list[tuple[str, str]]
) -> None:
    assert violations(pinned, value) == expected


def test_the_default_version_and_the_common_rule() -> None:
    latest = {"track": {"defaultRuleVersion": "latest"}}
    assert violations(None, True, latest) == []  # v5 wants a boolean
    assert violations(None, 1, latest) == [("Datatype-Mismatch", "5")]
    # The common rule applies on top of the event's own, whatever the version.
    assert violations(3, "x", anonymous=True) == [("Required-Missing", "3")]
    assert violations(5, "x", anonymous=True) == [
        ("Datatype-Mismatch", "5"),
        ("Required-Missing", "5"),
    ]


async def test_migration_3_adds_what_an_older_catalog_lacks(
    store: Store, database_url: str
) -> None:
    async with store.write() as conn:
        plan = await new_plan(conn, store.workspace_id, name="Older Plan", description=None)
        event_id = await events.insert_event(
            conn, name="Old Event", event_type="track", description=None, category_id=None
        )
        await stored.put_event(
            conn, plan.id, event_id, section="properties", additional_properties=True, rules={}
        )
    # The catalog as it was before migration 3: without its columns, and not applied.
    async with store.engine.begin() as conn:
        for table, column in (
            ("tracking_plans", "plan_type"),
            ("tracking_plans", "common_rule"),
            ("tracking_plan_events", "rule_version"),
            ("tracking_plan_events", "other_versions"),
        ):
            await conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        migrations = schema.schema_migrations
        await conn.execute(delete(migrations).where(migrations.c.version == 3))
    await store.close()

    again = Store(database_url)
    await again.open()
    try:
        async with again.read() as conn:
            row = await stored.get(conn, plan.id)
            [event] = await stored.events(conn, plan.id)
        assert (row.plan_type, row.common_rule) == ("LIVE", None)
        assert (event.rule_version, event.other_versions) == (1, None)
        async with again.write() as conn:
            await stored.set_common_rule(conn, plan.id, {"version": 1, "rules": {}})
        async with again.read() as conn:
            assert (await stored.get(conn, plan.id)).common_rule == {"version": 1, "rules": {}}
    finally:
        await again.close()
