"""The ingest port's part of ``/openapi.json``: the calls it accepts and its routes, described
beside them (gateway.openapi assembles the document)."""

from __future__ import annotations

from gateway.document import (
    ANY_OBJECT,
    IF_NONE_MATCH,
    INGEST_SECURITY,
    JSON,
    PUBLIC,
    TIME,
    array,
    error,
    nullable,
    obj,
    ok,
    operation,
    ref,
)
from gateway.enforce.violations import VIOLATION_TYPES
from gateway.ingest.browser import (
    PIXEL_ROUTES,
    SDK_METRICS_ROUTE,
    SETTINGS_ROUTE,
    SOURCE_CONFIG_ROUTES,
)
from gateway.ingest.routes import BEACON_ROUTE, ROUTES, VALIDATE_ROUTE
from gateway.outcomes import EVENT_TYPES, Outcome, QuarantineReason

INGEST = "ingest"
WRITE_KEY: JSON = {
    "name": "writeKey",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "The source's write key, when it is neither the Basic auth username nor "
    "`writeKey` in the body.",
}


def event_schemas() -> JSON:
    """Segment/RudderStack calls, as the ingest routes accept them."""
    common = obj(
        {
            "type": {
                "type": "string",
                "enum": list(EVENT_TYPES),
                "description": "Set from the route on single-call routes; required in a batch.",
            },
            "messageId": {
                "type": ["string", "integer"],
                "description": "Kept (trimmed) if given, else a UUIDv4 is generated; the "
                "deduplication key downstream.",
            },
            "userId": {"type": ["string", "number"]},
            "anonymousId": {"type": ["string", "number"]},
            "timestamp": TIME,
            "originalTimestamp": TIME,
            "sentAt": TIME,
            "context": ANY_OBJECT,
            "integrations": ANY_OBJECT,
            "request_ip": {"type": "string"},
            "writeKey": {
                "type": "string",
                "description": "The source's write key, for clients that cannot set headers; "
                "removed before the event is published.",
            },
        },
        description="Fields common to every call. Other fields pass through untouched. An event "
        "with neither `userId` nor `anonymousId`, with an unknown `type`, or over "
        "`ingest.max_event_bytes` is still accepted (200) and quarantined with reason "
        "`invalid-event`.",
    )

    def call(kind: str, properties: JSON, description: str) -> JSON:
        own = obj({"type": {"const": kind}, **properties})
        return {"allOf": [ref("Event"), own], "description": description}

    return {
        "Event": common,
        "TrackEvent": call(
            "track",
            {"event": {"type": "string"}, "properties": ANY_OBJECT},
            "A track call: `event` names it (matched to the plan's rules, case-sensitive).",
        ),
        "IdentifyEvent": call("identify", {"traits": ANY_OBJECT}, "An identify call."),
        "PageEvent": call(
            "page",
            {"name": {"type": "string"}, "category": {"type": "string"}, "properties": ANY_OBJECT},
            "A page call.",
        ),
        "ScreenEvent": call(
            "screen",
            {"name": {"type": "string"}, "properties": ANY_OBJECT},
            "A screen call.",
        ),
        "GroupEvent": call(
            "group",
            {"groupId": {"type": ["string", "number"]}, "traits": ANY_OBJECT},
            "A group call.",
        ),
        "AliasEvent": call(
            "alias",
            {"previousId": {"type": ["string", "number"]}},
            "An alias call (never validated against a plan).",
        ),
        "BatchRequest": obj(
            {
                "batch": array(
                    ref("Event"),
                    minItems=1,
                    description="The events; each needs a `type`. Items that are unusable "
                    "(not an object, unknown type, …) are quarantined, not refused.",
                ),
                "sentAt": {**TIME, "description": "Applies to items without their own."},
                "context": {
                    **ANY_OBJECT,
                    "description": "Merged under each item's own `context`.",
                },
                "integrations": {
                    **ANY_OBJECT,
                    "description": "Merged under each item's own `integrations`.",
                },
                "writeKey": {"type": "string"},
            },
            ("batch",),
        ),
        "Violation": obj(
            {
                "type": {"type": "string", "enum": list(VIOLATION_TYPES)},
                "message": {"type": "string"},
                "property": {"type": "string"},
                "meta": obj({"instancePath": {"type": "string"}, "schemaPath": {"type": "string"}}),
            },
            ("type", "message"),
        ),
        "ValidateResult": obj(
            {
                "index": {"type": "integer", "minimum": 0},
                # Echoed as sent when a string; null when the event had something else there.
                "messageId": nullable({"type": "string"}),
                "type": nullable({"type": "string"}),
                "event": nullable({"type": "string"}),
                "outcome": {"type": "string", "enum": [o.value for o in Outcome]},
                "reason": nullable({"type": "string", "enum": [r.value for r in QuarantineReason]}),
                "violations": array(ref("Violation")),
            },
            ("index", "messageId", "type", "event", "outcome", "reason", "violations"),
        ),
        "ValidateReport": obj(
            {
                "events": {"type": "integer", "minimum": 0},
                "forwarded": {"type": "integer", "minimum": 0},
                "quarantined": {"type": "integer", "minimum": 0},
                "results": array(ref("ValidateResult")),
            },
            ("events", "forwarded", "quarantined", "results"),
            description="What would happen to each event of the request; nothing is published.",
        ),
    }


SINGLE_SCHEMAS = {
    "track": "TrackEvent",
    "identify": "IdentifyEvent",
    "page": "PageEvent",
    "screen": "ScreenEvent",
    "group": "GroupEvent",
    "alias": "AliasEvent",
}


def ingest_paths() -> JSON:
    accepted = {
        "description": "Every event of the request is durably in Kafka (forwarded or quarantined).",
        "content": {"text/plain": {"schema": {"type": "string", "const": "OK"}}},
    }
    failures = {str(s): error(s) for s in (400, 401, 404, 408, 413, 415, 429, 503)}
    paths: JSON = {}
    for path, forced in ROUTES.items():
        name = path.rsplit("/", 1)[1]
        if path == BEACON_ROUTE:
            canonical, operation_id = True, "beacon"
            summary = "Send a batch with navigator.sendBeacon (`text/plain`, key in the query)"
            body = ref("BatchRequest")
        elif forced is None:
            canonical = name in ("batch", "import")
            operation_id = name if canonical else "batchShort"
            summary = "Send a batch of calls" if name != "import" else "Import a batch of calls"
            body = ref("BatchRequest")
        else:
            canonical = name == forced
            operation_id = forced if canonical else f"{forced}Short"
            summary = f"Send a {forced} call"
            body = ref(SINGLE_SCHEMAS[forced])
        if not canonical:
            summary += " (analytics.js short form)"
        paths[path] = {
            "post": operation(
                INGEST,
                operation_id,
                summary,
                {"200": accepted, **failures},
                security=INGEST_SECURITY,
                description="The body is JSON whatever the `Content-Type`, optionally gzip or "
                "deflate encoded. 200 only once Kafka acknowledged every event.",
                parameters=(WRITE_KEY,),
                body=body,
            )
        }
    paths[VALIDATE_ROUTE] = {
        "post": operation(
            INGEST,
            "validate",
            "Dry run: each event's outcome and violations",
            {
                "200": ok("The report; nothing was published.", ref("ValidateReport")),
                **failures,
            },
            security=INGEST_SECURITY,
            description="Same auth and body as `/v1/batch`; runs the real pipeline "
            "(normalize → validate → enforce) and publishes nothing.",
            parameters=(WRITE_KEY,),
            body=ref("BatchRequest"),
        )
    }
    paths.update(_browser_paths(failures))
    return paths


def _browser_paths(failures: JSON) -> JSON:
    """The routes browser SDKs need besides the event routes (see gateway.ingest.browser)."""
    gif = {
        "description": "The event is in Kafka; a transparent 1x1 GIF.",
        "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}},
    }
    paths: JSON = {
        SETTINGS_ROUTE: {
            "get": _settings_operation(
                "segmentSettings",
                "analytics.js settings (its `cdnURL` is this gateway)",
                "Events go to this gateway; SDK metrics off.",
                "`Segment.io` names this gateway (`ingest.public_url`, else the request's host "
                "and scheme).",
                security=PUBLIC,
                errors=(400, 401, 404),
            )
        },
        SDK_METRICS_ROUTE: {
            "post": operation(
                INGEST,
                "sdkMetrics",
                "analytics.js metrics: accepted and dropped",
                {
                    "200": {
                        "description": "Dropped.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "413": error(413),
                    "415": error(415),
                },
                security=PUBLIC,
            )
        },
    }
    for path in SOURCE_CONFIG_ROUTES:
        paths[path] = {
            "get": _settings_operation(
                "sourceConfig" + ("Slash" if path.endswith("/") else ""),
                "RudderStack source config (its `configUrl` is this gateway)",
                "No device-mode destinations: every event here.",
                "The key is the Basic auth username or `writeKey`; the SDK's version parameters "
                "are ignored.",
                security=INGEST_SECURITY,
                errors=(401, 404),
                parameters=(WRITE_KEY,),
            )
        }
    for path, event_type in PIXEL_ROUTES.items():
        paths[path] = {
            "get": operation(
                INGEST,
                f"pixel{event_type.title()}",
                f"A {event_type} call in the query string (an image pixel)",
                {"200": gif, **failures},
                security=INGEST_SECURITY,
                description="Dotted names nest (`properties.plan=pro`, `context.page.url=…`); "
                "values stay strings.",
                parameters=(WRITE_KEY,),
            )
        }
    return paths


def _settings_operation(
    operation_id: str,
    summary: str,
    answer: str,
    description: str,
    *,
    security: list[JSON],
    errors: tuple[int, ...],
    parameters: tuple[JSON, ...] = (),
) -> JSON:
    """A settings document an SDK loads at start-up: cacheable, revalidated with its ETag."""
    cacheable = {
        "ETag": {"schema": {"type": "string"}, "description": "Send back in `If-None-Match`."},
        "Cache-Control": {"schema": {"type": "string"}, "description": "`max-age=60`"},
    }
    responses: JSON = {
        "200": ok(answer, {"type": "object", "additionalProperties": True}, cacheable),
        "304": {"description": "The document has not changed (`If-None-Match`)."},
    }
    responses.update({str(code): error(code) for code in errors})
    if_none_match = {**IF_NONE_MATCH, "description": "The ETag of the document the caller has."}
    return operation(
        INGEST,
        operation_id,
        summary,
        responses,
        security=security,
        description=description + " 401 for an unknown key, 404 for a disabled source.",
        parameters=(*parameters, if_none_match),
    )
