"""The part of ``/openapi.json`` for the routes both ports serve (probes, metrics, the document
itself) and the admin port's plan snapshot (gateway.openapi assembles the document)."""

from __future__ import annotations

from gateway.catalog import request_rules as v
from gateway.document import (
    ADMIN_SECURITY,
    ANY_OBJECT,
    IF_NONE_MATCH,
    JSON,
    PUBLIC,
    array,
    error,
    nullable,
    obj,
    ok,
    operation,
    ref,
)
from gateway.plans.providers import SNAPSHOT_PATH
from gateway.plans.snapshot import IDENTITY_SECTIONS

OPENAPI_PATH = "/openapi.json"
ADMIN, OPERATIONS = "admin", "operations"


def _snapshot_schema() -> JSON:
    snapshot_event = obj(
        {
            "name": {"type": "string"},
            "eventType": {"type": "string", "enum": list(v.PLANNED_EVENT_TYPES)},
            "identitySection": {"type": "string", "enum": list(IDENTITY_SECTIONS)},
            "rules": ANY_OBJECT,
            "ruleVersion": {
                "type": "integer",
                "minimum": 1,
                "description": "The number of `rules` (default 1), the event's oldest version.",
            },
            "otherVersions": {
                "type": "object",
                "additionalProperties": ANY_OBJECT,
                "description": "The event's other rule versions: their numbers → rules.",
            },
        },
        ("name", "eventType", "identitySection", "rules"),
    )
    return {
        "Snapshot": obj(
            {
                "revision": {"type": "string"},
                "sources": array(
                    obj(
                        {
                            "id": {"type": "string"},
                            "name": {"type": "string"},
                            "enabled": {"type": "boolean"},
                            "writeKeys": array({"type": "string"}),
                            "trackingPlan": nullable(
                                obj(
                                    {
                                        "id": {"type": "string"},
                                        "version": {"type": "integer"},
                                        "config": ANY_OBJECT,
                                    },
                                    ("id", "version", "config"),
                                )
                            ),
                        },
                        ("id", "name", "enabled", "writeKeys", "trackingPlan"),
                    )
                ),
                "trackingPlans": array(
                    obj(
                        {
                            "id": {"type": "string"},
                            "name": {"type": "string"},
                            "version": {"type": "integer"},
                            "events": array(snapshot_event),
                            "commonRule": obj(
                                {"version": {"type": "integer"}, "rules": ANY_OBJECT},
                                ("version", "rules"),
                                description="Checked on every event besides its own rule.",
                            ),
                        },
                        ("id", "name", "version", "events"),
                    )
                ),
            },
            ("revision", "sources", "trackingPlans"),
            description="The plan snapshot ingest replicas load: every source with its write keys "
            "and connected plan, and every connected plan's events and rules.",
        ),
    }


def operations_schemas() -> JSON:
    return {
        "Error": obj(
            {
                "code": {"type": "string", "description": "Machine-readable, e.g. `not_found`."},
                "message": {"type": "string"},
            },
            ("code", "message"),
        ),
        "Liveness": obj({"status": {"const": "ok"}}, ("status",)),
        "Readiness": obj(
            {
                "status": {"type": "string", "enum": ["ready", "not ready"]},
                "snapshotRevision": {
                    "type": ["string", "null"],
                    "description": "Ingest: the revision of the plan snapshot being served.",
                },
            },
            ("status",),
            additionalProperties={"type": "boolean"},
            description="`status`, one boolean per check (`kafka`, `snapshot`, `catalog`, and on "
            "the admin port `snapshotBuild`) and, on the ingest port, `snapshotRevision`.",
        ),
        **_snapshot_schema(),
    }


def operations_paths() -> JSON:
    return {
        "/health/live": {
            "get": operation(
                OPERATIONS,
                "live",
                "Liveness probe",
                {"200": ok("The process runs.", ref("Liveness"))},
                security=PUBLIC,
            )
        },
        "/health/ready": {
            "get": operation(
                OPERATIONS,
                "ready",
                "Readiness probe",
                {
                    "200": ok("Every check passes.", ref("Readiness")),
                    "503": ok("A check fails (named false).", ref("Readiness")),
                },
                security=PUBLIC,
                description="Ingest: Kafka answers and a plan snapshot is loaded; admin: the "
                "catalog database answers and its plan snapshot builds.",
            )
        },
        "/metrics": {
            "get": operation(
                OPERATIONS,
                "metrics",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                security=PUBLIC,
            )
        },
        OPENAPI_PATH: {
            "get": operation(
                OPERATIONS,
                "openapi",
                "This OpenAPI document",
                {"200": ok("The OpenAPI 3.1 description of both ports.", ANY_OBJECT)},
                security=PUBLIC,
            )
        },
        SNAPSHOT_PATH: {
            "get": operation(
                ADMIN,
                "getSnapshot",
                "The plan snapshot for ingest replicas",
                {
                    "200": ok(
                        "The snapshot.",
                        ref("Snapshot"),
                        {"ETag": {"description": "The revision.", "schema": {"type": "string"}}},
                    ),
                    "304": {"description": "Unchanged since `If-None-Match`."},
                    "401": error(401),
                    "503": error(503),
                },
                security=ADMIN_SECURITY,
                parameters=(IF_NONE_MATCH,),
            )
        },
    }
