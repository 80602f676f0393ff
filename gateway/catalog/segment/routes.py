"""Every operation of the Segment API's tracking-plan surface, in one table: the admin app
registers it (gateway.catalog.segment) and ``/openapi.json`` is generated from it."""

from gateway.catalog.declared import Route
from gateway.catalog.http import SEGMENT_PREFIX
from gateway.catalog.plans import TrackingPlanUpdate
from gateway.catalog.segment import ListQuery, Status
from gateway.catalog.segment import plans as p
from gateway.catalog.segment import rules as r

PLAN = SEGMENT_PREFIX + "/{trackingPlanId}"
RULES = PLAN + "/rules"
SOURCES = PLAN + "/sources"
NOT_FOUND = (404, 422)

SEGMENT_ROUTES = [
    Route(
        "POST",
        SEGMENT_PREFIX,
        "createTrackingPlan",
        "Create a tracking plan",
        p.create_plan,
        body=p.PlanCreate,
        answer=p.PlanAnswer,
        errors=(422,),
    ),
    Route(
        "GET",
        SEGMENT_PREFIX,
        "listTrackingPlans",
        "List tracking plans",
        p.list_plans,
        query=p.PlanListQuery,
        answer=p.PlanList,
        errors=(422,),
    ),
    Route(
        "GET",
        PLAN,
        "getTrackingPlan",
        "Get a tracking plan",
        p.get_plan,
        answer=p.PlanAnswer,
        errors=NOT_FOUND,
    ),
    Route(
        "PATCH",
        PLAN,
        "updateTrackingPlan",
        "Rename or describe a tracking plan",
        p.update_plan,
        body=TrackingPlanUpdate,
        answer=p.PlanUpdated,
        errors=NOT_FOUND,
    ),
    Route(
        "DELETE",
        PLAN,
        "deleteTrackingPlan",
        "Delete a tracking plan",
        p.delete_plan,
        answer=Status,
        errors=NOT_FOUND,
    ),
    Route(
        "GET",
        RULES,
        "listRulesFromTrackingPlan",
        "List a tracking plan's rules",
        r.list_rules,
        query=ListQuery,
        answer=r.RuleList,
        errors=NOT_FOUND,
        description="At most `admin.segment_rules_requests_per_minute` calls a minute per token.",
    ),
    Route(
        "PUT",
        RULES,
        "replaceRulesInTrackingPlan",
        "Replace a tracking plan's rules",
        r.replace_rules,
        body=r.RulesInput,
        answer=Status,
        errors=NOT_FOUND,
    ),
    Route(
        "PATCH",
        RULES,
        "updateRulesInTrackingPlan",
        "Add or update rules of a tracking plan",
        r.update_rules,
        body=r.RulesInput,
        answer=Status,
        errors=NOT_FOUND,
    ),
    Route(
        "DELETE",
        RULES,
        "removeRulesFromTrackingPlan",
        "Remove rules from a tracking plan",
        r.remove_rules,
        query=r.RuleRemoval,
        answer=Status,
        errors=NOT_FOUND,
    ),
    Route(
        "POST",
        SOURCES,
        "addSourceToTrackingPlan",
        "Connect a source to a tracking plan",
        p.add_source,
        body=p.SourceConnect,
        answer=Status,
        errors=NOT_FOUND,
    ),
    Route(
        "GET",
        SOURCES,
        "listSourcesFromTrackingPlan",
        "List the sources connected to a tracking plan",
        p.list_sources,
        query=ListQuery,
        answer=p.SourceList,
        errors=NOT_FOUND,
    ),
    Route(
        "DELETE",
        SOURCES,
        "removeSourceFromTrackingPlan",
        "Disconnect a source from a tracking plan",
        p.remove_source,
        query=p.SourceQuery,
        answer=Status,
        errors=NOT_FOUND,
    ),
]
