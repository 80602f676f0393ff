"""A rule's events are judged alike whichever of the engine's calls goes first.

``CompiledRule.check`` asks the engine for the verdict first, or, for a rule whose events have
lately been invalid often, collects the violations at once. Both orders must give the same
answer for every event, and the rule must move between them as its traffic changes.
"""

from __future__ import annotations

from typing import Any

from gateway.enforce.compile import ERRORS_FIRST_SCORE, CompiledRule

RULE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {
                "price": {"type": "number", "minimum": 0},
                "sku": {"type": "string", "pattern": "^sku-[0-9]+$"},
                "email": {"type": "string", "format": "email"},
            },
            "required": ["price"],
            "additionalProperties": False,
        }
    },
}
VALID = {"properties": {"price": 3, "sku": "sku-12", "email": "ada@example.com"}}
INVALID = [
    {"properties": {"price": -1}},
    {"properties": {"sku": "SKU?", "email": "nope"}},
    {"properties": {"price": "3", "coupon": "X"}},
    {"properties": {"price": 1, "email": 7}},
]


def _fresh(schema: Any, event: Any) -> list[dict[str, Any]]:
    """The event's violations from a fresh rule: the verdict first."""
    rule = CompiledRule(schema)
    return [] if rule.is_valid(event) else rule.violations(event)


def test_both_orders_judge_every_event_alike() -> None:
    rule = CompiledRule(RULE)
    traffic = [*INVALID * 10, *[VALID] * 60, *(INVALID + [VALID] * 3) * 5]
    modes = set()
    for event in traffic:
        modes.add(rule._score >= ERRORS_FIRST_SCORE)
        assert rule.check(event) == _fresh(RULE, event)
    assert modes == {True, False}  # both orders were taken


def test_a_rule_moves_to_errors_first_and_back() -> None:
    rule = CompiledRule(RULE)
    for event in INVALID * 5:
        rule.check(event)
    assert rule._score >= ERRORS_FIRST_SCORE
    for _ in range(40):
        rule.check(VALID)
    assert rule._score == 0
    # Mostly valid traffic with an invalid event now and then stays verdict first.
    for _ in range(10):
        for event in [INVALID[0], VALID, VALID, VALID, VALID, VALID]:
            rule.check(event)
        assert rule._score < ERRORS_FIRST_SCORE


def test_without_collecting_an_invalid_event_is_none_in_either_order() -> None:
    rule = CompiledRule(RULE)
    for event in INVALID * 5:
        rule.check(event)
    assert rule._score >= ERRORS_FIRST_SCORE
    assert rule.check(INVALID[1], collect=False) is None
    assert rule.check(VALID, collect=False) == []
    fresh = CompiledRule(RULE)
    assert fresh.check(INVALID[1], collect=False) is None
    assert fresh.check(VALID, collect=False) == []


def test_an_event_too_deep_for_the_engine_is_invalid_in_either_order() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    event = {"properties": {"price": deep}}
    errors_first = CompiledRule(RULE)
    for bad in INVALID * 5:
        errors_first.check(bad)
    for rule in (CompiledRule(RULE), errors_first):
        violations = rule.check(event)
        assert violations is not None
        [violation] = violations
        assert violation["type"] == "Unknown-Violation"


def test_remembered_violations_stay_few_and_short_whatever_the_events() -> None:
    # Violations at places clients choose: array items, and keys of any length.
    rule = CompiledRule(
        {
            "type": "object",
            "properties": {
                "properties": {
                    "type": "object",
                    "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
                    "additionalProperties": {"type": "string"},
                }
            },
        }
    )
    events = [
        {"properties": {"items": ["x"] * 3000}},
        {"properties": {f"k{i}": 1 for i in range(500)}},
        {"properties": {"k" * 20_000: 1}},
    ]
    for event in events * 2:
        found = rule.check(event)
        assert found == _fresh(rule.schema, event)
    remembered = rule._remembered
    assert 0 < len(remembered) <= 64
    for _, _, instance_at in remembered:
        assert all(isinstance(segment, str) for segment in instance_at)
        assert sum(len(segment) + 1 for segment in instance_at) <= 256
