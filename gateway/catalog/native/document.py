"""The native API's part of ``/openapi.json``, generated from its operations and their types."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.catalog.auth import TOKEN_HEADER
from gateway.catalog.declared import query_parameters
from gateway.catalog.http import MODIFICATIONS
from gateway.catalog.native import API_PREFIX, VERSION_HEADER, NativeApi, Operation

JSON = dict[str, Any]
TAG = "native"
REF = "#/components/schemas/{name}"
# Every call may meet these: a token refused (401/403), a version that does not exist (404 in
# the URL, 400 in the header), a body too slow or too large or wrongly encoded.
ALWAYS: tuple[int, ...] = (400, 401, 403, 404, 408)
BODY_ERRORS = (413, 415)
SECURITY: list[JSON] = [{"adminBearer": []}, {"apiToken": []}]
SECURITY_SCHEMES: JSON = {
    "apiToken": {
        "type": "apiKey",
        "in": "header",
        "name": TOKEN_HEADER,
        "description": "A token from `admin.tokens` (the native API; `Authorization: Bearer` "
        "works too).",
    }
}

ERROR_ENVELOPE: JSON = {
    "type": "object",
    "properties": {
        "action": {"type": "string"},
        "id": {"type": "string"},
        "result": {"const": "error"},
        "errorDetails": {"type": "string"},
    },
    "required": ["action", "result", "errorDetails"],
}


def _query(name: str, description: str) -> JSON:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


PRETTIFY = _query("prettify", "`true`: the response is indented.")
REASON = _query("reason", "Why this change is made; kept in the change log.")
VERSION_HEADER_PARAMETER: JSON = {
    "name": VERSION_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "An API version (integer) or `latest` (the default).",
}


def native_document(api: NativeApi) -> tuple[JSON, JSON]:
    """(paths, component schemas) of every operation, under ``/api/{version}`` and ``/api``."""
    types = {
        t
        for op in api.operations
        for version in op.versions.values()
        for t in (version.params, version.data)
        if t is not None
    }
    _, schemas = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__), ref_template=REF
    )
    # A request the HTTP parser refuses (a request line over 8 KiB, malformed headers) is
    # answered before any route, with the gateway's plain error body.
    schemas["NativeError"] = {"anyOf": [ERROR_ENVELOPE, {"$ref": REF.format(name="Error")}]}
    paths: JSON = {}
    for op in api.operations:
        for prefix, extra in (
            (API_PREFIX + "/{version}", ()),
            (API_PREFIX, (VERSION_HEADER_PARAMETER,)),
        ):
            paths.setdefault(prefix + op.path, {})[op.method.lower()] = _operation(
                op, api.latest, extra, schemas, versioned=not extra
            )
    return paths, schemas


def _operation(
    op: Operation, latest: int, extra: tuple[JSON, ...], schemas: JSON, *, versioned: bool
) -> JSON:
    newest, version = op.version_for(latest) or (0, None)
    assert version is not None
    modifies = op.method in MODIFICATIONS
    operation: JSON = {
        "tags": [TAG],
        "summary": op.summary,
        "operationId": op.action if versioned else op.action + "ByHeader",
        "description": f"Versions: {', '.join(map(str, sorted(op.versions)))} "
        f"(documented: {newest}).",
        "parameters": [*extra, PRETTIFY, *((REASON,) if modifies else ())],
    }
    has_body = version.params is not None and op.method != "GET"
    if version.params is not None and not has_body:  # a read's parameters are in the query
        operation["parameters"] += query_parameters(schemas[version.params.__name__])
    elif version.params is not None:
        schema = {"$ref": REF.format(name=version.params.__name__)}
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "application/x-www-form-urlencoded": {"schema": schema},
            },
        }
    success = {
        "type": "object",
        "properties": {
            "action": {"const": op.action},
            "id": {"type": "string"},
            "result": {"const": "success"},
            "data": {"$ref": REF.format(name=version.data.__name__)},
        },
        "required": ["action", "result", "data"],
    }
    responses: JSON = {"200": {"description": "Done.", "content": _json(success)}}
    codes = {*ALWAYS, *(e.status for e in op.errors), *(BODY_ERRORS if has_body else ())}
    for code in sorted(codes):
        responses[str(code)] = {
            "description": _ERROR_TEXT.get(code, "Error."),
            "content": _json({"$ref": REF.format(name="NativeError")}),
        }
    operation["responses"] = responses
    operation["security"] = SECURITY
    return operation


def _json(schema: JSON) -> JSON:
    return {"application/json": {"schema": schema}}


_ERROR_TEXT = {
    400: "Invalid parameters, or an `X-API-Version` that is not a version.",
    401: "No valid token.",
    403: "The token may not use this API.",
    404: "No such element, or no such API version in the URL.",
    408: "The request did not arrive in time.",
    413: "The body is too large.",
    415: "The body's encoding is not supported.",
}
