"""No pattern or format check costs more than a bounded amount, whatever the input.

Patterns and formats come from the plan, inputs from anyone holding a public write key. The
classic catastrophic patterns and pathological format inputs below each cost minutes on a
backtracking regex engine; here each is judged (valid, or a violation of that property) in about
a millisecond. A pattern the bounded engine gives up on is a violation of that property, never a
hang and never a silent pass. The end-to-end case checks the same through the real gateway and
broker: the event loop keeps answering, and the event lands in Kafka with its violation.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.enforce.compile import CompiledRule
from tests.conftest import (
    SOURCE_ID,
    WRITE_KEY,
    GatewayFactory,
    basic_auth,
    consume_all,
    ingest_url,
    write_snapshot,
)

Json = dict[str, Any]
INPUT_BYTES = 32 * 1024


def _rule(prop: Json) -> Json:
    return {
        "type": "object",
        "properties": {"properties": {"type": "object", "properties": {"v": prop}}},
    }


# (pattern, an input that makes a backtracking engine explode, whether it matches)
CATASTROPHIC = [
    (r"^(a+)+$", "a" * INPUT_BYTES + "!", False),
    (r"^([a-z0-9]+-?)+$", "a" * INPUT_BYTES + "!", False),
    (r"^([a-z0-9]+-?)+$", "a-" * (INPUT_BYTES // 2) + "a", True),
    (r"(x+x+)+y", "x" * INPUT_BYTES, False),
    (r"^([a-zA-Z0-9_\-\.]+)@([a-zA-Z0-9_\-\.]+)\.([a-zA-Z]{2,5})$", "a" * INPUT_BYTES, False),
    (r"^(\w+\s?)*$", "word " * (INPUT_BYTES // 5) + "!", False),
    (r"^(a|a?)+$", "a" * INPUT_BYTES + "b", False),
]


@pytest.mark.parametrize(("pattern", "value", "matches"), CATASTROPHIC)
def test_catastrophic_patterns_are_judged_exactly(pattern: str, value: str, matches: bool) -> None:
    # None of these needs backtracking: the linear-time engine gives the exact verdict.
    rule = CompiledRule(_rule({"type": "string", "pattern": pattern}))
    event = {"properties": {"v": value}}
    assert rule.error is None
    assert rule.is_valid(event) is matches
    if not matches:
        [violation] = rule.violations(event)
        assert violation["type"] == "Advance-Rules-Violation"
        assert violation["message"] == f'must match pattern "{pattern}"'
        assert violation["property"] == "v"


# Backreferences and look-around need the backtracking engine, which gives up after a bound.
FANCY = [
    r"^(?!x)(a+)+\1$",
    r"^(a+)+(?=b)",
    r"^(?=(a+)+$)\1b$",
]


@pytest.mark.parametrize("pattern", FANCY)
def test_a_pattern_too_costly_to_evaluate_is_a_violation(pattern: str) -> None:
    rule = CompiledRule(_rule({"type": "string", "pattern": pattern}))
    event = {"properties": {"v": "a" * INPUT_BYTES + "!"}}
    assert rule.error is None
    assert not rule.is_valid(event)
    [violation] = rule.violations(event)
    assert violation["type"] == "Advance-Rules-Violation"
    assert violation["message"].startswith(f'must match pattern "{pattern}"')
    assert violation["property"] == "v"
    assert violation["meta"] == {
        "instancePath": "/properties/v",
        "schemaPath": "#/properties/properties/properties/v/pattern",
    }
    # The same pattern on an ordinary value is evaluated exactly.
    assert not rule.is_valid({"properties": {"v": "x"}})


def test_pattern_properties_are_bounded_too() -> None:
    rule = CompiledRule(
        _rule(
            {
                "type": "object",
                "patternProperties": {r"^(?!x)(a+)+\1$": {"type": "string"}},
                "additionalProperties": False,
            }
        )
    )
    event = {"properties": {"v": {"a" * INPUT_BYTES + "!": 1}}}
    assert not rule.is_valid(event)
    violations = rule.violations(event)
    assert violations
    assert {v["type"] for v in violations} <= {"Advance-Rules-Violation", "Additional-Properties"}


# (format, a pathological input of about 32 KB, and a valid one)
FORMAT_INPUTS = [
    ("email", "a@" + "." * INPUT_BYTES + "@", "ada@example.com"),
    ("email", "a" * INPUT_BYTES + "@" + "b." * 100, "ada@example.com"),
    ("hostname", "a." * (INPUT_BYTES // 2), "api.example.com"),
    ("uri", "http://" + "a" * INPUT_BYTES + "/%", "https://example.com/a?b=c"),
    ("uri-reference", "/" + "%" * INPUT_BYTES, "/a/b?c"),
    ("date-time", "2024-01-01T00:00:00" + "0" * INPUT_BYTES + "Z", "2024-05-01T12:30:00Z"),
    ("regex", "(" * INPUT_BYTES, "^[a-z]+$"),
    ("regex", "(a{1000}){1000}" * (INPUT_BYTES // 15) + "(", "^(a|b)$"),
    ("ipv6", ":" * INPUT_BYTES, "2001:db8::1"),
    ("json-pointer", "/~" * (INPUT_BYTES // 2), "/a/b"),
    ("uuid", "0" * INPUT_BYTES, "123e4567-e89b-12d3-a456-426614174000"),
]


@pytest.mark.parametrize(("fmt", "bad", "good"), FORMAT_INPUTS)
def test_formats_reject_pathological_inputs(fmt: str, bad: str, good: str) -> None:
    rule = CompiledRule(_rule({"type": "string", "format": fmt}))
    assert rule.error is None
    assert rule.is_valid({"properties": {"v": good}})
    event = {"properties": {"v": bad}}
    assert not rule.is_valid(event)
    [violation] = rule.violations(event)
    assert violation["message"] == f'must match format "{fmt}"'


def _snapshot() -> Json:
    identify = {
        "type": "object",
        "properties": {
            "traits": {
                "type": "object",
                "properties": {
                    "email": {"type": "string", "format": "email"},
                    "slug": {"type": "string", "pattern": "^([a-z0-9]+-?)+$"},
                    "ref": {"type": "string", "pattern": r"^(?!x)(a+)+\1$"},
                },
            }
        },
    }
    return {
        "revision": "bounds-1",
        "sources": [
            {
                "id": SOURCE_ID,
                "name": "Bounds",
                "enabled": True,
                "writeKeys": [WRITE_KEY],
                "trackingPlan": {"id": "tp_bounds", "version": 1, "config": {}},
            }
        ],
        "trackingPlans": [
            {
                "id": "tp_bounds",
                "name": "Bounds",
                "version": 1,
                "events": [
                    {
                        "name": "",
                        "eventType": "identify",
                        "identitySection": "traits",
                        "rules": identify,
                    }
                ],
            }
        ],
    }


async def test_hostile_values_neither_stall_the_gateway_nor_pass(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Issue cases: an e-mail format stalled the loop ~5 s per 20 KB value; a slug pattern took
    minutes. Now each event is answered 200 with its violations, while /health/live answers."""
    write_snapshot(tmp_path / "snapshot.json", _snapshot())
    gw = await make_gateway()
    hostile = [
        {"email": "a@" + "." * 20000 + "@"},
        {"slug": "a" * 30000 + "!"},
        {"ref": "a" * 30000 + "!"},
    ]
    async with aiohttp.ClientSession() as http:

        async def post(traits: Json) -> int:
            body = {"userId": "u-1", "traits": traits}
            async with http.post(
                ingest_url(gw, "/v1/identify"), json=body, headers=basic_auth()
            ) as resp:
                return resp.status

        async def live() -> int:
            async with http.get(ingest_url(gw, "/health/live")) as resp:
                return resp.status

        statuses = await asyncio.gather(*(post(t) for t in hostile), live(), live())
    assert statuses == [200, 200, 200, 200, 200]
    records = await consume_all(gw.settings.kafka.bootstrap_servers, gw.settings.kafka.events_topic)
    assert len(records) == 3
    found = {}
    for record in records:
        event = orjson.loads(record.value)
        [violation] = event["context"]["violationErrors"]
        found[violation["property"]] = violation
    assert found["email"]["message"] == 'must match format "email"'
    assert found["slug"]["message"] == 'must match pattern "^([a-z0-9]+-?)+$"'
    assert found["ref"]["message"].startswith('must match pattern "^(?!x)(a+)+\\1$"')
    assert {v["type"] for v in found.values()} == {"Advance-Rules-Violation"}


async def test_a_request_lists_a_bounded_number_of_violations(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """2,500 events of 700 wrong array items each (3.6 MB): listing every violation took the
    event loop about a minute. Violations are listed until the request's budget is spent; the
    remaining invalid events are quarantined as invalid-event, unlisted, and nothing is lost."""
    doc = _snapshot()
    doc["trackingPlans"][0]["events"].append(
        {
            "name": "Tagged",
            "eventType": "track",
            "identitySection": "properties",
            "rules": _rule({"type": "array", "items": {"type": "string"}}),
        }
    )
    write_snapshot(tmp_path / "snapshot.json", doc)
    gw = await make_gateway(ingest={"max_request_violations": 10_000})
    events = [
        {"type": "track", "event": "Tagged", "userId": f"u{i}", "properties": {"v": [1] * 700}}
        for i in range(2500)
    ]
    async with aiohttp.ClientSession() as http:
        body = io.BytesIO(orjson.dumps({"batch": events}))
        async with http.post(ingest_url(gw, "/v1/batch"), data=body, headers=basic_auth()) as resp:
            assert resp.status == 200
        async with http.get(ingest_url(gw, "/health/live")) as resp:
            assert resp.status == 200
    kafka = gw.settings.kafka
    forwarded = await consume_all(kafka.bootstrap_servers, kafka.events_topic)
    quarantined = await consume_all(kafka.bootstrap_servers, kafka.quarantine_topic)
    assert len(forwarded) + len(quarantined) == 2500
    # Listed in full while the budget lasted: 15 events x 700 violations pass 10,000.
    assert len(forwarded) == 15
    for record in forwarded:
        context = orjson.loads(record.value)["context"]
        assert context["violationErrorsTotal"] == 700
        assert context["violationErrors"][0]["message"] == "must be string"
    for record in quarantined:
        value = orjson.loads(record.value)
        assert value["reason"] == "invalid-event"
        [violation] = value["violations"]
        assert "were not collected" in violation["message"]
        assert value["event"]["properties"]["v"] == [1] * 700  # kept whole, replayable
