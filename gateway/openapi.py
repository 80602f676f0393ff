"""The OpenAPI 3.1 description of both ports, served as ``GET /openapi.json`` on each.

One document covers the ingest API and the management API, so either port
describes the whole gateway. It is built once, from the same constants the handlers validate
with (routes, name patterns, event types, config choices, page size), and
``tests/test_openapi.py`` checks that its paths are exactly the routes the two apps register
and that real responses match its schemas.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson
from aiohttp import web

from gateway import __version__
from gateway.catalog import request_rules as v
from gateway.catalog.declared import Route, query_parameters
from gateway.catalog.http import CATALOG_PREFIX, RUDDERSTACK_BASE
from gateway.catalog.native.document import SECURITY_SCHEMES as NATIVE_SECURITY_SCHEMES
from gateway.catalog.native.document import TAG as NATIVE
from gateway.catalog.native.document import native_document
from gateway.catalog.native.routes import NATIVE_API
from gateway.catalog.routes import CATALOG_ROUTES
from gateway.enforce.violations import VIOLATION_TYPES
from gateway.ingest.browser import (
    PIXEL_ROUTES,
    SDK_METRICS_ROUTE,
    SETTINGS_ROUTE,
    SOURCE_CONFIG_ROUTES,
)
from gateway.ingest.routes import BEACON_ROUTE, ROUTES, VALIDATE_ROUTE
from gateway.outcomes import EVENT_TYPES, Outcome, QuarantineReason
from gateway.plans.providers import SNAPSHOT_PATH
from gateway.plans.snapshot import IDENTITY_SECTIONS

OPENAPI_PATH = "/openapi.json"
REF = "#/components/schemas/{name}"

JSON = dict[str, Any]

INGEST, ADMIN, CATALOG, OPERATIONS = "ingest", "admin", "catalog", "operations"

ADMIN_SECURITY: list[JSON] = [{"adminBearer": []}, {"adminBasic": []}]
# The write key may also travel in the body (``writeKey``), which OpenAPI cannot express as a
# security scheme: hence the empty alternative.
INGEST_SECURITY: list[JSON] = [{"writeKey": []}, {}]
PUBLIC: list[JSON] = []

# --- small builders ----------------------------------------------------------------------------


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: JSON) -> JSON:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: JSON, required: tuple[str, ...] = (), **extra: Any) -> JSON:
    schema: JSON = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def _array(items: JSON, **extra: Any) -> JSON:
    return {"type": "array", "items": items, **extra}


def _json_content(schema: JSON) -> JSON:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: JSON, headers: JSON | None = None) -> JSON:
    response: JSON = {"description": description, "content": _json_content(schema)}
    if headers:
        response["headers"] = headers
    return response


def _error(status: int) -> JSON:
    return {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}


# --- errors ------------------------------------------------------------------------------------

RETRY_AFTER: JSON = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    }
}

# status → (component name, description, codes used, retryable)
ERROR_RESPONSES: dict[int, tuple[str, str, tuple[str, ...], bool]] = {
    400: (
        "BadRequest",
        "The request can never succeed: invalid JSON, a body that is not an object, a missing "
        "or invalid field or query parameter, or malformed HTTP (the connection is then "
        "closed).",
        ("bad_request", "invalid_json", "invalid_request"),
        False,
    ),
    401: (
        "Unauthorized",
        "No credentials, or unknown ones (admin token or write key).",
        ("unauthorized",),
        False,
    ),
    403: (
        "Forbidden",
        "The token may not do this: an `admin.snapshot_tokens` token may only read the plan "
        "snapshot.",
        ("forbidden",),
        False,
    ),
    404: ("NotFound", "The resource does not exist.", ("not_found",), False),
    408: (
        "RequestTimeout",
        "The request (headers and whole body) did not arrive within `ingest.read_timeout_s` "
        "(`admin.read_timeout_s` on the admin port); the connection is closed.",
        ("request_timeout",),
        False,
    ),
    413: (
        "PayloadTooLarge",
        "The (decompressed) body is over the limit (`ingest.max_request_bytes` on the ingest "
        "port, 4 MiB on the admin port), or a batch has more than `ingest.max_batch_events` "
        "events.",
        ("payload_too_large",),
        False,
    ),
    415: (
        "UnsupportedEncoding",
        "A `Content-Encoding` other than gzip or deflate.",
        ("unsupported_encoding",),
        False,
    ),
    429: (
        "Overloaded",
        "The gateway is at its limits: too many events wait for Kafka "
        "(`ingest.max_inflight_events`), or the bytes of requests in flight reached "
        "`ingest.max_inflight_bytes`. Retry after `Retry-After` seconds.",
        ("overloaded",),
        True,
    ),
    503: (
        "Unavailable",
        "Kafka did not acknowledge in time, or no tracking-plan snapshot is loaded yet; on the "
        "admin port, the plan snapshot cannot be built now. Retry after `Retry-After` seconds.",
        ("unavailable", "snapshot_unavailable"),
        True,
    ),
}

SOURCE_DISABLED: JSON = {
    "description": "The write key's source is disabled (`code`: `source_disabled`).",
    "content": _json_content(_ref("Error")),
}


def _error_responses() -> JSON:
    responses: JSON = {}
    for name, description, codes, retryable in ERROR_RESPONSES.values():
        codes_text = ", ".join(f"`{c}`" for c in codes)
        response: JSON = {
            "description": f"{description} (`code`: {codes_text})",
            "content": _json_content(_ref("Error")),
        }
        if retryable:
            response["headers"] = RETRY_AFTER
        responses[name] = response
    responses["SourceDisabled"] = SOURCE_DISABLED
    return responses


# --- schemas -----------------------------------------------------------------------------------

TIME: JSON = {"type": "string", "description": "ISO 8601 time (UTC)."}
ANY_OBJECT: JSON = {"type": "object"}


def _event_schemas() -> JSON:
    """Segment/RudderStack calls, as the ingest routes accept them."""
    common = _obj(
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
        own = _obj({"type": {"const": kind}, **properties})
        return {"allOf": [_ref("Event"), own], "description": description}

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
        "BatchRequest": _obj(
            {
                "batch": _array(
                    _ref("Event"),
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
        "Violation": _obj(
            {
                "type": {"type": "string", "enum": list(VIOLATION_TYPES)},
                "message": {"type": "string"},
                "property": {"type": "string"},
                "meta": _obj(
                    {"instancePath": {"type": "string"}, "schemaPath": {"type": "string"}}
                ),
            },
            ("type", "message"),
        ),
        "ValidateResult": _obj(
            {
                "index": {"type": "integer", "minimum": 0},
                # Echoed as sent when a string; null when the event had something else there.
                "messageId": _nullable({"type": "string"}),
                "type": _nullable({"type": "string"}),
                "event": _nullable({"type": "string"}),
                "outcome": {"type": "string", "enum": [o.value for o in Outcome]},
                "reason": _nullable(
                    {"type": "string", "enum": [r.value for r in QuarantineReason]}
                ),
                "violations": _array(_ref("Violation")),
            },
            ("index", "messageId", "type", "event", "outcome", "reason", "violations"),
        ),
        "ValidateReport": _obj(
            {
                "events": {"type": "integer", "minimum": 0},
                "forwarded": {"type": "integer", "minimum": 0},
                "quarantined": {"type": "integer", "minimum": 0},
                "results": _array(_ref("ValidateResult")),
            },
            ("events", "forwarded", "quarantined", "results"),
            description="What would happen to each event of the request; nothing is published.",
        ),
    }


def _admin_schemas() -> JSON:
    snapshot_event = _obj(
        {
            "name": {"type": "string"},
            "eventType": {"type": "string", "enum": list(v.PLANNED_EVENT_TYPES)},
            "identitySection": {"type": "string", "enum": list(IDENTITY_SECTIONS)},
            "rules": ANY_OBJECT,
        },
        ("name", "eventType", "identitySection", "rules"),
    )
    return {
        "Snapshot": _obj(
            {
                "revision": {"type": "string"},
                "sources": _array(
                    _obj(
                        {
                            "id": {"type": "string"},
                            "name": {"type": "string"},
                            "enabled": {"type": "boolean"},
                            "writeKeys": _array({"type": "string"}),
                            "trackingPlan": _nullable(
                                _obj(
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
                "trackingPlans": _array(
                    _obj(
                        {
                            "id": {"type": "string"},
                            "name": {"type": "string"},
                            "version": {"type": "integer"},
                            "events": _array(snapshot_event),
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


def _schemas() -> JSON:
    return {
        "Error": _obj(
            {
                "code": {"type": "string", "description": "Machine-readable, e.g. `not_found`."},
                "message": {"type": "string"},
            },
            ("code", "message"),
        ),
        "Liveness": _obj({"status": {"const": "ok"}}, ("status",)),
        "Readiness": _obj(
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
        **_event_schemas(),
        **_admin_schemas(),
    }


# --- parameters --------------------------------------------------------------------------------

PATH_PARAMETERS: dict[str, str] = {
    "writeKey": "A source's write key.",
    "plan_id": "Tracking plan id (`tp_…`).",
    "source_id": "Source id (`src_…`).",
    "event_id": "Catalog event id (`ev_…`).",
    "key": "A write key of the source.",
    "id": "The entity's id.",
    "version": "An API version (an integer) or `latest`.",
}


def _query(name: str, schema: JSON, description: str) -> JSON:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


WRITE_KEY = _query(
    "writeKey",
    {"type": "string"},
    "The source's write key, when it is neither the Basic auth username nor `writeKey` in the "
    "body.",
)
IF_NONE_MATCH: JSON = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The ETag of the snapshot the caller has; 304 if it is still current.",
}


# --- operations --------------------------------------------------------------------------------


def _operation(
    tag: str,
    operation_id: str,
    summary: str,
    responses: JSON,
    *,
    security: list[JSON],
    description: str | None = None,
    parameters: tuple[JSON, ...] = (),
    body: JSON | None = None,
) -> JSON:
    op: JSON = {"tags": [tag], "summary": summary, "operationId": operation_id}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = list(parameters)
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json_content(body)}
    op["responses"] = responses
    op["security"] = security
    return op


def _admin(
    tag: str,
    operation_id: str,
    summary: str,
    ok: tuple[int, JSON],
    *,
    errors: tuple[int, ...] = (),
    **kwargs: Any,
) -> JSON:
    status, response = ok
    responses: JSON = {str(status): response}
    # Bodies are read as on the ingest port: size limit, gzip or deflate only; every request
    # must arrive within admin.read_timeout_s.
    codes = {*errors, 401, 403, 408, *((413, 415) if "body" in kwargs else ())}
    for code in sorted(codes):
        responses[str(code)] = _error(code)
    return _operation(tag, operation_id, summary, responses, security=ADMIN_SECURITY, **kwargs)


NO_CONTENT = (204, {"description": "Done; no body."})


def _returns(description: str, schema: str) -> tuple[int, JSON]:
    return 200, _ok(description, _ref(schema))


SINGLE_SCHEMAS = {
    "track": "TrackEvent",
    "identify": "IdentifyEvent",
    "page": "PageEvent",
    "screen": "ScreenEvent",
    "group": "GroupEvent",
    "alias": "AliasEvent",
}


def _ingest_paths() -> JSON:
    accepted = {
        "description": "Every event of the request is durably in Kafka (forwarded or quarantined).",
        "content": {"text/plain": {"schema": {"type": "string", "const": "OK"}}},
    }
    failures = {str(s): _error(s) for s in (400, 401)}
    failures["404"] = {"$ref": "#/components/responses/SourceDisabled"}
    failures.update({str(s): _error(s) for s in (408, 413, 415, 429, 503)})
    paths: JSON = {}
    for path, forced in ROUTES.items():
        name = path.rsplit("/", 1)[1]
        if path == BEACON_ROUTE:
            canonical, operation_id = True, "beacon"
            summary = "Send a batch with navigator.sendBeacon (`text/plain`, key in the query)"
            body = _ref("BatchRequest")
        elif forced is None:
            canonical = name in ("batch", "import")
            operation_id = name if canonical else "batchShort"
            summary = "Send a batch of calls" if name != "import" else "Import a batch of calls"
            body = _ref("BatchRequest")
        else:
            canonical = name == forced
            operation_id = forced if canonical else f"{forced}Short"
            summary = f"Send a {forced} call"
            body = _ref(SINGLE_SCHEMAS[forced])
        if not canonical:
            summary += " (analytics.js short form)"
        paths[path] = {
            "post": _operation(
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
        "post": _operation(
            INGEST,
            "validate",
            "Dry run: each event's outcome and violations",
            {
                "200": _ok("The report; nothing was published.", _ref("ValidateReport")),
                **failures,
            },
            security=INGEST_SECURITY,
            description="Same auth and body as `/v1/batch`; runs the real pipeline "
            "(normalize → validate → enforce) and publishes nothing.",
            parameters=(WRITE_KEY,),
            body=_ref("BatchRequest"),
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
            "post": _operation(
                INGEST,
                "sdkMetrics",
                "analytics.js metrics: accepted and dropped",
                {
                    "200": {
                        "description": "Dropped.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "413": _error(413),
                    "415": _error(415),
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
            "get": _operation(
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
    ok: str,
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
        "200": _ok(ok, {"type": "object", "additionalProperties": True}, cacheable),
        "304": {"description": "The document has not changed (`If-None-Match`)."},
    }
    responses.update({str(code): _error(code) for code in errors})
    if_none_match = {**IF_NONE_MATCH, "description": "The ETag of the document the caller has."}
    return _operation(
        INGEST,
        operation_id,
        summary,
        responses,
        security=security,
        description=description + " 401 for an unknown key, 404 for a disabled source.",
        parameters=(*parameters, if_none_match),
    )


def _declared_paths(routes: Sequence[Route]) -> tuple[JSON, JSON]:
    """(paths, component schemas) of declared catalog routes, from their types."""
    types = list({t: None for r in routes for t in (r.body, r.query, r.answer) if t is not None})
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(types, refs, strict=True))
    paths: JSON = {}
    queries = set()
    for r in routes:
        ok = (
            (200, _ok(r.answer_description or r.summary + ".", ref_of[r.answer]))
            if r.answer is not None
            else NO_CONTENT
        )
        extra: JSON = {}
        if r.query is not None:
            query = _component_name(ref_of[r.query])
            queries.add(query)
            extra["parameters"] = tuple(query_parameters(schemas[query]))
        if r.body is not None:
            extra["body"] = ref_of[r.body]
        if r.description:
            extra["description"] = r.description
        paths.setdefault(r.path, {})[r.method.lower()] = _admin(
            CATALOG, r.operation_id, r.summary, ok, errors=r.errors, **extra
        )
    for name in queries:  # a query's fields are parameters, not a schema anyone refers to
        del schemas[name]
    return paths, schemas


def _ecma(node: Any) -> Any:
    """Every ``pattern`` of generated schemas in ECMA-262: the types check with Python's
    ``\\Z`` (no final newline), which JSON Schema's dialect writes ``$``."""
    if isinstance(node, dict):
        return {
            k: v.ecma_pattern(value) if k == "pattern" and isinstance(value, str) else _ecma(value)
            for k, value in node.items()
        }
    if isinstance(node, list):
        return [_ecma(item) for item in node]
    return node


def _component_name(ref: JSON) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[1]


def _operations_paths() -> JSON:
    return {
        "/health/live": {
            "get": _operation(
                OPERATIONS,
                "live",
                "Liveness probe",
                {"200": _ok("The process runs.", _ref("Liveness"))},
                security=PUBLIC,
            )
        },
        "/health/ready": {
            "get": _operation(
                OPERATIONS,
                "ready",
                "Readiness probe",
                {
                    "200": _ok("Every check passes.", _ref("Readiness")),
                    "503": _ok("A check fails (named false).", _ref("Readiness")),
                },
                security=PUBLIC,
                description="Ingest: Kafka answers and a plan snapshot is loaded; admin: the "
                "catalog database answers and its plan snapshot builds.",
            )
        },
        "/metrics": {
            "get": _operation(
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
            "get": _operation(
                OPERATIONS,
                "openapi",
                "This OpenAPI document",
                {"200": _ok("The OpenAPI 3.1 description of both ports.", ANY_OBJECT)},
                security=PUBLIC,
            )
        },
        SNAPSHOT_PATH: {
            "get": _operation(
                ADMIN,
                "getSnapshot",
                "The plan snapshot for ingest replicas",
                {
                    "200": _ok(
                        "The snapshot.",
                        _ref("Snapshot"),
                        {"ETag": {"description": "The revision.", "schema": {"type": "string"}}},
                    ),
                    "304": {"description": "Unchanged since `If-None-Match`."},
                    "401": _error(401),
                    "503": _error(503),
                },
                security=ADMIN_SECURITY,
                parameters=(IF_NONE_MATCH,),
            )
        },
    }


def _with_path_parameters(paths: JSON) -> JSON:
    """Declare each path's template parameters once, at the path level."""
    for path, item in paths.items():
        names = re.findall(r"{(\w+)}", path)
        if names:
            item["parameters"] = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": PATH_PARAMETERS[name],
                }
                for name in names
            ]
    return paths


def _rudderstack_base_aliases(paths: JSON) -> JSON:
    """The catalog's paths again under RudderStack's ``/v2`` base path (the same handlers)."""
    aliases: JSON = {}
    for path, item in paths.items():
        if not path.startswith(CATALOG_PREFIX):
            continue
        aliases[RUDDERSTACK_BASE + path] = {
            method: {**op, "operationId": op["operationId"] + "V2"} for method, op in item.items()
        }
    return aliases


DESCRIPTION = """\
A tracking-plan validation gateway. Two ports, one document:

- **ingest** (default 8080): Segment/RudderStack-compatible HTTP tracking API. The write key is
  the Basic auth username (password ignored), `writeKey` in the JSON body, or `?writeKey=`.
  `OPTIONS` on these routes answers CORS preflights; nothing else sends CORS headers.
- **admin** (default 8081): the management API, compatible with RudderStack's Data Catalog
  API (at `/catalog/…` and, as RudderStack's base URL has it, `/v2/catalog/…`); the gateway's
  own versioned API under `/api/{version}` (sources and write keys); the plan snapshot.
  `Authorization: Bearer <token>`, `X-API-Token: <token>`, or Basic `email:token`.

`/health/*`, `/metrics` and `/openapi.json` are served on both ports without credentials
(`/metrics` and `/openapi.json` on the ingest port unless `ingest.serve_metrics_and_openapi` is
false).
Errors are JSON `{"code", "message"}` (under `/api`, the envelope's `errorDetails`); 429 and
503 carry `Retry-After`.
"""


@functools.cache
def _document() -> JSON:
    native_paths, native_schemas = native_document(NATIVE_API)
    entity_paths, entity_schemas = _declared_paths(CATALOG_ROUTES)
    paths = {
        **_ingest_paths(),
        **native_paths,
        **entity_paths,
        **_operations_paths(),
    }
    paths.update(_rudderstack_base_aliases(paths))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tracking-gateway",
            "version": __version__,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": INGEST, "description": "Event ingestion (ingest port)."},
            {"name": ADMIN, "description": "The plan snapshot (admin port)."},
            {
                "name": NATIVE,
                "description": "The gateway's own API, versioned (admin port): sources and "
                "write keys. `/api/{version}/…` (an integer or `latest`) or `/api/…` with "
                "`X-API-Version`; answers in `{action, id, result, data | errorDetails}`.",
            },
            {
                "name": CATALOG,
                "description": "Tracking plans, events, properties, categories and "
                "connections (admin port; RudderStack Data Catalog API).",
            },
            {"name": OPERATIONS, "description": "Probes, metrics, this document (both ports)."},
        ],
        "paths": _with_path_parameters(paths),
        "components": {
            "schemas": _ecma({**_schemas(), **entity_schemas, **native_schemas}),
            "responses": _error_responses(),
            "securitySchemes": {
                "adminBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `admin.tokens`.",
                },
                "adminBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "`email:token`: the password is an `admin.tokens` token.",
                },
                **NATIVE_SECURITY_SCHEMES,
                "writeKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The write key as the username; the password is ignored.",
                },
            },
        },
    }


@functools.cache
def _body() -> bytes:
    return orjson.dumps(_document())


async def _openapi(_: web.Request) -> web.Response:
    return web.Response(body=_body(), content_type="application/json")


def add_openapi_route(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, _openapi)
