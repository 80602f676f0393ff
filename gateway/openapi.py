"""The OpenAPI 3.1 description of both ports, served as ``GET /openapi.json`` on each.

One document covers the ingest API and the management API, so either port describes the whole
gateway. It is generated once, from what the gateway declares: the catalog's and the native
API's routes and their msgspec types (gateway.catalog.routes, gateway.catalog.native), the
error classes (one response per status, described by their docstrings), and the ingest routes'
description beside them (gateway.ingest.document). ``tests/test_openapi.py`` checks that its
paths are exactly the routes the two apps register and that real responses match its schemas.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson
from aiohttp import web

from gateway import __version__, listener
from gateway.catalog import auth, snapshot_builder
from gateway.catalog import request_rules as v
from gateway.catalog.declared import Route, query_parameters
from gateway.catalog.http import CATALOG_PREFIX, RUDDERSTACK_BASE
from gateway.catalog.native.document import SECURITY_SCHEMES as NATIVE_SECURITY_SCHEMES
from gateway.catalog.native.document import TAG as NATIVE
from gateway.catalog.native.document import native_document
from gateway.catalog.native.routes import NATIVE_API
from gateway.catalog.routes import CATALOG_ROUTES
from gateway.catalog.segment.document import TAG as SEGMENT
from gateway.catalog.segment.document import segment_document
from gateway.catalog.segment.routes import SEGMENT_ROUTES
from gateway.document import (
    ADMIN_SECURITY,
    JSON,
    error,
    json_content,
    ok,
    operation,
    ref,
    status_name,
)
from gateway.errors import ApiError
from gateway.ingest.document import INGEST, event_schemas, ingest_paths
from gateway.operations_document import (
    ADMIN,
    OPENAPI_PATH,
    OPERATIONS,
    operations_paths,
    operations_schemas,
)

REF = "#/components/schemas/{name}"


CATALOG = "catalog"


# --- errors: one response per status, described by its error classes -------------------------


# Modules that declare errors of their own (the others are imported for their routes).
ERROR_MODULES = (listener, auth, snapshot_builder)


def _error_classes() -> list[type[ApiError]]:
    """Every error the gateway answers with: each an ApiError subclass, declared in a module
    this one imports."""
    found: list[type[ApiError]] = []
    pending = [ApiError]
    while pending:
        for subclass in pending.pop().__subclasses__():
            found.append(subclass)
            pending.append(subclass)
    return found


def _error_responses() -> JSON:
    by_status: dict[int, list[type[ApiError]]] = {}
    for kind in _error_classes():
        by_status.setdefault(kind.status, []).append(kind)
    responses: JSON = {}
    for status, errors in sorted(by_status.items()):
        described: dict[str, list[str]] = {}
        for kind in sorted(errors, key=lambda e: len(e.__mro__)):  # a code's own class first
            described.setdefault(kind.code, []).append(" ".join((kind.__doc__ or "").split()))
        response: JSON = {
            "description": " ".join(
                f"`{code}`: {' '.join(texts)}" for code, texts in sorted(described.items())
            ),
            "content": json_content(ref("Error")),
        }
        if any(kind.retry_after_s is not None for kind in errors):
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 0},
                }
            }
        responses[status_name(status)] = response
    return responses


# --- schemas -----------------------------------------------------------------------------------


def _schemas() -> JSON:
    return {**operations_schemas(), **event_schemas()}


# --- parameters --------------------------------------------------------------------------------

PATH_PARAMETERS: dict[str, str] = {
    "writeKey": "A source's write key.",
    "plan_id": "Tracking plan id (`tp_…`).",
    "source_id": "Source id (`src_…`).",
    "event_id": "Catalog event id (`ev_…`).",
    "key": "A write key of the source.",
    "id": "The entity's id.",
    "version": "An API version (an integer) or `latest`.",
    "trackingPlanId": "Tracking plan id (`tp_…`).",
    "replay_id": "Replay job id (`rpl_…`).",
}


# --- operations --------------------------------------------------------------------------------


def _admin(
    tag: str,
    operation_id: str,
    summary: str,
    answer: tuple[int, JSON],
    *,
    errors: tuple[int, ...] = (),
    **kwargs: Any,
) -> JSON:
    status, response = answer
    responses: JSON = {str(status): response}
    # Bodies are read as on the ingest port: size limit, gzip or deflate only; every request
    # must arrive within admin.read_timeout_s.
    codes = {*errors, 401, 403, 408, *((413, 415) if "body" in kwargs else ())}
    for code in sorted(codes):
        responses[str(code)] = error(code)
    return operation(tag, operation_id, summary, responses, security=ADMIN_SECURITY, **kwargs)


NO_CONTENT = (204, {"description": "Done; no body."})


def _declared_paths(routes: Sequence[Route]) -> tuple[JSON, JSON]:
    """(paths, component schemas) of declared catalog routes, from their types."""
    types = list({t: None for r in routes for t in (r.body, r.query, r.answer) if t is not None})
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(types, refs, strict=True))
    paths: JSON = {}
    queries = set()
    for r in routes:
        answer = (
            (200, ok(r.answer_description or r.summary + ".", ref_of[r.answer]))
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
            CATALOG, r.operation_id, r.summary, answer, errors=r.errors, **extra
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
- **admin** (default 8081): one catalog, three management APIs: RudderStack's Data Catalog
  API (at `/catalog/…` and, as RudderStack's base URL has it, `/v2/catalog/…`), Segment's
  Public API for tracking plans (`/tracking-plans/…`), and the gateway's own versioned API
  under `/api/{version}` (sources and write keys, the change log); and the plan snapshot.
  `Authorization: Bearer <token>`, `X-API-Token: <token>`, or Basic `email:token`.

`/health/*`, `/metrics` and `/openapi.json` are served on both ports without credentials
(`/metrics` and `/openapi.json` on the ingest port unless `ingest.serve_metrics_and_openapi` is
false).
Errors are JSON `{"code", "message"}` (under `/api`, the envelope's `errorDetails`; under
`/tracking-plans`, `{"errors": [{"type", "message", "status"}]}`); 429 and 503 carry
`Retry-After`.
"""


@functools.cache
def _document() -> JSON:
    native_paths, native_schemas = native_document(NATIVE_API)
    entity_paths, entity_schemas = _declared_paths(CATALOG_ROUTES)
    segment_paths, segment_schemas = segment_document(SEGMENT_ROUTES)
    paths = {
        **ingest_paths(),
        **native_paths,
        **entity_paths,
        **segment_paths,
        **operations_paths(),
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
            {
                "name": SEGMENT,
                "description": "Tracking plans, their rules (with versions and a common rule) and "
                'sources, as Segment\'s Public API has them (admin port): `{"data": …}`, '
                'errors `{"errors": [...]}` (422 for an invalid request), rate limited per '
                "token.",
            },
            {"name": OPERATIONS, "description": "Probes, metrics, this document (both ports)."},
        ],
        "paths": _with_path_parameters(paths),
        "components": {
            "schemas": _ecma({**_schemas(), **entity_schemas, **segment_schemas, **native_schemas}),
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
