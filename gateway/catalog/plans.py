"""Tracking plans and their events (RudderStack Data Catalog API), declared, with full history.

    POST   /catalog/tracking-plans                              create (version 1)
    GET    /catalog/tracking-plans                              {"trackingPlans": [...]}
    GET    /catalog/tracking-plans/{id}[?version=N]             the plan with its events
    PUT    /catalog/tracking-plans/{id}                         name / description
    DELETE /catalog/tracking-plans/{id}                         the plan as it was; connections go
    PATCH  /catalog/tracking-plans/{id}/events                  upsert an event with its rules
    POST   /catalog/tracking-plans/{id}/events                  … with its properties, by name
    PUT    /catalog/tracking-plans/{id}/events                  … with catalog properties, by id
    GET    /catalog/tracking-plans/{id}/events[?page=N]         paginated plan events
    GET    /catalog/tracking-plans/{id}/events/{eventId}        one event with its rules
    DELETE /catalog/tracking-plans/{id}/events/{eventId}        204

Every change to a plan or its events bumps ``version`` and records the whole plan (fields,
events and rules) in its history, so ``?version=N`` returns exactly what was. Renaming a
catalog event its plans use is such a change too (:func:`bump_plans_using`).
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.catalog import changelog
from gateway.catalog import properties_form as form
from gateway.catalog import request_rules as v
from gateway.catalog.declared import Input, Page, PlanPageQuery, Route
from gateway.catalog.models import (
    CatalogEvent,
    EntityName,
    EventName,
    EventType,
    Id,
    IdentitySection,
    Rules,
    RuleSchema,
    SectionChoice,
    Time,
    event_of,
)
from gateway.catalog.rules import check_rule, recheck
from gateway.catalog.store import categories, new_id
from gateway.catalog.store import events as catalog_events
from gateway.catalog.store import plans as stored
from gateway.catalog.store.schema import MAX_INTEGER
from gateway.errors import BadRequest, NotFound

CREATION_TYPE = "BackendAPI"
PLANS = "/catalog/tracking-plans"

# --- types -------------------------------------------------------------------------------------


class TrackingPlan(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    name: str
    description: str | None
    version: Annotated[int, msgspec.Meta(ge=1)]
    workspace_id: str
    creation_type: str
    created_at: Time
    updated_at: Time


class PlanEvent(CatalogEvent, kw_only=True):
    identity_section: IdentitySection
    additional_properties: Annotated[
        bool,
        msgspec.Meta(description="Whether the rules allow unplanned keys in the identity section."),
    ]


class RuleVersion(msgspec.Struct, rename="camel", kw_only=True):
    """A version of a rule (Segment's event versioning; gateway.catalog.segment)."""

    version: int
    rules: RuleSchema
    created_at: Time
    updated_at: Time


class PlanEventWithRules(PlanEvent, kw_only=True):
    """An event with its rules. An event with several versions of its rule (made through the
    Segment API) has ``rules`` = its oldest, numbered ``ruleVersion``, and the others in
    ``otherRuleVersions``."""

    rules: RuleSchema
    rule_version: int | UnsetType = UNSET
    other_rule_versions: list[RuleVersion] | UnsetType = UNSET


class TrackingPlanWithEvents(TrackingPlan, kw_only=True):
    """A plan with its events and their rules (as of ``version``), and its common rule, which
    every event must satisfy too, if it has one (made through the Segment API)."""

    events: list[PlanEventWithRules]
    common_rule: RuleVersion | UnsetType = UNSET


class TrackingPlanList(msgspec.Struct, rename="camel"):
    tracking_plans: list[TrackingPlan]


class DescribedProperty(msgspec.Struct, rename="camel", kw_only=True):
    id: Annotated[
        str | None, msgspec.Meta(description="The matching catalog property; null if none.")
    ]
    name: str
    # As the rules say it: a property form writes a type, a list of types or "" (any type),
    # or a custom type's name; a rule written by hand may say anything its schema allows.
    type: Annotated[
        Any, msgspec.Meta(description='A type, a list of types, "" or a custom type\'s name.')
    ]
    prop_config: dict[str, Any]
    required: bool
    additional_properties: bool | dict[str, Any] | UnsetType = UNSET
    properties: list[DescribedProperty] | UnsetType = UNSET


class PlanEventView(PlanEvent, kw_only=True):
    """One event of a plan: ``rules`` (``?format=schema``) or ``properties``
    (``?format=properties``: the rules described as catalog properties)."""

    rules: RuleSchema | UnsetType = UNSET
    properties: list[DescribedProperty] | UnsetType = UNSET


Description = str | None


class TrackingPlanCreate(msgspec.Struct):
    name: EntityName
    description: Description = None


class TrackingPlanUpdate(msgspec.Struct):
    """At least one field."""

    name: EntityName | UnsetType = UNSET
    description: Description | UnsetType = UNSET


class PlanEventRulesUpsert(msgspec.Struct, rename="camel", kw_only=True):
    """An event with its JSON-Schema rules; the catalog event is created if missing."""

    rules: Rules
    event_type: EventType = "track"
    name: EventName | None = None
    identity_section: SectionChoice = None
    description: Description = None
    category_id: Id | None = None


class PlanEventPropertiesUpsert(msgspec.Struct, rename="camel", kw_only=True):
    """An event with its properties by name; missing catalog properties and the event are
    created."""

    event_type: EventType
    properties: Annotated[list[form.PropertyByName], msgspec.Meta(min_length=1)]
    name: EventName | None = None
    identity_section: SectionChoice = None
    description: Description = None
    category_id: Id | None = None


class PlanEventIdsUpsert(msgspec.Struct, rename="camel", kw_only=True):
    """A catalog event with catalog properties, by id."""

    id: Annotated[str, msgspec.Meta(min_length=1, description="A catalog event id.")]
    properties: Annotated[list[form.PropertyById], msgspec.Meta(min_length=1)]
    identity_section: SectionChoice = None


class VersionQuery(msgspec.Struct):
    version: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=MAX_INTEGER,
                description="Return the plan exactly as it was at this version (events and "
                "rules included).",
            ),
        ]
        | None
    ) = None


class FormatQuery(msgspec.Struct):
    format: Annotated[
        Literal["schema", "properties"],
        msgspec.Meta(
            description="`schema`: the event with its `rules`; `properties`: its rules described "
            "as catalog properties."
        ),
    ] = "schema"


# --- documents ---------------------------------------------------------------------------------


def _plan(row: Any, workspace_id: str) -> TrackingPlan:
    return TrackingPlan(
        id=row.id,
        name=row.name,
        description=row.description,
        version=row.version,
        workspace_id=workspace_id,
        creation_type=row.creation_type,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _plan_event_fields(row: Any, workspace_id: str) -> dict[str, Any]:
    event = msgspec.structs.asdict(event_of(row, workspace_id))
    return {
        **event,
        "identity_section": row.identity_section,
        "additional_properties": bool(row.additional_properties),
    }


async def current_plan(
    conn: AsyncConnection, plan_id: str, workspace_id: str
) -> TrackingPlanWithEvents:
    """The plan as it is now: fields, events and their rules (every version of them), and its
    common rule."""
    row = await stored.get(conn, plan_id)
    plan = _plan(row, workspace_id)
    events = [_plan_event_with_rules(e, workspace_id) for e in await stored.events(conn, plan_id)]
    document = TrackingPlanWithEvents(**msgspec.structs.asdict(plan), events=events)
    if row.common_rule is not None:
        document.common_rule = msgspec.convert(row.common_rule, RuleVersion)
    return document


def _plan_event_with_rules(row: Any, workspace_id: str) -> PlanEventWithRules:
    event = PlanEventWithRules(**_plan_event_fields(row, workspace_id), rules=row.rules)
    if row.rule_version != 1 or row.other_versions:
        event.rule_version = row.rule_version
    if row.other_versions:
        event.other_rule_versions = [
            RuleVersion(
                version=int(number),
                rules=other["rules"],
                created_at=other["createdAt"],
                updated_at=other["updatedAt"],
            )
            for number, other in sorted(row.other_versions.items(), key=lambda kv: int(kv[0]))
        ]
    return event


async def record_version(
    conn: AsyncConnection, plan_id: str, workspace_id: str
) -> TrackingPlanWithEvents:
    document = await current_plan(conn, plan_id, workspace_id)
    await stored.insert_version(conn, plan_id, document.version, msgspec.to_builtins(document))
    return document


async def bump(
    conn: AsyncConnection, plan_id: str, workspace_id: str, **values: Any
) -> TrackingPlan:
    """A new version of the plan: apply ``values``, bump, record the whole plan."""
    await stored.next_version(conn, plan_id, **values)
    document = await record_version(conn, plan_id, workspace_id)
    changelog.plan_moved(plan_id, document.version - 1, document.version)
    return _without_events(document)


async def bump_plans_using(conn: AsyncConnection, event_id: str, workspace_id: str) -> None:
    """A catalog event changed: every plan using it gets a new version."""
    for plan_id in await stored.using_event(conn, event_id):
        await bump(conn, plan_id, workspace_id)


def _without_events(document: TrackingPlanWithEvents) -> TrackingPlan:
    return TrackingPlan(**{f: getattr(document, f) for f in TrackingPlan.__struct_fields__})


# --- tracking plans ----------------------------------------------------------------------------


async def new_plan(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    name: str,
    description: str | None,
    creation_type: str = CREATION_TYPE,
    plan_type: str = "LIVE",
) -> TrackingPlan:
    """A new plan, at version 1 (recorded)."""
    plan_id = new_id("tp")
    await stored.insert_plan(
        conn,
        plan_id,
        name=name,
        description=description,
        creation_type=creation_type,
        plan_type=plan_type,
    )
    document = await record_version(conn, plan_id, workspace_id)
    changelog.plan_moved(plan_id, None, 1)
    return _without_events(document)


async def remove_plan(
    conn: AsyncConnection, plan_id: str, workspace_id: str
) -> TrackingPlanWithEvents:
    """Delete the plan, its history and its connections; the plan as it was."""
    document = await current_plan(conn, plan_id, workspace_id)
    await stored.delete_plan(conn, plan_id)
    changelog.plan_moved(plan_id, document.version, None)
    return document


async def create_plan(call: Input[TrackingPlanCreate, None]) -> TrackingPlan:
    async with call.store.write() as conn:
        return await new_plan(
            conn, call.store.workspace_id, name=call.body.name, description=call.body.description
        )


async def list_plans(call: Input[None, None]) -> TrackingPlanList:
    async with call.store.read() as conn:
        rows = await stored.list_all(conn)
    return TrackingPlanList([_plan(row, call.store.workspace_id) for row in rows])


async def get_plan(call: Input[None, VersionQuery]) -> TrackingPlanWithEvents:
    plan_id, version = call.path["plan_id"], call.query.version
    async with call.store.read() as conn:
        if version is None:
            return await current_plan(conn, plan_id, call.store.workspace_id)
        await stored.get(conn, plan_id)
        document = await stored.version_document(conn, plan_id, version)
    if document is None:
        raise NotFound(f"tracking plan {plan_id} has no version {version}")
    return msgspec.convert(document, TrackingPlanWithEvents)


async def change_plan(
    conn: AsyncConnection, plan_id: str, workspace_id: str, change: TrackingPlanUpdate
) -> TrackingPlan:
    """Rename or describe the plan: a new version."""
    values = {
        field: value
        for field, value in (("name", change.name), ("description", change.description))
        if value is not UNSET
    }
    if not values:
        raise BadRequest("send at least one of name, description")
    await stored.get(conn, plan_id)
    return await bump(conn, plan_id, workspace_id, **values)


async def update_plan(call: Input[TrackingPlanUpdate, None]) -> TrackingPlan:
    async with call.store.write() as conn:
        return await change_plan(conn, call.path["plan_id"], call.store.workspace_id, call.body)


async def delete_plan(call: Input[None, None]) -> TrackingPlanWithEvents:
    async with call.store.write() as conn:
        return await remove_plan(conn, call.path["plan_id"], call.store.workspace_id)


# --- events of a plan --------------------------------------------------------------------------


def _additional_properties(rules: dict[str, Any], section: str) -> bool:
    """Whether the rules allow properties beyond the planned ones in the identity section."""
    node: Any = rules
    for part in section.split("."):
        node = node.get("properties", {}).get(part, {}) if isinstance(node, dict) else {}
    return not (isinstance(node, dict) and node.get("additionalProperties") is False)


def section_for(choice: str | None, event_type: str) -> str:
    return choice or ("traits" if event_type in ("identify", "group") else "properties")


async def find_or_create_event(
    conn: AsyncConnection,
    *,
    name: str,
    event_type: str,
    description: str | None,
    category_id: str | None,
) -> str:
    """The catalog event with this name and type, created if missing; a description or
    category given updates it."""
    if category_id is not None:
        await ensure_category(conn, category_id)
    event = await catalog_events.named(conn, name, event_type)
    if event is None:
        return await catalog_events.insert_event(
            conn,
            name=name,
            event_type=event_type,
            description=description,
            category_id=category_id,
        )
    changes = {
        k: val
        for k, val in (("description", description), ("category_id", category_id))
        if val is not None
    }
    if changes:
        await catalog_events.update_event(conn, event.id, **changes)
    return str(event.id)


async def ensure_category(conn: AsyncConnection, category_id: str) -> None:
    if await categories.find(conn, category_id) is None:
        raise BadRequest(f"category {category_id} does not exist")


async def put_plan_event(
    conn: AsyncConnection, plan_id: str, event_id: str, section: str, rules: dict[str, Any]
) -> None:
    """Insert or replace one event's rules in a plan (checked by the caller: see rules.py)."""
    await stored.put_event(
        conn,
        plan_id,
        event_id,
        section=section,
        additional_properties=_additional_properties(rules, section),
        rules=rules,
    )


async def _rules_from_catalog(
    conn: AsyncConnection, specs: list[form.PropertySpec], section: str
) -> dict[str, Any]:
    """The rules ``specs`` make with the catalog as it is, read before the write transaction
    (which builds them again) so they are checked outside it; creates nothing."""
    unresolved = copy.deepcopy(specs)  # resolve() fills the specs in
    await form.resolve(conn, unresolved, create=False)
    return form.build_rules(unresolved, section)


async def upsert_event_with_rules(call: Input[PlanEventRulesUpsert, None]) -> TrackingPlan:
    body = call.body
    name = v.event_name(body.name, body.event_type)
    section = section_for(body.identity_section, body.event_type)
    await check_rule(body.rules)
    plan_id = call.path["plan_id"]
    async with call.store.write() as conn:
        await stored.get(conn, plan_id)
        event_id = await find_or_create_event(
            conn,
            name=name,
            event_type=body.event_type,
            description=body.description,
            category_id=body.category_id,
        )
        await put_plan_event(conn, plan_id, event_id, section, body.rules)
        return await bump(conn, plan_id, call.store.workspace_id)


async def upsert_event_with_properties(
    call: Input[PlanEventPropertiesUpsert, None],
) -> TrackingPlan:
    body = call.body
    name = v.event_name(body.name, body.event_type)
    section = section_for(body.identity_section, body.event_type)
    specs = form.by_name(body.properties)
    plan_id = call.path["plan_id"]
    async with call.store.read() as conn:
        await stored.get(conn, plan_id)
        checked = await _rules_from_catalog(conn, specs, section)
    await check_rule(checked)
    async with call.store.write() as conn:
        await stored.get(conn, plan_id)
        await form.resolve(conn, specs)
        event_id = await find_or_create_event(
            conn,
            name=name,
            event_type=body.event_type,
            description=body.description,
            category_id=body.category_id,
        )
        rules = form.build_rules(specs, section)
        await recheck(rules, checked)
        await put_plan_event(conn, plan_id, event_id, section, rules)
        return await bump(conn, plan_id, call.store.workspace_id)


async def upsert_event_with_ids(call: Input[PlanEventIdsUpsert, None]) -> TrackingPlan:
    body = call.body
    specs = form.by_id(body.properties)
    plan_id = call.path["plan_id"]

    async def section_of_event(conn: AsyncConnection) -> str:
        await stored.get(conn, plan_id)
        event = await catalog_events.find(conn, body.id)
        if event is None:
            raise BadRequest(f"event {body.id} does not exist")
        return section_for(body.identity_section, event.event_type)

    async with call.store.read() as conn:
        checked = await _rules_from_catalog(conn, specs, await section_of_event(conn))
    await check_rule(checked)
    async with call.store.write() as conn:
        section = await section_of_event(conn)
        await form.resolve(conn, specs)
        rules = form.build_rules(specs, section)
        await recheck(rules, checked)
        await put_plan_event(conn, plan_id, body.id, section, rules)
        return await bump(conn, plan_id, call.store.workspace_id)


async def list_plan_events(call: Input[None, PlanPageQuery]) -> Page[PlanEvent]:
    plan_id, number = call.path["plan_id"], call.query.page
    workspace_id = call.store.workspace_id
    async with call.store.read() as conn:
        await stored.get(conn, plan_id)
        total, rows = await stored.events_page(conn, plan_id, number, v.PAGE_SIZE)
    items = [PlanEvent(**_plan_event_fields(row, workspace_id)) for row in rows]
    return Page(items, total, number, v.PAGE_SIZE)


async def get_plan_event(call: Input[None, FormatQuery]) -> PlanEventView:
    plan_id, event_id = call.path["plan_id"], call.path["event_id"]
    async with call.store.read() as conn:
        row = await stored.event(conn, plan_id, event_id)
        fields = _plan_event_fields(row, call.store.workspace_id)
        if call.query.format == "schema":
            return PlanEventView(**fields, rules=row.rules)
        described = form.rules_to_properties(row.rules, row.identity_section)
        await form.attach_ids(conn, described)
    return PlanEventView(**fields, properties=msgspec.convert(described, list[DescribedProperty]))


async def delete_plan_event(call: Input[None, None]) -> None:
    plan_id, event_id = call.path["plan_id"], call.path["event_id"]
    async with call.store.write() as conn:
        await stored.event(conn, plan_id, event_id)
        await stored.remove_event(conn, plan_id, event_id)
        await bump(conn, plan_id, call.store.workspace_id)


# --- routes ------------------------------------------------------------------------------------

PLAN = PLANS + "/{plan_id}"
EVENTS = PLAN + "/events"
EVENT = EVENTS + "/{event_id}"
UPSERTED = "The plan (new version, without events)."
ROUTES = [
    Route(
        "POST",
        PLANS,
        "createTrackingPlan",
        "Create a tracking plan (version 1)",
        create_plan,
        body=TrackingPlanCreate,
        answer=TrackingPlan,
        answer_description="The plan.",
        errors=(400,),
    ),
    Route(
        "GET",
        PLANS,
        "listTrackingPlans",
        "List tracking plans",
        list_plans,
        answer=TrackingPlanList,
        answer_description="All plans, without events.",
    ),
    Route(
        "GET",
        PLAN,
        "getTrackingPlan",
        "Get a tracking plan with its events and rules",
        get_plan,
        query=VersionQuery,
        answer=TrackingPlanWithEvents,
        answer_description="The plan, now or at `version`.",
        errors=(400, 404),
    ),
    Route(
        "PUT",
        PLAN,
        "updateTrackingPlan",
        "Rename or describe a tracking plan",
        update_plan,
        body=TrackingPlanUpdate,
        answer=TrackingPlan,
        answer_description="The plan (new version).",
        errors=(400, 404),
    ),
    Route(
        "DELETE",
        PLAN,
        "deleteTrackingPlan",
        "Delete a tracking plan and its connections",
        delete_plan,
        answer=TrackingPlanWithEvents,
        answer_description="The plan as it was.",
        errors=(404,),
    ),
    Route(
        "PATCH",
        EVENTS,
        "upsertPlanEventRules",
        "Add or update an event with its rules",
        upsert_event_with_rules,
        body=PlanEventRulesUpsert,
        answer=TrackingPlan,
        answer_description=UPSERTED,
        errors=(400, 404),
    ),
    Route(
        "POST",
        EVENTS,
        "upsertPlanEventProperties",
        "Add or update an event with its properties (by name)",
        upsert_event_with_properties,
        body=PlanEventPropertiesUpsert,
        answer=TrackingPlan,
        answer_description=UPSERTED,
        errors=(400, 404),
    ),
    Route(
        "PUT",
        EVENTS,
        "upsertPlanEventIds",
        "Add or update a catalog event with catalog properties (by id)",
        upsert_event_with_ids,
        body=PlanEventIdsUpsert,
        answer=TrackingPlan,
        answer_description=UPSERTED,
        errors=(400, 404),
    ),
    Route(
        "GET",
        EVENTS,
        "listPlanEvents",
        "List a plan's events",
        list_plan_events,
        query=PlanPageQuery,
        answer=Page[PlanEvent],
        answer_description="A page of events, without rules.",
        errors=(400, 404),
    ),
    Route(
        "GET",
        EVENT,
        "getPlanEvent",
        "Get one of a plan's events",
        get_plan_event,
        query=FormatQuery,
        answer=PlanEventView,
        answer_description="The event with its rules (or, `?format=properties`, its properties).",
        errors=(400, 404),
    ),
    Route(
        "DELETE",
        EVENT,
        "deletePlanEvent",
        "Remove an event from a plan (new version)",
        delete_plan_event,
        errors=(404,),
    ),
]
