"""Pieces of the OpenAPI document that the parts describing each port share (gateway.openapi
assembles the document; gateway.ingest.document describes the ingest routes)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

JSON = dict[str, Any]

ADMIN_SECURITY: list[JSON] = [{"adminBearer": []}, {"adminBasic": []}]
# The write key may also travel in the body (``writeKey``), which OpenAPI cannot express as a
# security scheme: hence the empty alternative.
INGEST_SECURITY: list[JSON] = [{"writeKey": []}, {}]
PUBLIC: list[JSON] = []

TIME: JSON = {"type": "string", "description": "ISO 8601 time (UTC)."}
ANY_OBJECT: JSON = {"type": "object"}

# --- builders ----------------------------------------------------------------------------


def ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: JSON) -> JSON:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: JSON, required: tuple[str, ...] = (), **extra: Any) -> JSON:
    schema: JSON = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def array(items: JSON, **extra: Any) -> JSON:
    return {"type": "array", "items": items, **extra}


def json_content(schema: JSON) -> JSON:
    return {"application/json": {"schema": schema}}


def ok(description: str, schema: JSON, headers: JSON | None = None) -> JSON:
    response: JSON = {"description": description, "content": json_content(schema)}
    if headers:
        response["headers"] = headers
    return response


def error(status: int) -> JSON:
    return {"$ref": f"#/components/responses/{status_name(status)}"}


def status_name(status: int) -> str:
    """The name of a status's error response component (``RequestTimeout`` for 408)."""
    return HTTPStatus(status).name.title().replace("_", "")


def operation(
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
        op["requestBody"] = {"required": True, "content": json_content(body)}
    op["responses"] = responses
    op["security"] = security
    return op


IF_NONE_MATCH: JSON = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The ETag of the snapshot the caller has; 304 if it is still current.",
}
