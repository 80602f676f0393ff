"""Plan events from catalog properties: POST by name, PUT by id, ?format=properties."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.catalog.properties_form import PropertySpec, build_rules, rules_to_properties
from gateway.enforce.compile import CompiledRule
from tests.conftest import Admin, basic_auth, ingest_url
from tests.test_catalog_plans import PLANS

ORDER_PROPERTIES: list[dict[str, Any]] = [
    {"name": "amount", "type": "number", "propConfig": {"minimum": 0}, "required": True},
    {"name": "currency", "type": "string", "propConfig": {"enum": ["EUR", "USD"]}},
    {
        "name": "cart",
        "type": "object",
        "propConfig": {},
        "additionalProperties": False,
        "properties": [{"name": "id", "type": "string", "propConfig": {}, "required": True}],
    },
    {
        "name": "items",
        "type": "array",
        "propConfig": {"maxItems": 3},
        "properties": [{"name": "sku", "type": "string", "propConfig": {"pattern": "^S-"}}],
    },
    {"name": "note", "type": ["string", "null"], "propConfig": {}},
]


def test_rules_built_from_properties_validate_as_described() -> None:
    specs = [
        PropertySpec("amount", "number", {"minimum": 0}, required=True),
        PropertySpec(
            "cart",
            "object",
            {},
            additional_properties=False,
            nested=[PropertySpec("id", "string", {}, required=True)],
        ),
        PropertySpec("tags", "array", {}, nested=[PropertySpec("label", "string", {})]),
        PropertySpec("anything", "", {}),
    ]
    rules = build_rules(specs, "properties")
    rule = CompiledRule(rules)
    assert rule.error is None
    good = {
        "properties": {"amount": 1, "cart": {"id": "c"}, "tags": [{"label": "x"}], "anything": []}
    }
    assert rule.is_valid(good)
    for bad in (
        {},  # the section is required because amount is
        {"properties": {"amount": -1}},
        {"properties": {"amount": 1, "cart": {}}},
        {"properties": {"amount": 1, "cart": {"id": "c", "extra": 1}}},
        {"properties": {"amount": 1, "tags": [{"label": 5}]}},
    ):
        assert not rule.is_valid(bad), bad
    described = rules_to_properties(rules, "properties")
    assert [d["name"] for d in described] == ["amount", "cart", "tags", "anything"]
    assert described[1]["properties"] == [
        {"name": "id", "type": "string", "propConfig": {}, "required": True}
    ]
    assert described[1]["additionalProperties"] is False
    # Identity sections nest: context.traits is context → traits.
    traits = build_rules([PropertySpec("email", "string", {"format": "email"})], "context.traits")
    assert CompiledRule(traits).is_valid({"context": {"traits": {"email": "a@b.co"}}})
    assert not CompiledRule(traits).is_valid({"context": {"traits": {"email": "nope"}}})


async def test_post_properties_then_read_both_formats(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Props Plan"})
    v2 = await api.ok(
        "POST",
        f"{PLANS}/{plan['id']}/events",
        {"name": "Order Completed", "eventType": "track", "properties": ORDER_PROPERTIES},
    )
    assert v2["version"] == 2
    [event] = (await api.ok("GET", f"{PLANS}/{plan['id']}/events"))["data"]
    assert event["additionalProperties"] is True

    as_schema = await api.ok("GET", f"{PLANS}/{plan['id']}/events/{event['id']}")
    section = as_schema["rules"]["properties"]["properties"]
    assert section["required"] == ["amount"]
    assert section["properties"]["amount"] == {"type": ["number"], "minimum": 0}
    assert section["properties"]["items"]["items"]["properties"]["sku"]["pattern"] == "^S-"

    as_properties = await api.ok(
        "GET", f"{PLANS}/{plan['id']}/events/{event['id']}?format=properties"
    )
    assert "rules" not in as_properties
    props = {p["name"]: p for p in as_properties["properties"]}
    assert list(props) == ["amount", "currency", "cart", "items", "note"]
    assert props["amount"]["required"] is True
    assert props["cart"]["properties"][0]["name"] == "id"

    # The catalog now has every property, nested ones too, and the view names them.
    catalog = (await api.ok("GET", "/catalog/properties?orderBy=name"))["data"]
    by_name = {p["name"]: p for p in catalog}
    assert set(by_name) == {"amount", "currency", "cart", "id", "items", "sku", "note"}
    assert props["amount"]["id"] == by_name["amount"]["id"]
    assert props["cart"]["properties"][0]["id"] == by_name["id"]["id"]
    status, _ = await api("GET", f"{PLANS}/{plan['id']}/events/{event['id']}?format=xml")
    assert status == 400


async def test_same_property_different_keywords_is_refused(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Conflict Plan"})
    await api.ok(
        "POST",
        f"{PLANS}/{plan['id']}/events",
        {"name": "Order Completed", "eventType": "track", "properties": ORDER_PROPERTIES},
    )
    status, body = await api(
        "POST",
        f"{PLANS}/{plan['id']}/events",
        {
            "name": "Order Refunded",
            "eventType": "track",
            "properties": [{"name": "amount", "type": "number", "propConfig": {"minimum": 5}}],
        },
    )
    assert status == 400
    assert body["message"] == (
        "Property with name [amount] and type [number] already exists with different advanced "
        "keywords."
    )
    # The same keywords reuse the catalog property.
    await api.ok(
        "POST",
        f"{PLANS}/{plan['id']}/events",
        {
            "name": "Order Refunded",
            "eventType": "track",
            "properties": [{"name": "amount", "type": "number", "propConfig": {"minimum": 0}}],
        },
    )
    amounts = [
        p for p in (await api.ok("GET", "/catalog/properties"))["data"] if p["name"] == "amount"
    ]
    assert len(amounts) == 1


async def test_put_by_identifiers(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Ids Plan"})
    event = await api.ok("POST", "/catalog/events", {"name": "", "eventType": "identify"})
    email = await api.ok(
        "POST",
        "/catalog/properties",
        {"name": "email", "type": "string", "propConfig": {"format": "email"}},
    )
    v2 = await api.ok(
        "PUT",
        f"{PLANS}/{plan['id']}/events",
        {"id": event["id"], "properties": [{"id": email["id"], "required": True}]},
    )
    assert v2["version"] == 2
    got = await api.ok("GET", f"{PLANS}/{plan['id']}/events/{event['id']}")
    assert got["identitySection"] == "traits"
    traits = got["rules"]["properties"]["traits"]
    assert traits["properties"]["email"] == {"type": ["string"], "format": "email"}
    assert traits["required"] == ["email"]


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("POST", {"name": "Thing", "properties": [{"name": "a", "type": "string"}]}),
        ("POST", {"name": "Thing", "eventType": "track", "properties": []}),
        ("POST", {"name": "Thing", "eventType": "track"}),
        ("POST", {"name": "Thing", "eventType": "track", "properties": [{"name": "a"}]}),
        (
            "POST",
            {
                "name": "Thing",
                "eventType": "track",
                "properties": [{"name": "1a", "type": "string"}],
            },
        ),
        (
            "POST",
            {"name": "Thing", "eventType": "track", "properties": [{"name": "a", "type": "str"}]},
        ),
        (
            "POST",
            {
                "name": "Thing",
                "eventType": "track",
                "properties": [{"name": "a", "type": "string"}, {"name": "a", "type": "string"}],
            },
        ),
        (
            "POST",
            {
                "name": "Thing",
                "eventType": "track",
                "properties": [{"name": "a", "type": "string", "required": "yes"}],
            },
        ),
        ("PUT", {"properties": [{"id": "prop_x"}]}),
        ("PUT", {"id": "ev_missing", "properties": [{"id": "prop_x"}]}),
        ("PUT", {"id": "{event}", "properties": [{"id": "prop_missing"}]}),
        ("PUT", {"id": "{event}", "properties": []}),
        ("PUT", {"id": "{event}", "properties": [{"name": "no id"}]}),
    ],
)
async def test_form_errors(api: Admin, method: str, body: dict[str, Any]) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Errors Plan"})
    event = await api.ok("POST", "/catalog/events", {"name": "Existing Event"})
    if body.get("id") == "{event}":
        body = {**body, "id": event["id"]}
    status, document = await api(method, f"{PLANS}/{plan['id']}/events", body)
    assert status == 400, document
    assert set(document) == {"code", "message"}


async def test_hand_written_rules_read_as_properties(api: Admin) -> None:
    """Rules sent as a JSON schema may say what the properties form never writes (a schema for
    the other keys, a type list); their properties view still describes them."""
    plan = await api.ok("POST", PLANS, {"name": "Hand Plan"})
    rules = {
        "type": "object",
        "properties": {
            "properties": {
                "type": "object",
                "properties": {
                    "cart": {
                        "type": "object",
                        "properties": {"id": {"type": "string"}},
                        "additionalProperties": {"type": "integer"},
                    },
                    "note": {"type": ["string", "null"], "maxLength": 5},
                    "anything": {},
                },
            }
        },
    }
    await api.ok("PATCH", f"{PLANS}/{plan['id']}/events", {"name": "Hand Made", "rules": rules})
    event = (await api.ok("GET", f"{PLANS}/{plan['id']}/events"))["data"][0]
    view = await api.ok("GET", f"{PLANS}/{plan['id']}/events/{event['id']}?format=properties")
    assert view["properties"] == [
        {
            "id": None,
            "name": "cart",
            "type": "object",
            "propConfig": {},
            "required": False,
            "properties": [
                {"id": None, "name": "id", "type": "string", "propConfig": {}, "required": False}
            ],
            "additionalProperties": {"type": "integer"},
        },
        {
            "id": None,
            "name": "note",
            "type": ["string", "null"],
            "propConfig": {"maxLength": 5},
            "required": False,
        },
        {"id": None, "name": "anything", "type": "", "propConfig": {}, "required": False},
    ]


async def test_properties_form_enforces_end_to_end(api: Admin) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Enforced Plan"})
    await api.ok(
        "POST",
        f"{PLANS}/{plan['id']}/events",
        {
            "name": "",
            "eventType": "identify",
            "identitySection": "context.traits",
            "properties": [
                {
                    "name": "email",
                    "type": "string",
                    "propConfig": {"format": "email"},
                    "required": True,
                }
            ],
        },
    )
    source = await api.source("App")
    await api.ok(
        "POST",
        f"{PLANS}/{plan['id']}/sources/{source['id']}",
        {"config": {"identify": {"anyOtherViolation": "drop"}}},
    )
    key = source["writeKeys"][0]
    events = [
        {"type": "identify", "userId": "u1", "context": {"traits": {"email": "a@b.co"}}},
        {"type": "identify", "userId": "u2", "context": {"traits": {"email": "nope"}}},
        {"type": "identify", "userId": "u3"},
    ]
    async with asyncio.timeout(15):
        while True:
            async with api.http.post(
                ingest_url(api.gw, "/v1/validate"), json={"batch": events}, headers=basic_auth(key)
            ) as resp:
                report = await resp.json() if resp.status == 200 else None
            if report and report["quarantined"] == 2:
                break
            await asyncio.sleep(0.1)
    outcomes = [(r["outcome"], [v["type"] for v in r["violations"]]) for r in report["results"]]
    assert outcomes == [
        ("forwarded", []),
        ("quarantined", ["Advance-Rules-Violation"]),
        ("quarantined", ["Required-Missing"]),
    ]
