"""The Segment API's part of ``/openapi.json``, generated from its route table and types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.catalog.declared import Route
from gateway.catalog.segment import MAX_QUERY_ITEMS, VALIDATION_STATUS
from gateway.document import ADMIN_SECURITY, JSON, json_content

TAG = "segment"
REF = "#/components/schemas/{name}"
ERROR = "SegmentErrors"
# Every call may meet these: the token (401, 403), the rate limit (429), a slow request (408).
ALWAYS = (401, 403, 408, 429)
BODY_ERRORS = (413, 415)
ERROR_TEXT = {
    401: "No token, or an unknown one.",
    403: "The token may not do this (a snapshot token).",
    404: "The tracking plan, or a rule or source the request names, does not exist.",
    408: "The request did not arrive within `admin.read_timeout_s`.",
    413: "The body is over 4 MiB.",
    415: "A `Content-Encoding` other than gzip or deflate.",
    VALIDATION_STATUS: "Validation failure: a field or parameter is missing or invalid, or the "
    "change cannot be made (e.g. a rule that could not be served).",
    429: "Too many requests: retry after `Retry-After` seconds.",
}
RATE_HEADERS: JSON = {
    "X-RateLimit-Limit": {
        "description": "Requests a minute this token may make of this kind.",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Remaining": {
        "description": "Requests left now.",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Reset": {
        "description": "When the allowance is whole again (Unix seconds).",
        "schema": {"type": "integer"},
    },
}
ERRORS_SCHEMA: JSON = {
    "type": "object",
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                    "status": {"type": "integer"},
                },
                "required": ["type", "message", "status"],
            },
        }
    },
    "required": ["errors"],
}


def segment_document(routes: Sequence[Route]) -> tuple[JSON, JSON]:
    """(paths, component schemas) of the Segment API's operations."""
    types = list({t: None for r in routes for t in (r.body, r.query, r.answer) if t is not None})
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(types, refs, strict=True))
    schemas[ERROR] = ERRORS_SCHEMA
    queries = set()
    paths: JSON = {}
    for r in routes:
        data = {"type": "object", "properties": {"data": ref_of[r.answer]}, "required": ["data"]}
        responses: JSON = {
            "200": {
                "description": r.answer_description or r.summary + ".",
                "content": json_content(data),
                "headers": RATE_HEADERS,
            }
        }
        statuses = {*ALWAYS, *r.errors, *(BODY_ERRORS if r.body is not None else ())}
        for status in sorted(statuses):
            responses[str(status)] = _error(status)
        op: JSON = {
            "tags": [TAG],
            "summary": r.summary,
            "operationId": "segment" + r.operation_id[0].upper() + r.operation_id[1:],
        }
        if r.description:
            op["description"] = r.description
        if r.query is not None:
            name = _component(ref_of[r.query])
            queries.add(name)
            op["parameters"] = _flat_parameters(schemas[name], schemas)
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": json_content(ref_of[r.body])}
        op["responses"] = responses
        op["security"] = ADMIN_SECURITY
        paths.setdefault(r.path, {})[r.method.lower()] = op
    for name in queries:  # their fields are parameters, not schemas anyone refers to
        del schemas[name]
    return paths, schemas


def _error(status: int) -> JSON:
    response: JSON = {
        "description": ERROR_TEXT[status],
        "content": json_content({"$ref": REF.format(name=ERROR)}),
    }
    if status == 429:
        response["headers"] = {
            **RATE_HEADERS,
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
        }
    return response


def _component(ref: JSON) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[1]


def _flat_parameters(schema: JSON, schemas: JSON) -> list[JSON]:
    """A query struct's fields as query parameters: a nested struct's as ``field.sub``, a list
    of structs' as ``field.0.sub`` (then ``field.1.sub``, …)."""
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        inner = _resolved(field, schemas)
        items = _resolved(inner.get("items", {}), schemas) if inner.get("type") == "array" else None
        if "properties" in inner:
            parameters += _nested(name, inner, required=False)
        elif items is not None and "properties" in items:
            parameters += _nested(f"{name}.0", items, required=name in required)
            for parameter in parameters[-len(items["properties"]) :]:
                parameter["description"] = (
                    f"Item 0 of `{name}`; name more with `{name}.1.…`, `{name}.2.…` "
                    f"(at most {MAX_QUERY_ITEMS})."
                )
        else:
            parameters.append(_parameter(name, field, name in required))
    return parameters


def _nested(prefix: str, schema: JSON, *, required: bool) -> list[JSON]:
    inner_required = set(schema.get("required", ()))
    return [
        _parameter(f"{prefix}.{name}", field, required and name in inner_required)
        for name, field in schema["properties"].items()
    ]


def _parameter(name: str, schema: Any, required: bool) -> JSON:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _resolved(schema: JSON, schemas: JSON) -> JSON:
    if "$ref" in schema:
        return dict(schemas[_component(schema)])
    return schema
