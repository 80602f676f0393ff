"""Enforcement semantics (README: Enforcement), table-driven against ``Enforcer().enforce``.

Each case builds a snapshot with :func:`parse_snapshot`, enforces one event and checks what a
user observes: the decision (drop reason, every violation with its ajv-style type, message,
property and meta) and the event itself (context stamps on forwarded events, untouched when
dropped or when the source has no plan).
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from typing import Any, cast

import pytest

from gateway.enforce.enforcer import Decision, Enforcer
from gateway.plans.snapshot import Snapshot, Source, parse_snapshot
from tests.conftest import canonical, violation

PLAN_ID = "tp_semantics"
PLAN_VERSION = 7
SOURCE = "src_semantics"
BARE_SOURCE = "src_no_plan"
EVENT_NAME = "Order Completed"
DRAFT_04 = "http://json-schema.org/draft-04/schema#"
DRAFT_06 = "http://json-schema.org/draft-06/schema#"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
PROPS_SP = "#/properties/properties"  # schemaPath of a rule's `properties` section

Json = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# helpers


def make_snapshot(events: list[Json], config: Json | None = None) -> Snapshot:
    """One plan with ``events``, connected to SOURCE with ``config``; BARE_SOURCE has no plan."""
    return parse_snapshot(
        {
            "revision": "r-semantics",
            "sources": [
                {
                    "id": SOURCE,
                    "name": "Semantics",
                    "enabled": True,
                    "writeKeys": ["wk_semantics"],
                    "trackingPlan": {
                        "id": PLAN_ID,
                        "version": PLAN_VERSION,
                        "config": config if config is not None else {},
                    },
                },
                {"id": BARE_SOURCE, "name": "Bare", "enabled": True, "writeKeys": ["wk_bare"]},
            ],
            "trackingPlans": [
                {"id": PLAN_ID, "name": "Semantics", "version": PLAN_VERSION, "events": events}
            ],
        }
    )


def source_of(snapshot: Snapshot, source_id: str = SOURCE) -> Source:
    return next(s for s in snapshot.sources if s.id == source_id)


def track_rule(name: str, rules: Json) -> Json:
    return {"name": name, "eventType": "track", "identitySection": "properties", "rules": rules}


def props_rule(props_schema: Json, *, draft: str = DRAFT_07, **top: Any) -> Json:
    """A rule nesting ``props_schema`` under the message's ``properties``."""
    return {"$schema": draft, "type": "object", "properties": {"properties": props_schema}, **top}


def obj(properties: Json, **keywords: Any) -> Json:
    return {"type": "object", "properties": properties, **keywords}


def track(name: str = EVENT_NAME, **properties: Any) -> Json:
    return {
        "type": "track",
        "event": name,
        "userId": "user-1",
        "messageId": "m-1",
        "properties": properties,
    }


def enforce_one(
    events: list[Json], event: Json, config: Json | None = None, source_id: str = SOURCE
) -> Decision | None:
    snapshot = make_snapshot(events, config)
    return Enforcer().enforce(event, source_of(snapshot, source_id), snapshot)


def enforce_rule(rule: Json, event: Json, config: Json | None = None) -> Decision:
    decision = enforce_one([track_rule(EVENT_NAME, rule)], event, config)
    assert decision is not None
    return decision


def assert_forwarded(decision: Decision, event: Json, expected: list[Json]) -> None:
    """Forwarded with exactly ``expected``, stamped with the plan and those violations."""
    assert decision.reason is None
    assert decision.plan.id == PLAN_ID
    assert decision.plan.version == PLAN_VERSION
    assert canonical(decision.violations) == canonical(expected)
    context = event["context"]
    assert context["trackingPlanId"] == PLAN_ID
    assert context["trackingPlanVersion"] == PLAN_VERSION
    assert canonical(context["violationErrors"]) == canonical(expected)
    assert "omittedProperties" not in context


# ---------------------------------------------------------------------------------------------
# one case per keyword of the violation-type table (README: Enforcement)


def field_case(keyword: str, field_schema: Json, value: Any, vtype: str, message: str) -> Any:
    """A property ``f`` with ``field_schema``; ``value`` violates exactly ``keyword``."""
    return pytest.param(
        obj({"f": field_schema}),
        {"f": value},
        [violation(vtype, message, "f", "/properties/f", f"{PROPS_SP}/properties/f/{keyword}")],
        id=keyword,
    )


ADV = "Advance-Rules-Violation"
KEYWORD_CASES = [
    pytest.param(
        obj({"amount": {"type": "number"}}, required=["amount"]),
        {},
        [
            violation(
                "Required-Missing",
                "must have required property 'amount'",
                "amount",
                "/properties",
                f"{PROPS_SP}/required",
            )
        ],
        id="required",
    ),
    field_case("type", {"type": "number"}, "12", "Datatype-Mismatch", "must be number"),
    field_case(
        "type", {"type": ["string", "null"]}, 12, "Datatype-Mismatch", "must be string,null"
    ),
    pytest.param(
        obj({"amount": {"type": "number"}}, additionalProperties=False),
        {"amount": 1, "coupon": "X"},
        [
            violation(
                "Additional-Properties",
                "must NOT have additional properties 'coupon'",
                "coupon",
                "/properties",
                f"{PROPS_SP}/additionalProperties",
            )
        ],
        id="additionalProperties",
    ),
    field_case(
        "minLength",
        {"type": "string", "minLength": 3},
        "ab",
        ADV,
        "must NOT have fewer than 3 characters",
    ),
    field_case(
        "maxLength",
        {"type": "string", "maxLength": 3},
        "abcd",
        ADV,
        "must NOT have more than 3 characters",
    ),
    field_case(
        "pattern",
        {"type": "string", "pattern": "^[A-Z]{3}$"},
        "usd",
        ADV,
        'must match pattern "^[A-Z]{3}$"',
    ),
    field_case(
        "format",
        {"type": "string", "format": "date-time"},
        "yesterday",
        ADV,
        'must match format "date-time"',
    ),
    field_case("multipleOf", {"multipleOf": 5}, 7, ADV, "must be multiple of 5"),
    field_case("minimum", {"minimum": 5}, 4, ADV, "must be >= 5"),
    field_case("maximum", {"maximum": 5}, 6, ADV, "must be <= 5"),
    field_case("exclusiveMinimum", {"exclusiveMinimum": 5}, 5, ADV, "must be > 5"),
    field_case("exclusiveMaximum", {"exclusiveMaximum": 5}, 5, ADV, "must be < 5"),
    field_case("minItems", {"minItems": 2}, [1], ADV, "must NOT have fewer than 2 items"),
    field_case("maxItems", {"maxItems": 1}, [1, 2], ADV, "must NOT have more than 1 items"),
    field_case("uniqueItems", {"uniqueItems": True}, [1, 1], ADV, "must NOT have duplicate items"),
    field_case(
        "enum",
        {"enum": ["card", "cash"]},
        "cheque",
        ADV,
        "must be equal to one of the allowed values",
    ),
    pytest.param(
        obj(
            {"method": {"type": "string"}, "card": {"type": "string"}},
            **{
                "if": {"properties": {"method": {"const": "card"}}},
                "then": {"required": ["card"]},
            },
        ),
        {"method": "card"},
        [
            violation(
                "Required-Missing",
                "must have required property 'card'",
                "card",
                "/properties",
                f"{PROPS_SP}/then/required",
            ),
            violation(
                ADV, 'must match "then" schema', "properties", "/properties", f"{PROPS_SP}/if"
            ),
        ],
        id="if-then",
    ),
    pytest.param(
        obj(
            {"method": {"type": "string"}, "iban": {"type": "string"}},
            **{
                "if": {"properties": {"method": {"const": "card"}}},
                "then": {},
                "else": {"required": ["iban"]},
            },
        ),
        {"method": "wire"},
        [
            violation(
                "Required-Missing",
                "must have required property 'iban'",
                "iban",
                "/properties",
                f"{PROPS_SP}/else/required",
            ),
            violation(
                ADV, 'must match "else" schema', "properties", "/properties", f"{PROPS_SP}/if"
            ),
        ],
        id="if-else",
    ),
    field_case("const", {"const": "EUR"}, "USD", "Unknown-Violation", "must be equal to constant"),
    field_case(
        "contains",
        {"type": "array", "contains": {"type": "string"}},
        [1, 2],
        "Unknown-Violation",
        "must contain at least 1 valid item(s)",
    ),
]


@pytest.mark.parametrize(("props_schema", "props", "expected"), KEYWORD_CASES)
def test_keyword_yields_its_violation_type(
    props_schema: Json, props: Json, expected: list[Json]
) -> None:
    event = track(**props)
    decision = enforce_rule(props_rule(props_schema), event)
    assert decision.event_label == EVENT_NAME
    assert_forwarded(decision, event, expected)
    assert event["properties"] == props  # validation never modifies the event


# ---------------------------------------------------------------------------------------------
# formats: what the engine checks

FORMAT_CASES = [
    ("date-time", "2024-05-01T12:30:00.123Z", "2024-05-01 12:30"),
    ("date-time", "2024-05-01T12:30:00+02:00", "2024-13-01T12:30:00Z"),
    ("date", "2024-02-29", "2023-02-29"),
    ("time", "12:30:00Z", "25:00:00Z"),
    ("email", "ada@example.com", "ada.example.com"),
    ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3"),
    ("hostname", "api.example.com", "-bad-.example.com"),
    ("ipv4", "192.168.0.1", "256.1.1.1"),
    ("ipv6", "2001:db8::1", "2001:db8::g"),
    ("uri", "https://example.com/a?b=c", "not a uri"),
]


@pytest.mark.parametrize(
    ("fmt", "value", "valid"),
    [
        pytest.param(fmt, value, valid, id=f"{fmt}-{'valid' if valid else 'invalid'}-{i}")
        for i, (fmt, good, bad) in enumerate(FORMAT_CASES)
        for value, valid in ((good, True), (bad, False))
    ],
)
def test_format(fmt: str, value: str, valid: bool) -> None:
    event = track(v=value)
    decision = enforce_rule(props_rule(obj({"v": {"type": "string", "format": fmt}})), event)
    expected = (
        []
        if valid
        else [
            violation(
                ADV,
                f'must match format "{fmt}"',
                "v",
                "/properties/v",
                f"{PROPS_SP}/properties/v/format",
            )
        ]
    )
    assert_forwarded(decision, event, expected)


UUID = "123e4567-e89b-12d3-a456-426614174000"


def test_uuid_is_reported_as_its_format_wherever_it_is_written() -> None:
    # The engine checks `format: "uuid"` as a pattern (one of its own, or, beside a pattern
    # of the subschema's, as a format): violations name the format where the rule has it.
    rule = props_rule(
        obj(
            {
                "id": {"type": "string", "format": "uuid"},
                "ref": {"$ref": "#/definitions/key"},
                "ids": {"type": "array", "items": {"format": "uuid"}},
                "slug": {"type": "string", "format": "uuid", "pattern": "^[0-9a-f-]+$"},
            }
        ),
        definitions={"key": {"type": "string", "format": "uuid"}},
    )
    good = track(id=UUID, ref=UUID.upper(), ids=[UUID], slug=UUID)
    assert_forwarded(enforce_rule(rule, good), good, [])
    bad = track(id=UUID + "\n", ref="x", ids=[UUID, UUID[:-1] + "g"], slug="-" * 36)
    fmt = 'must match format "uuid"'
    expected = [
        violation(ADV, fmt, "id", "/properties/id", f"{PROPS_SP}/properties/id/format"),
        violation(ADV, fmt, "ref", "/properties/ref", "#/definitions/key/format"),
        violation(ADV, fmt, "1", "/properties/ids/1", f"{PROPS_SP}/properties/ids/items/format"),
        violation(ADV, fmt, "slug", "/properties/slug", f"{PROPS_SP}/properties/slug/format"),
    ]
    assert_forwarded(enforce_rule(rule, bad), bad, expected)


# ---------------------------------------------------------------------------------------------
# drafts by $schema

DRAFT_CASES = [
    pytest.param(
        DRAFT_04,
        {"type": "number", "minimum": 5, "exclusiveMinimum": True},
        5,
        [violation(ADV, "must be > 5", "n", "/properties/n", f"{PROPS_SP}/properties/n/minimum")],
        id="draft04-boolean-exclusiveMinimum-at-bound",
    ),
    pytest.param(
        DRAFT_04,
        {"type": "number", "minimum": 5, "exclusiveMinimum": True},
        5.5,
        [],
        id="draft04-boolean-exclusiveMinimum-above",
    ),
    pytest.param(
        DRAFT_04,
        {"type": "number", "maximum": 5, "exclusiveMaximum": True},
        5,
        [violation(ADV, "must be < 5", "n", "/properties/n", f"{PROPS_SP}/properties/n/maximum")],
        id="draft04-boolean-exclusiveMaximum-at-bound",
    ),
    pytest.param(
        DRAFT_04,
        {"type": "number", "minimum": 5},
        5,
        [],
        id="draft04-minimum-inclusive",
    ),
    pytest.param(
        DRAFT_04,
        {"const": "EUR"},
        "USD",
        [],
        id="draft04-ignores-const",
    ),
    pytest.param(
        DRAFT_06,
        {"type": "number", "exclusiveMinimum": 5},
        5,
        [
            violation(
                ADV,
                "must be > 5",
                "n",
                "/properties/n",
                f"{PROPS_SP}/properties/n/exclusiveMinimum",
            )
        ],
        id="draft06-numeric-exclusiveMinimum-at-bound",
    ),
    pytest.param(
        DRAFT_06,
        {"type": "number", "exclusiveMinimum": 5},
        5.01,
        [],
        id="draft06-numeric-exclusiveMinimum-above",
    ),
    pytest.param(
        DRAFT_06,
        {"const": "EUR"},
        "USD",
        [
            violation(
                "Unknown-Violation",
                "must be equal to constant",
                "n",
                "/properties/n",
                f"{PROPS_SP}/properties/n/const",
            )
        ],
        id="draft06-const",
    ),
    pytest.param(
        DRAFT_07,
        {"type": "number", "exclusiveMaximum": 5},
        5,
        [
            violation(
                ADV,
                "must be < 5",
                "n",
                "/properties/n",
                f"{PROPS_SP}/properties/n/exclusiveMaximum",
            )
        ],
        id="draft07-numeric-exclusiveMaximum-at-bound",
    ),
]


@pytest.mark.parametrize(("draft", "field_schema", "value", "expected"), DRAFT_CASES)
def test_draft_selected_by_schema(
    draft: str, field_schema: Json, value: Any, expected: list[Json]
) -> None:
    event = track(n=value)
    decision = enforce_rule(props_rule(obj({"n": field_schema}), draft=draft), event)
    assert_forwarded(decision, event, expected)


def test_draft04_numeric_exclusive_minimum_is_a_compile_error_of_that_rule() -> None:
    event = track(n=5)
    rule = props_rule(obj({"n": {"exclusiveMinimum": 5}}), draft=DRAFT_04)
    decision = enforce_rule(rule, event)
    assert decision.reason is None
    [only] = decision.violations
    assert only["type"] == "Unknown-Violation"
    assert only["message"]
    assert event["context"]["violationErrors"] == decision.violations


# ---------------------------------------------------------------------------------------------
# $ref: local works, remote never fetched

AMOUNT_DEF = {"type": "number", "minimum": 0}


@pytest.mark.parametrize(
    ("rule", "amount", "expected"),
    [
        pytest.param(
            {
                "type": "object",
                "definitions": {"amount": AMOUNT_DEF},
                "properties": {"properties": obj({"total": {"$ref": "#/definitions/amount"}})},
            },
            -1,
            [
                violation(
                    ADV,
                    "must be >= 0",
                    "total",
                    "/properties/total",
                    f"{PROPS_SP}/properties/total/minimum",
                )
            ],
            id="definitions-invalid",
        ),
        pytest.param(
            {
                "type": "object",
                "definitions": {"amount": AMOUNT_DEF},
                "properties": {"properties": obj({"total": {"$ref": "#/definitions/amount"}})},
            },
            10,
            [],
            id="definitions-valid",
        ),
        pytest.param(
            {
                "type": "object",
                "$defs": {"amount": AMOUNT_DEF},
                "properties": {"properties": obj({"total": {"$ref": "#/$defs/amount"}})},
            },
            "ten",
            [
                violation(
                    "Datatype-Mismatch",
                    "must be number",
                    "total",
                    "/properties/total",
                    f"{PROPS_SP}/properties/total/type",
                )
            ],
            id="defs-invalid",
        ),
        pytest.param(
            {
                "type": "object",
                "$defs": {"amount": AMOUNT_DEF},
                "properties": {"properties": obj({"total": {"$ref": "#/$defs/amount"}})},
            },
            3.5,
            [],
            id="defs-valid",
        ),
        pytest.param(
            {
                "$id": "https://schemas.example.com/order.json",
                "type": "object",
                "definitions": {"amount": AMOUNT_DEF},
                "properties": {"properties": obj({"total": {"$ref": "#/definitions/amount"}})},
            },
            -2,
            [
                violation(
                    ADV,
                    "must be >= 0",
                    "total",
                    "/properties/total",
                    f"{PROPS_SP}/properties/total/minimum",
                )
            ],
            id="local-ref-under-absolute-id",
        ),
    ],
)
def test_local_ref(rule: Json, amount: Any, expected: list[Json]) -> None:
    """Custom types inline under definitions/$defs are resolved and validated.

    Only the keyword at the end of schemaPath is checked: through a ``$ref`` even ajv's
    schemaPath varies (ajv-validator/ajv#512), so the exact pointer is not part of the contract.
    """
    event = track(total=amount)
    decision = enforce_rule(rule, event)
    assert decision.reason is None
    assert len(decision.violations) == len(expected)
    for got, want in zip(decision.violations, expected, strict=True):
        keyword = want["meta"]["schemaPath"].rsplit("/", 1)[1]
        assert got["meta"]["schemaPath"].endswith("/" + keyword)
        got_meta = {"instancePath": got["meta"]["instancePath"]}
        want_meta = {"instancePath": want["meta"]["instancePath"]}
        assert {**got, "meta": got_meta} == {**want, "meta": want_meta}
    assert event["context"]["violationErrors"] == decision.violations
    assert event["context"]["trackingPlanId"] == PLAN_ID


PAYMENT_TYPE = {
    "type": "object",
    "properties": {"method": {"type": "string"}, "card": {"type": "string"}},
    "if": {"properties": {"method": {"const": "card"}}, "required": ["method"]},
    "then": {"required": ["card"]},
}


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(props_rule(obj({"payment": PAYMENT_TYPE})), id="inline"),
        pytest.param(
            props_rule(
                obj({"payment": {"$ref": "#/definitions/payment"}}),
                definitions={"payment": PAYMENT_TYPE},
            ),
            id="via-definitions-ref",
        ),
        pytest.param(
            props_rule(
                obj({"payment": {"$ref": "#/$defs/payment"}}),
                **cast(Json, {"$defs": {"payment": PAYMENT_TYPE}}),
            ),
            id="via-defs-ref",
        ),
    ],
)
def test_if_in_a_custom_type_is_reported_like_any_if(rule: Json) -> None:
    """A custom type with if/then yields the `if` violation whether inline or referenced."""
    event = track(payment={"method": "card"})
    decision = enforce_rule(rule, event)
    summary = sorted(
        (v["type"], v["message"], v["property"], v["meta"]["instancePath"])
        for v in decision.violations
    )
    assert summary == [
        (ADV, 'must match "then" schema', "payment", "/properties/payment"),
        ("Required-Missing", "must have required property 'card'", "card", "/properties/payment"),
    ]


def test_if_in_array_items_is_reported_for_every_failing_item() -> None:
    """ajv (allErrors) reports the `if` error once per failing item, like any other keyword."""
    rule = props_rule(obj({"payments": {"type": "array", "items": PAYMENT_TYPE}}))
    event = track(payments=[{"method": "card"}, {"method": "cash"}, {"method": "card"}])
    decision = enforce_rule(rule, event)
    items_sp = f"{PROPS_SP}/properties/payments/items"
    assert_forwarded(
        decision,
        event,
        [
            violation(
                "Required-Missing",
                "must have required property 'card'",
                "card",
                f"/properties/payments/{i}",
                f"{items_sp}/then/required",
            )
            for i in (0, 2)
        ]
        + [
            violation(
                ADV,
                'must match "then" schema',
                str(i),
                f"/properties/payments/{i}",
                f"{items_sp}/if",
            )
            for i in (0, 2)
        ],
    )


def remote_ref_rule(url: str) -> Json:
    return props_rule(obj({"total": {"$ref": url}}))


def test_remote_ref_is_an_unknown_violation_and_never_fetched() -> None:
    url = "http://127.0.0.1:9/x.json"
    event = track(total=1)
    decision = enforce_rule(remote_ref_rule(url), event)
    assert decision.reason is None
    [only] = decision.violations
    assert only["type"] == "Unknown-Violation"
    assert url in only["message"]
    assert event["context"]["violationErrors"] == [only]


class RefServer:
    """A real TCP listener on 127.0.0.1 that counts connections (closing each at once)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.base = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        for _ in range(2400):  # at most ~2 minutes, the test timeout
            if self._stop.is_set():
                return
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def __enter__(self) -> RefServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


REMOTE_REF_RULES = {
    "absolute-url": lambda base: remote_ref_rule(f"{base}/x.json"),
    "absolute-url-with-pointer": lambda base: remote_ref_rule(f"{base}/defs.json#/amount"),
    "relative-to-id": lambda base: {
        **remote_ref_rule("defs.json#/amount"),
        "$id": f"{base}/order.json",
    },
    "beside-contentMediaType": lambda base: props_rule(
        obj(
            {
                "total": {"$ref": f"{base}/x.json"},
                "payload": {"type": "string", "contentMediaType": "application/json"},
            }
        )
    ),
    "beside-unsatisfiable-required": lambda base: props_rule(
        obj({"total": {"$ref": f"{base}/x.json"}}, required=["qty"], additionalProperties=False)
    ),
}


@pytest.mark.parametrize("variant", list(REMOTE_REF_RULES))
def test_remote_ref_touches_no_network(variant: str) -> None:
    """A real listener on 127.0.0.1 is named by the rule: nobody ever connects to it.

    The rule becomes an Unknown-Violation (a compile error) for valid and invalid events alike,
    whatever else the rule contains.
    """
    with RefServer() as server:
        rule = REMOTE_REF_RULES[variant](server.base)
        outcomes: list[Any] = []
        for amount in (1, "x"):
            event = track(total=amount, payload="{}", qty=1)
            try:
                decision = enforce_rule(rule, event)
            except Exception as exc:  # reported below, after the network check
                outcomes.append(repr(exc))
            else:
                outcomes.append([v["type"] for v in decision.violations])
        time.sleep(0.1)  # let a connection attempt, if any, be accepted
        assert server.connections == 0, f"the gateway fetched a remote $ref: {outcomes}"
    assert outcomes == [["Unknown-Violation"], ["Unknown-Violation"]]


# ---------------------------------------------------------------------------------------------
# nesting: properties, arrays, identify traits, context.traits

LINE_ITEM = obj(
    {"sku": {"type": "string"}, "price": {"type": "number", "minimum": 0}},
    required=["sku"],
    additionalProperties=False,
)


def test_nested_arrays_report_instance_paths() -> None:
    event = track(
        cart={"id": 5, "items": [{"sku": "a", "price": 1}, {"price": "free", "gift": True}]}
    )
    rule = props_rule(
        obj(
            {
                "cart": obj(
                    {"id": {"type": "string"}, "items": {"type": "array", "items": LINE_ITEM}}
                )
            }
        )
    )
    decision = enforce_rule(rule, event)
    items_sp = f"{PROPS_SP}/properties/cart/properties/items/items"
    assert_forwarded(
        decision,
        event,
        [
            violation(
                "Datatype-Mismatch",
                "must be string",
                "id",
                "/properties/cart/id",
                f"{PROPS_SP}/properties/cart/properties/id/type",
            ),
            violation(
                "Datatype-Mismatch",
                "must be number",
                "price",
                "/properties/cart/items/1/price",
                f"{items_sp}/properties/price/type",
            ),
            violation(
                "Required-Missing",
                "must have required property 'sku'",
                "sku",
                "/properties/cart/items/1",
                f"{items_sp}/required",
            ),
            violation(
                "Additional-Properties",
                "must NOT have additional properties 'gift'",
                "gift",
                "/properties/cart/items/1",
                f"{items_sp}/additionalProperties",
            ),
        ],
    )


def test_array_of_items_instance_path_like_properties_items_0_price() -> None:
    event = track(items=[{"sku": "a", "price": -3}])
    rule = props_rule(obj({"items": {"type": "array", "items": LINE_ITEM}}))
    decision = enforce_rule(rule, event)
    assert_forwarded(
        decision,
        event,
        [
            violation(
                ADV,
                "must be >= 0",
                "price",
                "/properties/items/0/price",
                f"{PROPS_SP}/properties/items/items/properties/price/minimum",
            )
        ],
    )


IDENTIFY_RULE = {
    "name": "",
    "eventType": "identify",
    "identitySection": "traits",
    "rules": {
        "type": "object",
        "properties": {
            "traits": obj(
                {"email": {"type": "string", "format": "email"}, "age": {"type": "integer"}},
                required=["email"],
            )
        },
        "required": ["traits"],
    },
}
PAGE_RULE = {
    "name": "",
    "eventType": "page",
    "identitySection": "context.traits",
    "rules": {
        "type": "object",
        "properties": {
            "context": obj(
                {"traits": obj({"plan": {"enum": ["free", "pro"]}}, required=["plan"])},
                required=["traits"],
            )
        },
        "required": ["context"],
    },
}
GROUP_RULE = {
    "name": "",
    "eventType": "group",
    "identitySection": "traits",
    "rules": {"type": "object", "properties": {"traits": obj({"seats": {"type": "integer"}})}},
}


@pytest.mark.parametrize(
    ("event", "label", "expected"),
    [
        pytest.param(
            {"type": "identify", "userId": "u", "traits": {"email": "ada@example.com", "age": 3}},
            "identify",
            [],
            id="identify-traits-valid",
        ),
        pytest.param(
            {"type": "identify", "userId": "u", "traits": {"email": "nope", "age": "3"}},
            "identify",
            [
                violation(
                    ADV,
                    'must match format "email"',
                    "email",
                    "/traits/email",
                    "#/properties/traits/properties/email/format",
                ),
                violation(
                    "Datatype-Mismatch",
                    "must be integer",
                    "age",
                    "/traits/age",
                    "#/properties/traits/properties/age/type",
                ),
            ],
            id="identify-traits-invalid",
        ),
        pytest.param(
            {"type": "identify", "userId": "u"},
            "identify",
            [
                violation(
                    "Required-Missing",
                    "must have required property 'traits'",
                    "traits",
                    "",
                    "#/required",
                )
            ],
            id="identify-traits-missing",
        ),
        pytest.param(
            {"type": "page", "userId": "u", "name": "Home", "context": {"traits": {"plan": "pro"}}},
            "page",
            [],
            id="page-context-traits-valid",
        ),
        pytest.param(
            {"type": "page", "userId": "u", "context": {"traits": {"plan": "gold"}}},
            "page",
            [
                violation(
                    ADV,
                    "must be equal to one of the allowed values",
                    "plan",
                    "/context/traits/plan",
                    "#/properties/context/properties/traits/properties/plan/enum",
                )
            ],
            id="page-context-traits-invalid",
        ),
        pytest.param(
            {"type": "page", "userId": "u", "context": {"ip": "10.0.0.1"}},
            "page",
            [
                violation(
                    "Required-Missing",
                    "must have required property 'traits'",
                    "traits",
                    "/context",
                    "#/properties/context/required",
                )
            ],
            id="page-context-traits-missing",
        ),
        pytest.param(
            {"type": "group", "userId": "u", "groupId": "g", "traits": {"seats": "many"}},
            "group",
            [
                violation(
                    "Datatype-Mismatch",
                    "must be integer",
                    "seats",
                    "/traits/seats",
                    "#/properties/traits/properties/seats/type",
                )
            ],
            id="group-traits-invalid",
        ),
        pytest.param(
            {"type": "screen", "userId": "u", "name": "Settings", "properties": {"x": 1}},
            "screen",
            [],
            id="screen-without-rule",
        ),
    ],
)
def test_non_track_rules_match_on_type(event: Json, label: str, expected: list[Json]) -> None:
    before = copy.deepcopy(event)
    decision = enforce_one([IDENTIFY_RULE, PAGE_RULE, GROUP_RULE], event)
    assert decision is not None
    assert decision.event_label == label
    assert_forwarded(decision, event, expected)
    # Apart from the stamps, nothing changed.
    stamped = event.pop("context")
    for key in ("trackingPlanId", "trackingPlanVersion", "violationErrors"):
        stamped.pop(key)
    if "context" in before:
        assert stamped == before.pop("context")
    else:
        assert stamped == {}
    assert event == before


# ---------------------------------------------------------------------------------------------
# policy: allowUnplannedEvents, unplannedProperties, anyOtherViolation, sections, value forms

PLANNED = track_rule(
    EVENT_NAME,
    props_rule(
        obj(
            {
                "amount": {"type": "number"},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "cart": obj({"id": {"type": "string"}}, additionalProperties=False),
            },
            required=["amount"],
            additionalProperties=False,
        )
    ),
)
UNPLANNED_V = {
    "type": "Unplanned-Event",
    "message": "no schema for event: Cart Viewed",
    "property": "",
    "meta": {},
}
AMOUNT_TYPE_V = violation(
    "Datatype-Mismatch",
    "must be number",
    "amount",
    "/properties/amount",
    f"{PROPS_SP}/properties/amount/type",
)
CURRENCY_V = violation(
    ADV,
    'must match pattern "^[A-Z]{3}$"',
    "currency",
    "/properties/currency",
    f"{PROPS_SP}/properties/currency/pattern",
)


def extra_v(key: str, at: str = "/properties", sp: str = PROPS_SP) -> Json:
    return violation(
        "Additional-Properties",
        f"must NOT have additional properties '{key}'",
        key,
        at,
        f"{sp}/additionalProperties",
    )


VALID: dict[str, Any] = {"amount": 10, "currency": "EUR"}
WITH_EXTRA = {"amount": 10, "coupon": "SPRING"}
WITH_OTHER = {"amount": "10"}
WITH_BOTH = {"amount": "10", "currency": "eur", "coupon": "SPRING"}
UNPLANNED = "Cart Viewed"

POLICY_CASES = [
    # allowUnplannedEvents
    pytest.param({}, UNPLANNED, {}, None, [UNPLANNED_V], id="unplanned-no-config-forwards"),
    pytest.param(
        {"global": {"allowUnplannedEvents": True}},
        UNPLANNED,
        {},
        None,
        [UNPLANNED_V],
        id="unplanned-allowed-true",
    ),
    pytest.param(
        {"global": {"allowUnplannedEvents": False}},
        UNPLANNED,
        {},
        "unplanned-event",
        [UNPLANNED_V],
        id="unplanned-allowed-false",
    ),
    pytest.param(
        {"global": {"allowUnplannedEvents": "false"}},
        UNPLANNED,
        {},
        "unplanned-event",
        [UNPLANNED_V],
        id="unplanned-allowed-string-false",
    ),
    pytest.param(
        {"global": {"allowUnplannedEvents": "FALSE"}},
        UNPLANNED,
        {},
        "unplanned-event",
        [UNPLANNED_V],
        id="unplanned-allowed-string-FALSE",
    ),
    pytest.param(
        {"global": {"allowUnplannedEvents": "True"}},
        UNPLANNED,
        {},
        None,
        [UNPLANNED_V],
        id="unplanned-allowed-string-True",
    ),
    pytest.param(
        {"global": {"allowUnplannedEvents": False}, "track": {"allowUnplannedEvents": "true"}},
        UNPLANNED,
        {},
        None,
        [UNPLANNED_V],
        id="unplanned-track-section-overrides-global",
    ),
    pytest.param(
        {"global": {"allowUnplannedEvents": True}, "track": {"allowUnplannedEvents": False}},
        UNPLANNED,
        {},
        "unplanned-event",
        [UNPLANNED_V],
        id="unplanned-track-section-drops-over-global",
    ),
    pytest.param(
        {"global": {"allowUnplannedEvents": True}, "identify": {"allowUnplannedEvents": False}},
        UNPLANNED,
        {},
        None,
        [UNPLANNED_V],
        id="unplanned-other-type-section-ignored",
    ),
    pytest.param(
        {"global": {"allowUnplannedEvents": False}},
        EVENT_NAME.lower(),
        VALID,
        "unplanned-event",
        [{**UNPLANNED_V, "message": "no schema for event: order completed"}],
        id="unplanned-name-match-is-case-sensitive",
    ),
    pytest.param(
        {"global": {"allowUnplannedEvents": False}},
        EVENT_NAME,
        VALID,
        None,
        [],
        id="planned-valid-never-dropped",
    ),
    # unplannedProperties
    pytest.param({}, EVENT_NAME, WITH_EXTRA, None, [extra_v("coupon")], id="extra-no-config"),
    pytest.param(
        {"global": {"unplannedProperties": "forward"}},
        EVENT_NAME,
        WITH_EXTRA,
        None,
        [extra_v("coupon")],
        id="extra-forward",
    ),
    pytest.param(
        {"global": {"unplannedProperties": "drop"}},
        EVENT_NAME,
        WITH_EXTRA,
        "unplanned-properties",
        [extra_v("coupon")],
        id="extra-drop",
    ),
    pytest.param(
        {"global": {"unplannedProperties": "DROP"}},
        EVENT_NAME,
        WITH_EXTRA,
        "unplanned-properties",
        [extra_v("coupon")],
        id="extra-drop-uppercase",
    ),
    pytest.param(
        {"global": {"unplannedProperties": "drop"}},
        EVENT_NAME,
        WITH_OTHER,
        None,
        [AMOUNT_TYPE_V],
        id="extra-drop-ignores-other-violations",
    ),
    pytest.param(
        {"global": {"unplannedProperties": "drop"}, "track": {"unplannedProperties": "forward"}},
        EVENT_NAME,
        WITH_EXTRA,
        None,
        [extra_v("coupon")],
        id="extra-track-section-overrides-global",
    ),
    pytest.param(
        {"global": {"unplannedProperties": "delete-it"}},
        EVENT_NAME,
        WITH_EXTRA,
        None,
        [extra_v("coupon")],
        id="extra-unrecognised-value-never-drops",
    ),
    # anyOtherViolation
    pytest.param({}, EVENT_NAME, WITH_OTHER, None, [AMOUNT_TYPE_V], id="other-no-config"),
    pytest.param(
        {"global": {"anyOtherViolation": "forward"}},
        EVENT_NAME,
        WITH_OTHER,
        None,
        [AMOUNT_TYPE_V],
        id="other-forward",
    ),
    pytest.param(
        {"global": {"anyOtherViolation": "drop"}},
        EVENT_NAME,
        WITH_OTHER,
        "violation",
        [AMOUNT_TYPE_V],
        id="other-drop",
    ),
    pytest.param(
        {"global": {"anyOtherViolation": "Drop"}},
        EVENT_NAME,
        WITH_OTHER,
        "violation",
        [AMOUNT_TYPE_V],
        id="other-drop-mixed-case",
    ),
    pytest.param(
        {"global": {"anyOtherViolation": "drop"}},
        EVENT_NAME,
        WITH_EXTRA,
        None,
        [extra_v("coupon")],
        id="other-drop-ignores-additional-properties",
    ),
    pytest.param(
        {"global": {"anyOtherViolation": "drop"}},
        UNPLANNED,
        {},
        None,
        [UNPLANNED_V],
        id="other-drop-ignores-unplanned-events",
    ),
    pytest.param(
        {"global": {"anyOtherViolation": "forward"}, "track": {"anyOtherViolation": "drop"}},
        EVENT_NAME,
        WITH_OTHER,
        "violation",
        [AMOUNT_TYPE_V],
        id="other-track-section-overrides-global",
    ),
    pytest.param(
        {"global": {"anyOtherViolation": "drop"}},
        EVENT_NAME,
        VALID,
        None,
        [],
        id="other-drop-valid-event-forwards",
    ),
    # several drop rules at once: dropped once, every violation listed
    pytest.param(
        {"global": {"unplannedProperties": "drop", "anyOtherViolation": "drop"}},
        EVENT_NAME,
        WITH_BOTH,
        "unplanned-properties",
        [AMOUNT_TYPE_V, CURRENCY_V, extra_v("coupon")],
        id="several-drop-rules",
    ),
    pytest.param(
        {"global": {"unplannedProperties": "drop"}, "track": {"anyOtherViolation": "drop"}},
        EVENT_NAME,
        WITH_BOTH,
        "unplanned-properties",
        [AMOUNT_TYPE_V, CURRENCY_V, extra_v("coupon")],
        id="several-drop-rules-across-sections",
    ),
    pytest.param(
        {"global": {"anyOtherViolation": "drop"}},
        EVENT_NAME,
        WITH_BOTH,
        "violation",
        [AMOUNT_TYPE_V, CURRENCY_V, extra_v("coupon")],
        id="one-drop-rule-lists-all-violations",
    ),
    pytest.param(
        {"global": {"anyOtherViolation": "forward", "unplannedProperties": "forward"}},
        EVENT_NAME,
        WITH_BOTH,
        None,
        [AMOUNT_TYPE_V, CURRENCY_V, extra_v("coupon")],
        id="every-violation-reported-when-forwarded",
    ),
]


@pytest.mark.parametrize(("config", "name", "props", "reason", "expected"), POLICY_CASES)
def test_policy(
    config: Json, name: str, props: Json, reason: str | None, expected: list[Json]
) -> None:
    event = track(name, **props)
    received = copy.deepcopy(event)
    decision = enforce_one([PLANNED], event, config)
    assert decision is not None
    assert decision.event_label == ("(unplanned)" if name != EVENT_NAME else EVENT_NAME)
    if reason is None:
        assert_forwarded(decision, event, expected)
    else:
        assert decision.reason == reason
        assert canonical(decision.violations) == canonical(expected)
        assert event == received  # dropped events are not stamped


# ---------------------------------------------------------------------------------------------
# omit

OMIT_CASES = [
    pytest.param(
        {"global": {"unplannedProperties": "omit"}},
        {"amount": 10, "coupon": "SPRING", "note": "hi"},
        {"amount": 10},
        ["properties.coupon", "properties.note"],
        [],
        id="omit-top-level",
    ),
    pytest.param(
        {"global": {"unplannedProperties": "OMIT"}},
        {"amount": 10, "cart": {"id": "c1", "secret": "s"}, "coupon": 1},
        {"amount": 10, "cart": {"id": "c1"}},
        ["properties.cart.secret", "properties.coupon"],
        [],
        id="omit-nested",
    ),
    pytest.param(
        {"track": {"unplannedProperties": "omit"}, "global": {"unplannedProperties": "drop"}},
        {"amount": "10", "coupon": "SPRING"},
        {"amount": "10"},
        ["properties.coupon"],
        [AMOUNT_TYPE_V],
        id="omit-keeps-other-violations",
    ),
]


@pytest.mark.parametrize(("config", "props", "kept", "omitted", "remaining"), OMIT_CASES)
def test_omit_removes_unplanned_keys_and_forwards(
    config: Json, props: Json, kept: Json, omitted: list[str], remaining: list[Json]
) -> None:
    event = track(**props)
    decision = enforce_one([PLANNED], event, config)
    assert decision is not None
    assert decision.reason is None
    assert event["properties"] == kept
    context = event["context"]
    assert sorted(context["omittedProperties"]) == sorted(omitted)
    assert context["trackingPlanId"] == PLAN_ID
    assert context["trackingPlanVersion"] == PLAN_VERSION
    assert canonical(context["violationErrors"]) == canonical(remaining)
    # The omitted keys are still violations of the plan: counted in metrics and headers.
    others = [v for v in decision.violations if v["type"] != "Additional-Properties"]
    assert canonical(others) == canonical(remaining)
    unplanned = [v for v in decision.violations if v["type"] == "Additional-Properties"]
    assert sorted(
        f"{v['meta']['instancePath'][1:].replace('/', '.')}.{v['property']}" for v in unplanned
    ) == sorted(omitted)


def test_omit_inside_array_items() -> None:
    event = track(items=[{"sku": "a", "gift": True}, {"sku": "b"}, {"sku": "c", "x": 1, "y": 2}])
    rule = props_rule(obj({"items": {"type": "array", "items": LINE_ITEM}}))
    decision = enforce_one(
        [track_rule(EVENT_NAME, rule)], event, {"global": {"unplannedProperties": "omit"}}
    )
    assert decision is not None
    assert decision.reason is None
    assert [v["property"] for v in decision.violations] == ["gift", "x", "y"]
    assert {v["type"] for v in decision.violations} == {"Additional-Properties"}
    assert event["properties"]["items"] == [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]
    assert sorted(event["context"]["omittedProperties"]) == [
        "properties.items.0.gift",
        "properties.items.2.x",
        "properties.items.2.y",
    ]
    assert event["context"]["violationErrors"] == []


def test_omit_does_not_apply_when_another_rule_drops() -> None:
    event = track(amount="10", coupon="SPRING")
    received = copy.deepcopy(event)
    config = {"global": {"unplannedProperties": "omit", "anyOtherViolation": "drop"}}
    decision = enforce_one([PLANNED], event, config)
    assert decision is not None
    assert decision.reason == "violation"
    assert canonical(decision.violations) == canonical([AMOUNT_TYPE_V, extra_v("coupon")])
    assert event == received  # the quarantined event is the event as received


# ---------------------------------------------------------------------------------------------
# propagateValidationErrors


@pytest.mark.parametrize(
    ("setting", "props", "expected"),
    [
        pytest.param(False, WITH_OTHER, None, id="bool-false-invalid"),
        pytest.param(False, VALID, None, id="bool-false-valid"),
        pytest.param("false", WITH_OTHER, None, id="string-false"),
        pytest.param("FALSE", WITH_OTHER, None, id="string-FALSE"),
        pytest.param(True, WITH_OTHER, [AMOUNT_TYPE_V], id="bool-true"),
        pytest.param("True", WITH_OTHER, [AMOUNT_TYPE_V], id="string-True"),
        pytest.param("missing", WITH_OTHER, [AMOUNT_TYPE_V], id="missing-invalid"),
        pytest.param("missing", VALID, [], id="missing-valid-empty-list"),
        pytest.param("maybe", WITH_OTHER, [AMOUNT_TYPE_V], id="unrecognised-keeps-default"),
    ],
)
def test_propagate_validation_errors(
    setting: Any, props: Json, expected: list[Json] | None
) -> None:
    config = {} if setting == "missing" else {"global": {"propagateValidationErrors": setting}}
    event = track(**props)
    decision = enforce_one([PLANNED], event, config)
    assert decision is not None
    assert decision.reason is None
    context = event["context"]
    assert context["trackingPlanId"] == PLAN_ID
    assert context["trackingPlanVersion"] == PLAN_VERSION
    if expected is None:
        assert "violationErrors" not in context
    else:
        assert canonical(context["violationErrors"]) == canonical(expected)


def test_propagate_section_overrides_global() -> None:
    config = {
        "global": {"propagateValidationErrors": "false"},
        "track": {"propagateValidationErrors": True},
    }
    event = track(**WITH_OTHER)
    decision = enforce_one([PLANNED], event, config)
    assert decision is not None
    assert event["context"]["violationErrors"] == [AMOUNT_TYPE_V]
    identify = {"type": "identify", "userId": "u", "traits": {}}
    decision = enforce_one([PLANNED], identify, config)
    assert decision is not None
    assert "violationErrors" not in identify["context"]


# ---------------------------------------------------------------------------------------------
# matching: alias, no plan, non-track without a rule, existing context kept


def test_alias_is_never_validated_but_stamped() -> None:
    rule = {"name": "", "eventType": "identify", "rules": {"required": ["never-there"]}}
    event: Json = {"type": "alias", "userId": "u", "previousId": "p"}
    config = {"global": {"anyOtherViolation": "drop", "allowUnplannedEvents": False}}
    decision = enforce_one([rule, PLANNED], event, config)
    assert decision is not None
    assert decision.reason is None
    assert decision.violations == []
    assert decision.event_label == "alias"
    assert event["context"] == {
        "trackingPlanId": PLAN_ID,
        "trackingPlanVersion": PLAN_VERSION,
        "violationErrors": [],
    }


@pytest.mark.parametrize("event_type", ["identify", "page", "screen", "group"])
def test_non_track_event_without_rule_is_forwarded_clean(event_type: str) -> None:
    event = {"type": event_type, "userId": "u", "name": "Anything", "traits": {"x": 1}}
    config = {"global": {"allowUnplannedEvents": False, "anyOtherViolation": "drop"}}
    decision = enforce_one([PLANNED], event, config)
    assert decision is not None
    assert decision.reason is None
    assert decision.violations == []
    assert decision.event_label == event_type
    assert event["context"] == {
        "trackingPlanId": PLAN_ID,
        "trackingPlanVersion": PLAN_VERSION,
        "violationErrors": [],
    }


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(track(UNPLANNED, a=1), id="track"),
        pytest.param({"type": "identify", "userId": "u", "traits": {}}, id="identify"),
        pytest.param({"type": "alias", "userId": "u", "previousId": "p"}, id="alias"),
    ],
)
def test_source_without_plan_passes_untouched(event: Json) -> None:
    received = copy.deepcopy(event)
    config = {"global": {"allowUnplannedEvents": False}}
    assert enforce_one([PLANNED], event, config, source_id=BARE_SOURCE) is None
    assert event == received


def test_existing_context_is_kept_beside_the_stamps() -> None:
    event = track(**VALID)
    event["context"] = {"ip": "10.0.0.1", "library": {"name": "analytics-python"}}
    decision = enforce_one([PLANNED], event)
    assert decision is not None
    assert event["context"] == {
        "ip": "10.0.0.1",
        "library": {"name": "analytics-python"},
        "trackingPlanId": PLAN_ID,
        "trackingPlanVersion": PLAN_VERSION,
        "violationErrors": [],
    }


# ---------------------------------------------------------------------------------------------
# a rule that fails to compile affects only its own event

BROKEN = track_rule("Broken Event", props_rule(obj({"s": {"type": "strin"}})))


def test_compile_error_affects_only_its_own_event() -> None:
    snapshot = make_snapshot([BROKEN, PLANNED], {"global": {"anyOtherViolation": "drop"}})
    source = source_of(snapshot)
    enforcer = Enforcer()

    broken = track("Broken Event", s="fine")
    decision = enforcer.enforce(broken, source, snapshot)
    assert decision is not None
    assert decision.reason == "violation"
    assert decision.event_label == "Broken Event"
    [only] = decision.violations
    assert only["type"] == "Unknown-Violation"
    assert only["message"]

    good = track(**VALID)
    decision = enforcer.enforce(good, source, snapshot)
    assert decision is not None
    assert decision.reason is None
    assert decision.violations == []
    assert good["context"]["violationErrors"] == []

    bad = track(**WITH_OTHER)
    decision = enforcer.enforce(bad, source, snapshot)
    assert decision is not None
    assert decision.reason == "violation"
    assert decision.violations == [AMOUNT_TYPE_V]


def test_compile_error_forwarded_with_the_error_when_not_dropping() -> None:
    event = track("Broken Event", s="fine")
    decision = enforce_one([BROKEN, PLANNED], event)
    assert decision is not None
    assert decision.reason is None
    [only] = decision.violations
    assert only["type"] == "Unknown-Violation"
    assert "strin" in only["message"]
    assert event["context"]["violationErrors"] == [only]
    assert event["context"]["trackingPlanId"] == PLAN_ID


def test_every_violation_is_reported_not_just_the_first() -> None:
    rule = props_rule(
        obj(
            {
                "a": {"type": "string"},
                "b": {"type": "integer", "minimum": 1},
                "c": {"type": "string", "minLength": 2, "pattern": "^x"},
                "d": {"type": "array", "maxItems": 1, "uniqueItems": True},
                "e": {"type": "string"},
                "f": {"type": "string"},
            },
            required=["a", "e", "f"],
            additionalProperties=False,
        )
    )
    event = track(b=0, c="y", d=[1, 1], g=1, h=2)
    decision = enforce_rule(rule, event)
    f = f"{PROPS_SP}/properties"
    assert_forwarded(
        decision,
        event,
        [
            violation(
                "Required-Missing",
                "must have required property 'a'",
                "a",
                "/properties",
                f"{PROPS_SP}/required",
            ),
            violation(
                "Required-Missing",
                "must have required property 'e'",
                "e",
                "/properties",
                f"{PROPS_SP}/required",
            ),
            violation(
                "Required-Missing",
                "must have required property 'f'",
                "f",
                "/properties",
                f"{PROPS_SP}/required",
            ),
            violation(ADV, "must be >= 1", "b", "/properties/b", f"{f}/b/minimum"),
            violation(
                ADV,
                "must NOT have fewer than 2 characters",
                "c",
                "/properties/c",
                f"{f}/c/minLength",
            ),
            violation(ADV, 'must match pattern "^x"', "c", "/properties/c", f"{f}/c/pattern"),
            violation(
                ADV, "must NOT have more than 1 items", "d", "/properties/d", f"{f}/d/maxItems"
            ),
            violation(
                ADV, "must NOT have duplicate items", "d", "/properties/d", f"{f}/d/uniqueItems"
            ),
            extra_v("g"),
            extra_v("h"),
        ],
    )


def test_compiled_rules_are_reused_and_stay_correct_across_events() -> None:
    """The same Enforcer validates a stream of events; each gets its own, fresh result."""
    snapshot = make_snapshot([PLANNED])
    source = source_of(snapshot)
    enforcer = Enforcer()
    for i in range(20):
        props = WITH_OTHER if i % 2 else VALID
        event = track(**props)
        decision = enforcer.enforce(event, source, snapshot)
        assert decision is not None
        assert decision.violations == ([AMOUNT_TYPE_V] if i % 2 else [])
        assert event["context"]["violationErrors"] == decision.violations


def test_valid_schema_requiring_an_undeclared_key_reports_real_violations() -> None:
    """A valid draft-07 rule (passes the meta-schema) is validated, never a compile error.

    ``required`` naming a key that ``additionalProperties: false`` forbids is legal JSON Schema
    (ajv compiles it); plan authors write it by mistake. Its events must get the real violations.
    """
    rule = props_rule(
        obj({"sku": {"type": "string"}}, required=["sku", "qty"], additionalProperties=False)
    )
    event = track(sku=1, coupon="X")
    decision = enforce_rule(rule, event, {"global": {"unplannedProperties": "drop"}})
    assert decision.reason == "unplanned-properties"
    assert canonical(decision.violations) == canonical(
        [
            violation(
                "Datatype-Mismatch",
                "must be string",
                "sku",
                "/properties/sku",
                f"{PROPS_SP}/properties/sku/type",
            ),
            violation(
                "Required-Missing",
                "must have required property 'qty'",
                "qty",
                "/properties",
                f"{PROPS_SP}/required",
            ),
            extra_v("coupon"),
        ]
    )
