"""Custom types: rules from config, $defs in plan rules, no delete while referenced."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.enforce.compile import CompiledRule
from tests.conftest import Admin
from tests.test_catalog_plans import PLANS

TYPES = "/catalog/custom-types"


async def test_string_type_lifecycle(api: Admin) -> None:
    created = await api.ok(
        "POST",
        TYPES,
        {
            "name": "CountryCode",
            "type": "string",
            "config": {"enum": ["DE", "FR"], "format": "datetime"},
        },
    )
    assert created["id"].startswith("def_")
    assert created["rules"] == {"type": ["string"], "enum": ["DE", "FR"], "format": "date-time"}
    assert (created["version"], created["dataType"], created["defs"]) == (1, "string", [])
    assert await api.ok("GET", f"{TYPES}/{created['id']}") == created
    updated = await api.ok(
        "PUT", f"{TYPES}/{created['id']}", {"type": "string", "config": {"maxLength": 2}}
    )
    assert (updated["version"], updated["rules"]) == (2, {"type": ["string"], "maxLength": 2})
    listing = await api.ok("GET", TYPES)
    assert [t["name"] for t in listing["data"]] == ["CountryCode"]
    deleted = await api.ok("DELETE", f"{TYPES}/{created['id']}")
    assert deleted["name"] == "CountryCode"
    status, _ = await api("GET", f"{TYPES}/{created['id']}")
    assert status == 404


async def test_array_of_enums_enforces_through_a_plan(api: Admin) -> None:
    os_type = await api.ok(
        "POST",
        TYPES,
        {"name": "CustomTypeOS", "type": "string", "config": {"enum": ["iOS", "Android"]}},
    )
    array_type = await api.ok(
        "POST",
        TYPES,
        {"name": "CustomTypeArray", "type": "array", "config": {"itemTypes": ["CustomTypeOS"]}},
    )
    assert array_type["rules"] == {"type": ["array"], "items": {"$ref": "#/$defs/CustomTypeOS"}}
    assert array_type["defs"] == ["CustomTypeOS"]
    await api.ok("POST", "/catalog/properties", {"name": "platforms", "type": "CustomTypeArray"})

    plan = await api.ok("POST", PLANS, {"name": "Devices Plan"})
    await api.ok(
        "POST",
        f"{PLANS}/{plan['id']}/events",
        {
            "name": "App Opened",
            "eventType": "track",
            "properties": [{"name": "platforms", "type": "CustomTypeArray", "required": True}],
        },
    )
    [event] = (await api.ok("GET", f"{PLANS}/{plan['id']}/events"))["data"]
    rules = (await api.ok("GET", f"{PLANS}/{plan['id']}/events/{event['id']}"))["rules"]
    assert set(rules["$defs"]) == {"CustomTypeArray", "CustomTypeOS"}
    rule = CompiledRule(rules)
    assert rule.error is None
    assert rule.is_valid({"properties": {"platforms": ["iOS", "Android"]}})
    assert not rule.is_valid({"properties": {"platforms": ["Windows"]}})
    assert not rule.is_valid({"properties": {"platforms": "iOS"}})
    props = await api.ok("GET", f"{PLANS}/{plan['id']}/events/{event['id']}?format=properties")
    assert props["properties"][0]["type"] == "CustomTypeArray"

    # Referenced types cannot be deleted.
    status, body = await api("DELETE", f"{TYPES}/{os_type['id']}")
    assert status == 400
    assert "CustomTypeArray" in body["message"]
    status, body = await api("DELETE", f"{TYPES}/{array_type['id']}")
    assert status == 400
    assert "platforms" in body["message"]


async def test_object_type_from_catalog_properties(api: Admin) -> None:
    street = await api.ok("POST", "/catalog/properties", {"name": "street", "type": "string"})
    zip_code = await api.ok(
        "POST",
        "/catalog/properties",
        {"name": "zip", "type": "string", "propConfig": {"pattern": "^[0-9]{5}$"}},
    )
    address = await api.ok(
        "POST",
        TYPES,
        {
            "name": "Address",
            "type": "object",
            "config": {},
            "properties": [{"id": street["id"], "required": True}, {"id": zip_code["id"]}],
        },
    )
    assert address["rules"] == {
        "type": ["object"],
        "properties": {
            "street": {"type": ["string"]},
            "zip": {"type": ["string"], "pattern": "^[0-9]{5}$"},
        },
        "required": ["street"],
    }
    assert address["properties"] == [
        {"id": street["id"], "required": True},
        {"id": zip_code["id"], "required": False},
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"type": "string", "config": {}},
        {"name": "lowercase", "type": "string", "config": {}},
        {"name": "X", "type": "string", "config": {}},
        {"name": "Bad Name", "type": "string", "config": {}},
        {"name": "Good", "type": "text", "config": {}},
        {"name": "Good", "type": "string"},
        {"name": "Good", "type": "string", "config": []},
        {"name": "Good", "type": "string", "config": {"minimum": 1}},
        {"name": "Good", "type": "string", "config": {"format": "phone"}},
        {"name": "Good", "type": "number", "config": {"pattern": "x"}},
        {"name": "Good", "type": "array", "config": {"itemTypes": []}},
        {"name": "Good", "type": "array", "config": {"itemTypes": ["Missing"]}},
        {"name": "Good", "type": "array", "config": {"itemTypes": ["Missing", "string"]}},
        {"name": "Good", "type": "object", "config": {}},
        {"name": "Good", "type": "object", "config": {}, "properties": [{"id": "prop_missing"}]},
    ],
)
async def test_custom_type_errors(api: Admin, body: dict[str, Any]) -> None:
    status, document = await api("POST", TYPES, body)
    assert status == 400, document
    assert set(document) == {"code", "message"}


async def test_duplicates_missing_and_unknown_property_types(api: Admin) -> None:
    await api.ok("POST", TYPES, {"name": "Money", "type": "number", "config": {"minimum": 0}})
    status, _ = await api("POST", TYPES, {"name": "Money", "type": "number", "config": {}})
    assert status == 400
    for method, path in (("GET", f"{TYPES}/def_missing"), ("DELETE", f"{TYPES}/def_missing")):
        status, _ = await api(method, path)
        assert status == 404
    status, _ = await api("PUT", f"{TYPES}/def_missing", {"type": "string", "config": {}})
    assert status == 404
    status, body = await api("POST", "/catalog/properties", {"name": "price", "type": "Nope"})
    assert status == 400
    assert "Nope" in body["message"]
