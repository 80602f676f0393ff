"""A plan's rules, the Segment way (see gateway.catalog.segment).

Rules and plan events are one thing seen two ways: a ``TRACK`` rule is the plan's event of that
name (its ``key``); an ``IDENTIFY``, ``GROUP``, ``PAGE`` or ``SCREEN`` rule is the plan's event
of that type (whose key is ""); ``jsonSchema`` is the event's rules, over the whole message. An
event may have several versions of its rule: the RudderStack-compatible API shows and changes
its oldest as ``rules`` (numbered ``ruleVersion`` when there are others, listed in
``otherRuleVersions``). A ``COMMON`` rule is the plan's common rule, which every event of the
plan's sources must satisfy besides its own. Each request that changes rules is one new plan
version, recorded like any other.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog import plans as plan_service
from gateway.catalog import request_rules as v
from gateway.catalog.declared import Input
from gateway.catalog.models import RuleSchema, Time
from gateway.catalog.rules import check_rule
from gateway.catalog.segment import SUCCESS, ListQuery, Pagination, Status, page_of
from gateway.catalog.store import events as catalog_events
from gateway.catalog.store import now_text
from gateway.catalog.store import plans as stored
from gateway.catalog.store.schema import MAX_INTEGER
from gateway.errors import NotFound
from gateway.plans.snapshot import COMMON

RuleType = Literal["TRACK", "IDENTIFY", "GROUP", "PAGE", "SCREEN", "COMMON"]
Version = Annotated[int, msgspec.Meta(ge=1, le=MAX_INTEGER)]
Key = Annotated[
    str,
    msgspec.Meta(description='A TRACK rule\'s event name; "" (or anything) for the other types.'),
]

# --- types -------------------------------------------------------------------------------------


class Rule(msgspec.Struct, rename="camel", kw_only=True):
    key: str
    type: RuleType
    version: int
    json_schema: RuleSchema
    created_at: Time
    updated_at: Time
    deprecated_at: Time | None = None


class RuleList(msgspec.Struct):
    rules: list[Rule]
    pagination: Pagination


class RuleInput(msgspec.Struct, rename="camel", kw_only=True):
    type: RuleType
    json_schema: RuleSchema
    key: Key = ""
    version: Version = 1


class RulesInput(msgspec.Struct):
    rules: Annotated[list[RuleInput], msgspec.Meta(max_length=1000)]


class RuleKey(msgspec.Struct):
    type: RuleType
    key: Key = ""
    version: Version = 1


class RuleRemoval(msgspec.Struct):
    """``rules.0.key=…&rules.0.type=TRACK&rules.0.version=1``, ``rules.1.…``, …"""

    rules: Annotated[list[RuleKey], msgspec.Meta(min_length=1)]


# --- reading -----------------------------------------------------------------------------------

# {version: {"rules", "createdAt", "updatedAt"}} of one plan event
Versions = dict[int, dict[str, Any]]


def versions_of(row: Any) -> Versions:
    """Every version of a plan event's rule: its oldest (``rules``) and the others."""
    versions: Versions = {
        row.rule_version: {
            "rules": row.rules,
            "createdAt": row.added_at,
            "updatedAt": row.changed_at,
        }
    }
    for number, other in (row.other_versions or {}).items():
        versions[int(number)] = other
    return versions


def _rule(kind: str, key: str, version: int, value: dict[str, Any]) -> Rule:
    return Rule(
        key=key,
        type=kind,  # type: ignore[arg-type]  # one of RuleType by construction
        version=version,
        json_schema=value["rules"],
        created_at=value["createdAt"],
        updated_at=value["updatedAt"],
    )


async def rules_of(conn: AsyncConnection, plan_id: str) -> list[Rule]:
    """The plan's rules: its common rule first, then each event's versions, oldest first."""
    plan = await stored.get(conn, plan_id)
    rules = []
    if plan.common_rule is not None:
        common = plan.common_rule
        rules.append(_rule(COMMON.upper(), "", common["version"], common))
    for row in await stored.events(conn, plan_id):
        for number, value in sorted(versions_of(row).items()):
            rules.append(_rule(row.event_type.upper(), row.name, number, value))
    return rules


# --- writing -----------------------------------------------------------------------------------


async def _event_in_plan(conn: AsyncConnection, plan_id: str, rule: RuleInput | RuleKey) -> Any:
    """The plan event a rule is, or None if the plan has none such."""
    event_type = rule.type.lower()
    name = rule.key if event_type == "track" else ""
    event = await catalog_events.named(conn, name, event_type)
    if event is None:
        return None
    return await stored.find_event(conn, plan_id, event.id)


async def _put_rule(conn: AsyncConnection, plan_id: str, rule: RuleInput) -> None:
    now = now_text()
    if rule.type == "COMMON":
        plan = await stored.get(conn, plan_id)
        since = plan.common_rule["createdAt"] if plan.common_rule is not None else now
        common = {"version": rule.version, "rules": rule.json_schema, "createdAt": since}
        await stored.set_common_rule(conn, plan_id, {**common, "updatedAt": now})
        return
    event_type = rule.type.lower()
    name = v.event_name(rule.key if event_type == "track" else "", event_type)
    row = await _event_in_plan(conn, plan_id, rule)
    if row is None:
        event_id = await plan_service.find_or_create_event(
            conn, name=name, event_type=event_type, description=None, category_id=None
        )
        section = plan_service.section_for(None, event_type)
        await plan_service.put_plan_event(conn, plan_id, event_id, section, rule.json_schema)
        await stored.put_versions(
            conn, plan_id, event_id, rule_version=rule.version, other_versions=None
        )
        return
    versions = versions_of(row)
    since = versions[rule.version]["createdAt"] if rule.version in versions else now
    versions[rule.version] = {"rules": rule.json_schema, "createdAt": since, "updatedAt": now}
    await _write_versions(conn, plan_id, row, versions)


async def _write_versions(
    conn: AsyncConnection, plan_id: str, row: Any, versions: Versions
) -> None:
    """Store a plan event's versions: the oldest as its rules, the others beside them."""
    oldest = min(versions)
    await plan_service.put_plan_event(
        conn, plan_id, row.id, row.identity_section, versions[oldest]["rules"]
    )
    others = {str(n): value for n, value in versions.items() if n != oldest}
    await stored.put_versions(conn, plan_id, row.id, rule_version=oldest, other_versions=others)


async def _remove_rule(conn: AsyncConnection, plan_id: str, rule: RuleKey) -> None:
    missing = NotFound(
        f"tracking plan {plan_id} has no {rule.type} rule {rule.key!r} version {rule.version}"
    )
    if rule.type == "COMMON":
        plan = await stored.get(conn, plan_id)
        if plan.common_rule is None or plan.common_rule["version"] != rule.version:
            raise missing
        await stored.set_common_rule(conn, plan_id, None)
        return
    row = await _event_in_plan(conn, plan_id, rule)
    versions = versions_of(row) if row is not None else {}
    if versions.pop(rule.version, None) is None:
        raise missing
    if versions:
        await _write_versions(conn, plan_id, row, versions)
    else:
        await stored.remove_event(conn, plan_id, row.id)


async def _check(rules: list[RuleInput]) -> None:
    """Refuse (422) a rule that could not be served, before the write transaction opens."""
    for i, rule in enumerate(rules):
        await check_rule(rule.json_schema, f"rules[{i}].jsonSchema")


# --- operations --------------------------------------------------------------------------------


async def list_rules(call: Input[None, ListQuery]) -> RuleList:
    async with call.store.read() as conn:
        rules = await rules_of(conn, call.path["trackingPlanId"])
    page = page_of(rules, call.query.pagination)
    return RuleList(page.items, page.pagination)


async def update_rules(call: Input[RulesInput, None]) -> Status:
    """Add the rules, or replace those of the same type, key and version."""
    return await _put_rules(call, replace=False)


async def replace_rules(call: Input[RulesInput, None]) -> Status:
    """The plan's rules become exactly these."""
    return await _put_rules(call, replace=True)


async def _put_rules(call: Input[RulesInput, None], *, replace: bool) -> Status:
    await _check(call.body.rules)
    plan_id = call.path["trackingPlanId"]
    async with call.store.write() as conn:
        await stored.get(conn, plan_id)
        if replace:
            for row in await stored.events(conn, plan_id):
                await stored.remove_event(conn, plan_id, row.id)
            await stored.set_common_rule(conn, plan_id, None)
        for rule in call.body.rules:
            await _put_rule(conn, plan_id, rule)
        await plan_service.bump(conn, plan_id, call.store.workspace_id)
    return SUCCESS


async def remove_rules(call: Input[None, RuleRemoval]) -> Status:
    plan_id = call.path["trackingPlanId"]
    async with call.store.write() as conn:
        await stored.get(conn, plan_id)
        for rule in call.query.rules:
            await _remove_rule(conn, plan_id, rule)
        await plan_service.bump(conn, plan_id, call.store.workspace_id)
    return SUCCESS
