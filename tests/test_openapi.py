"""``GET /openapi.json`` on both ports: a valid OpenAPI 3.1 document that describes exactly the
routes the two apps register, and whose schemas agree with what the gateway really answers.

Adding a route without documenting it, or documenting one that is gone, fails
:func:`test_documents_exactly_the_registered_routes`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

import gateway
from gateway.catalog.http import PUBLIC_PATHS
from gateway.ingest.browser import SDK_METRICS_ROUTE, SETTINGS_ROUTE
from gateway.server import Gateway
from tests.conftest import ADMIN_TOKEN, GatewayFactory, basic_auth, ingest_url

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
TAGS = {"ingest", "admin", "catalog", "native", "segment", "operations"}
KEYLESS_INGEST_PATHS = {SETTINGS_ROUTE, SDK_METRICS_ROUTE}
ORDER_RULES = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"amount": {"type": "number"}},
            "required": ["amount"],
        }
    },
}

Route = tuple[str, str]


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway(admin={"tokens": (ADMIN_TOKEN,)}, plans={"source": "local"})


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def admin_url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.admin_port}{path}"


async def fetch_document(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url) as resp:  # no credentials: the document is public
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        document: dict[str, Any] = orjson.loads(await resp.read())
        return document


@pytest.fixture
async def document(gw: Gateway, http: aiohttp.ClientSession) -> dict[str, Any]:
    return await fetch_document(http, admin_url(gw, "/openapi.json"))


def template(path: str) -> str:
    """A path with its parameter names erased, so both sides may name them differently."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def registered_routes(app: web.Application) -> set[Route]:
    routes = set()
    for route in app.router.routes():
        # aiohttp adds a HEAD for every GET; add_sdk_route an OPTIONS (CORS preflight) per route.
        if route.method in ("HEAD", "OPTIONS"):
            continue
        assert route.resource is not None
        routes.add((route.method, template(route.resource.canonical)))
    return routes


def documented_operations(document: dict[str, Any]) -> dict[Route, tuple[str, dict[str, Any]]]:
    """(METHOD, erased path) → (path as documented, operation)."""
    return {
        (method.upper(), template(path)): (path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


async def test_served_on_both_ports_without_credentials(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    from_ingest = await fetch_document(http, ingest_url(gw, "/openapi.json"))
    from_admin = await fetch_document(http, admin_url(gw, "/openapi.json"))
    assert from_ingest == from_admin
    validate_spec(from_admin)
    assert from_admin["openapi"].startswith("3.1.")
    assert from_admin["info"]["title"] == "tracking-gateway"
    assert from_admin["info"]["version"] == gateway.__version__
    assert "servers" not in from_admin


async def test_documents_exactly_the_registered_routes(
    gw: Gateway, document: dict[str, Any]
) -> None:
    registered = registered_routes(gw.build_ingest_app()) | registered_routes(gw.build_admin_app())
    documented = set(documented_operations(document))
    assert sorted(registered - documented) == [], "served but not in /openapi.json"
    assert sorted(documented - registered) == [], "in /openapi.json but not served"


async def test_every_operation_is_described(gw: Gateway, document: dict[str, Any]) -> None:
    ingest_only = registered_routes(gw.build_ingest_app()) - registered_routes(gw.build_admin_app())
    schemes = document["components"]["securitySchemes"]
    operation_ids = []
    for (method, _), (path, op) in documented_operations(document).items():
        where = f"{method} {path}"
        operation_ids.append(op["operationId"])
        assert op["summary"], where
        assert len(op["tags"]) == 1, where
        assert op["tags"][0] in TAGS, where
        assert op["responses"], where
        assert any(code.startswith("2") for code in op["responses"]), where
        if path in PUBLIC_PATHS:
            assert op["security"] == [], where
            assert op["tags"] == ["operations"], where
        elif (method, template(path)) in ingest_only and path in KEYLESS_INGEST_PATHS:
            # The key is in the path (settings), or there is none (SDK metrics).
            assert op["tags"] == ["ingest"], where
            assert op["security"] == [], where
        elif (method, template(path)) in ingest_only:
            assert op["tags"] == ["ingest"], where
            assert {"writeKey": []} in op["security"], where
            assert "writeKey" in {p["name"] for p in op["parameters"] if p["in"] == "query"}
            assert "401" in op["responses"], where
        elif path.startswith("/api/"):
            assert op["tags"] == ["native"], where
            assert op["security"] == [{"adminBearer": []}, {"apiToken": []}], where
            assert "401" in op["responses"], where
        else:
            assert op["tags"][0] in ("admin", "catalog", "segment"), where
            assert op["security"] == [{"adminBearer": []}, {"adminBasic": []}], where
            assert "401" in op["responses"], where
        if "{" in path:
            assert "404" in op["responses"], where
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    assert schemes["adminBearer"] == {**schemes["adminBearer"], "type": "http", "scheme": "bearer"}
    assert schemes["adminBasic"]["scheme"] == schemes["writeKey"]["scheme"] == "basic"
    for name in ("Error", "TrackingPlan", "Source", "NativeError", "Connection", "ValidateReport"):
        assert name in document["components"]["schemas"]


# --- real responses against the documented schemas ---------------------------------------------


class Api:
    """Calls the gateway and checks each request and response against the document."""

    def __init__(self, gw: Gateway, http: aiohttp.ClientSession, document: dict[str, Any]):
        self.gw = gw
        self.http = http
        self.document = document
        self.components = document["components"]

    def errors(self, schema: dict[str, Any], instance: Any) -> list[str]:
        validator = Draft202012Validator({**schema, "components": self.components})
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]

    def check(self, schema: dict[str, Any], instance: Any, where: str) -> None:
        errors = self.errors(schema, instance)
        assert not errors, f"{where}: {errors}\n{orjson.dumps(instance).decode()}"

    def response_spec(self, response: dict[str, Any]) -> dict[str, Any]:
        ref = response.get("$ref")
        if ref is None:
            return response
        found: dict[str, Any] = self.components["responses"][ref.rsplit("/", 1)[1]]
        return found

    async def __call__(
        self,
        method: str,
        path: str,
        expect: int,
        body: Any = None,
        *,
        ids: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        ingest: bool = False,
        body_valid: bool = True,
    ) -> Any:
        op = self.document["paths"][path][method.lower()]
        where = f"{method} {path} → {expect}"
        if body is not None:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            if body_valid:
                self.check(schema, body, f"{where} (request)")
            else:  # the document refuses what the gateway refuses
                assert self.errors(schema, body), f"{where}: the request schema accepts {body}"
        concrete = path.format(**(ids or {}))
        url = ingest_url(self.gw, concrete) if ingest else admin_url(self.gw, concrete)
        if headers is None:
            headers = {} if ingest else BEARER
        data = None if body is None else orjson.dumps(body)
        async with self.http.request(method, url, data=data, params=query, headers=headers) as resp:
            raw = await resp.read()
            assert resp.status == expect, f"{where}: got {resp.status} {raw[:500]!r}"
            assert str(resp.status) in op["responses"], f"{where}: status not documented"
            spec = self.response_spec(op["responses"][str(resp.status)])
            for header in spec.get("headers", {}):
                assert header in resp.headers, f"{where}: no {header} header"
            content = spec.get("content")
            if content is None:
                assert not raw, f"{where}: documented without a body"
                return None
            assert resp.content_type in content, f"{where}: {resp.content_type}"
            schema = content[resp.content_type]["schema"]
            json = resp.content_type == "application/json"
            answer = orjson.loads(raw) if json else raw.decode()
            self.check(schema, answer, where)
            return answer


async def wait_until_connected(gw: Gateway, write_key: str) -> None:
    """Until the plan cache has a snapshot with the key's source connected to a plan."""
    async with asyncio.timeout(10):
        while True:
            snapshot = gw.cache.current
            source = snapshot.source_for_key(write_key) if snapshot is not None else None
            if source is not None and source.tracking_plan is not None:
                return
            await asyncio.sleep(0.05)


PLANS = "/catalog/tracking-plans"
PLAN = PLANS + "/{plan_id}"
EVENTS = PLAN + "/events"
CONNECTION = PLAN + "/sources/{source_id}"
NATIVE = "/api/{version}"
LATEST = {"version": "latest"}


async def test_responses_match_the_documented_schemas(
    gw: Gateway, http: aiohttp.ClientSession, document: dict[str, Any]
) -> None:
    api = Api(gw, http, document)
    for ingest in (False, True):
        await api("GET", "/health/live", 200, ingest=ingest, headers={})
        await api("GET", "/metrics", 200, ingest=ingest, headers={})
    for ingest in (False, True):
        url = ingest_url(gw, "/health/ready") if ingest else admin_url(gw, "/health/ready")
        async with http.get(url) as resp:
            status = resp.status
        await api("GET", "/health/ready", status, ingest=ingest, headers={})

    # Errors share one shape.
    await api("GET", NATIVE + "/sources", 401, ids=LATEST, headers={})
    await api("GET", PLAN, 404, ids={"plan_id": "tp_missing"})
    await api("POST", PLANS, 400, {"name": "x"}, body_valid=False)
    await api("GET", "/catalog/events", 400, query={"orderBy": "color"})

    # Sources and write keys (the native API, both ways of naming the version).
    created = await api("PUT", NATIVE + "/sources", 200, {"name": "Web app"}, ids=LATEST)
    source = created["data"]["sources"][0]
    sid = {"source_id": source["id"], **LATEST}
    await api("GET", NATIVE + "/sources", 200, ids={"version": "1"})
    await api("GET", "/api/sources", 200, headers={**BEARER, "X-API-Version": "1"})
    await api("GET", "/api/sources", 400, headers={**BEARER, "X-API-Version": "3.14"})
    await api("GET", NATIVE + "/sources", 404, ids={"version": "3.14"})
    await api("GET", NATIVE + "/sources/{source_id}", 200, ids=sid)
    await api("POST", NATIVE + "/sources/{source_id}", 200, {"enabled": True}, ids=sid)
    rotated = await api("PUT", NATIVE + "/sources/{source_id}/write-keys", 200, ids=sid)
    await api(
        "DELETE",
        NATIVE + "/sources/{source_id}/write-keys/{key}",
        200,
        ids={**sid, "key": rotated["data"]["sources"][0]["writeKeys"][-1]},
    )
    write_key = source["writeKeys"][0]

    # Catalog entities.
    category = await api("POST", "/catalog/categories", 200, {"name": "Checkout"})
    cat = {"id": category["id"]}
    await api("GET", "/catalog/categories", 200, query={"page": "1", "orderBy": "name:desc"})
    await api("GET", "/catalog/categories/{id}", 200, ids=cat)
    event = await api("POST", "/catalog/events", 200, {"name": "Cart Viewed"})
    ev = {"id": event["id"]}
    await api("PUT", "/catalog/events/{id}", 200, {"categoryId": category["id"]}, ids=ev)
    with_category = await api("GET", "/catalog/events/{id}", 200, ids=ev)
    assert with_category["category"]["id"] == category["id"]
    await api("GET", "/catalog/events", 200)
    prop = await api("POST", "/catalog/properties", 200, {"name": "price", "type": "number"})
    pid = {"id": prop["id"]}
    await api("PUT", "/catalog/properties/{id}", 200, {"propConfig": {"minimum": 0}}, ids=pid)
    await api("GET", "/catalog/properties/{id}", 200, ids=pid)
    await api("GET", "/catalog/properties", 200, query={"orderBy": "createdAt"})

    # A tracking plan, its events and a connection.
    plan = await api("POST", PLANS, 200, {"name": "Checkout Plan", "description": "Orders"})
    tp = {"plan_id": plan["id"]}
    await api("GET", PLANS, 200)
    await api("PUT", PLAN, 200, {"description": "All orders"}, ids=tp)
    order = {
        "name": "Order Completed",
        "eventType": "track",
        "identitySection": "properties",
        "rules": ORDER_RULES,
    }
    await api("PATCH", EVENTS, 200, order, ids=tp)
    by_name = {
        "name": "Product Viewed",
        "eventType": "track",
        "properties": [
            {"name": "sku", "type": "string", "required": True},
            {"name": "tags", "type": "array", "properties": [{"name": "label", "type": "string"}]},
        ],
    }
    await api("POST", EVENTS, 200, by_name, ids=tp)
    by_id = {"id": event["id"], "properties": [{"id": prop["id"], "required": True}]}
    await api("PUT", EVENTS, 200, by_id, ids=tp)
    page = await api("GET", EVENTS, 200, ids=tp, query={"page": "1"})
    plan_events = {e["name"]: e["id"] for e in page["data"]}
    assert set(plan_events) == {"Order Completed", "Product Viewed", "Cart Viewed"}
    event_ids = {"event_id": plan_events["Product Viewed"], **tp}
    await api("GET", EVENTS + "/{event_id}", 200, ids=event_ids)
    described = await api(
        "GET", EVENTS + "/{event_id}", 200, ids=event_ids, query={"format": "properties"}
    )
    assert [p["name"] for p in described["properties"]] == ["sku", "tags"]
    await api("GET", EVENTS + "/{event_id}", 400, ids=event_ids, query={"format": "xml"})
    await api("GET", PLAN, 200, ids=tp, query={"version": "1"})
    await api("GET", PLAN, 200, ids=tp)

    connection = {"config": {"global": {"propagateValidationErrors": True}}}
    await api("POST", CONNECTION, 200, connection, ids={**tp, **sid})
    track = {"track": {"allowUnplannedEvents": "FALSE", "unplannedProperties": "omit"}}
    await api("PUT", CONNECTION, 200, {"config": track}, ids={**tp, **sid})
    await api("GET", PLAN + "/sources", 200, ids=tp)
    bad: list[dict[str, Any]] = [{"page": {}}, {"page": {"allowUnplannedEvents": "true"}}]
    for config in bad:
        await api("PUT", CONNECTION, 400, {"config": config}, ids={**tp, **sid}, body_valid=False)

    # The snapshot, with its ETag.
    await api("GET", "/internal/v1/snapshot", 200)
    async with http.get(admin_url(gw, "/internal/v1/snapshot"), headers=BEARER) as resp:
        etag = resp.headers["ETag"]
    await api("GET", "/internal/v1/snapshot", 304, headers={**BEARER, "If-None-Match": etag})

    # Ingest, once the snapshot with the connected source is loaded.
    await wait_until_connected(gw, write_key)
    call = {"userId": "u1", "event": "Order Completed", "properties": {"amount": 12.5}}
    await api("POST", "/v1/track", 200, call, ingest=True, headers=basic_auth(write_key))
    await api("POST", "/v1/t", 200, call, ingest=True, query={"writeKey": write_key})
    batch = {
        "writeKey": write_key,
        "batch": [
            {"type": "track", "anonymousId": "a1", "event": "Order Completed", "properties": {}},
            {"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com"}},
        ],
    }
    await api("POST", "/v1/batch", 200, batch, ingest=True)
    report = await api("POST", "/v1/validate", 200, batch, ingest=True)
    assert "Required-Missing" in {v["type"] for v in report["results"][0]["violations"]}
    empty = {"writeKey": write_key, "batch": []}
    await api("POST", "/v1/batch", 400, empty, ingest=True, body_valid=False)
    await api("POST", "/v1/identify", 401, {"userId": "u1"}, ingest=True)

    # Deleting everything again.
    await api("DELETE", CONNECTION, 204, ids={**tp, **sid})
    await api("DELETE", CONNECTION, 400, ids={**tp, **sid})
    await api("DELETE", "/catalog/events/{id}", 400, ids=ev)  # the plan uses it
    await api(
        "DELETE", EVENTS + "/{event_id}", 204, ids={**tp, "event_id": plan_events["Cart Viewed"]}
    )
    await api("DELETE", "/catalog/events/{id}", 200, ids=ev)
    await api("DELETE", "/catalog/properties/{id}", 200, ids=pid)
    await api("DELETE", "/catalog/categories/{id}", 200, ids=cat)
    await api("DELETE", PLAN, 200, ids=tp)
    await api("DELETE", NATIVE + "/sources/{source_id}", 200, ids=sid)
    await api("GET", NATIVE + "/sources/{source_id}", 404, ids=sid)


async def test_a_plan_created_with_a_null_description_is_documented(
    gw: Gateway, http: aiohttp.ClientSession, document: dict[str, Any]
) -> None:
    # The gateway accepts it, so the request schema must too.
    api = Api(gw, http, document)
    plan = await api("POST", PLANS, 200, {"name": "Null Description", "description": None})
    assert plan["description"] is None


def test_patterns_are_written_in_json_schemas_dialect(document: dict[str, Any]) -> None:
    # ECMA-262 has no \Z: a generated schema must say $, or clients read "ends in Z".
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and isinstance(value, str):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document)
    assert found
    assert not [p for p in found if "\\Z" in p]
    entity_name = document["components"]["schemas"]["CategoryCreate"]["properties"]["name"]
    assert entity_name["pattern"].endswith("$")
