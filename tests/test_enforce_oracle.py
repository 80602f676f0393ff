"""The engine against the reference implementation: verdicts agree on generated rules.

``CompiledRule`` (jsonschema-rs) decides and explains. These property tests generate schemas from
the keywords tracking plans use, nested a few levels and wrapped the way plans are, and events
both free and aimed at the schema, and compare every verdict with Python's ``jsonschema`` (the
reference implementation of the drafts). They also check that every rejected event is explained
by well-formed violations, and that validation never modifies the event.

Deliberate differences, each pinned by an example below:

- ``pattern`` follows ECMA-262 as ajv does: ``$`` matches only at the very end, whereas Python's
  also matches before a final newline. The oracle is told the ECMA reading.
- ``multipleOf`` with a float divisor is decimal: 19.01 is a multiple of 0.01 (float division
  says 1901.0000000000002). The oracle is told the decimal reading.
- The reference's ``uniqueItems`` sorts and compares neighbours, so ``[[1], [True], [1]]``
  passes as unique; the oracle compares every pair of JSON values.
- The reference crashes on ``additionalItems`` beside a boolean ``items``; the oracle applies
  it only beside the tuple form, as the spec says.
- Draft-04's meta-schema forbids duplicate ``enum`` values and empty ``dependencies`` lists; the
  engine compiles the first and refuses the second, the reference the other way round (see
  ``_draft_04_meta_edge``).
- ``format`` is left out of the comparison: jsonschema checks some formats only when optional
  packages are installed, and each implementation has its own edge cases. The formats are pinned
  by the semantics tests instead.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterator
from decimal import Decimal, localcontext
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator, Draft6Validator, Draft7Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator

from bench.engines import without_formats
from gateway.enforce.compile import DRAFT_04, DRAFT_06, CompiledRule, draft_of
from gateway.enforce.violations import VIOLATION_TYPES

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
DRAFTS = (DRAFT_04, DRAFT_06, DRAFT_07, None)  # None: no $schema, draft-07 by default

NAMES = ("a", "b", "c", "x_1", "user_id")
# Property names that are awkward in schema paths and JSON Pointers: quotes, braces, slashes and
# backslashes, names alike but for punctuation ("a-b", "ab"), the empty name.
ODD_NAMES = ("", "ab", "a-b", "a.b", "first name", "$type", "\u00e9", 'a"b', "{x}", "a\\b", "a\nb")
# Safe patterns, each with strings that match, miss, or match only up to a final newline.
PATTERN_EXAMPLES: dict[str, tuple[str, ...]] = {
    "^[a-z]+$": ("abc", "abc\n", "Abc", ""),
    "^x_": ("x_1", "y_1", "\nx_1"),
    "_id$": ("user_id", "user_id\n", "id"),
    "^[0-9]{2,4}$": ("12", "1234", "12345", "12\n"),
    "a|b": ("a", "cb", "c"),
    "^$": ("", "\n", "a"),
    "^\\w+@\\w+$": ("a@b", "a@b\n", "a@"),
    "[A-Z]": ("A", "a"),
    "^[a-z]+$|^[0-9]+$": ("abc", "123\n", "a1"),
}
PATTERNS = tuple(PATTERN_EXAMPLES)
PATTERN_PROPERTY_KEYS = ("^x_", "_id$", "^[0-9]+$")
FORMAT_NAMES = (
    "date-time",
    "date",
    "time",
    "email",
    "uuid",
    "hostname",
    "ipv4",
    "ipv6",
    "uri",
    "phone-number",  # unknown: ignored by both sides
)
TYPES = ("integer", "number", "boolean", "null", "string", "array", "object")
# Definition names, and the $ref to each ("odd name/x" needs both escapes).
DEFINITIONS = {
    "d0": "#/definitions/d0",
    "d1": "#/definitions/d1",
    "node": "#/definitions/node",
    "odd name/x": "#/definitions/odd%20name~1x",
}
REF_TARGETS = {ref: name for name, ref in DEFINITIONS.items()}

# Strings close to (and just across) the edge of each format.
NEAR_MISS_STRINGS = (
    "",
    "a",
    "abc",
    "abc\n",
    "ABC",
    "x_1",
    "12",
    "1234",
    "12345",
    "a@b",
    "a@b.c",
    "a@@b.c",
    "a b@c.d",
    "2024-02-29T10:00:00Z",
    "2023-02-29T10:00:00Z",
    "2024-01-01T00:00:60Z",
    "2024-01-01t00:00:00z",
    "2024-01-01T24:00:00Z",
    "2024-01-01T10:00:00+25:00",
    "2024-01-01T10:00:00.123+02:00",
    "2024-01-01 10:00:00Z",
    "2024-01-01T10:00:00Z\n",
    "2024-02-29",
    "2023-02-29",
    "2024-13-01",
    "\u0662\u0660\u0662\u0664-01-01",  # Arabic-Indic digits
    "10:00:00Z",
    "10:00:00",
    "10:00:00+01:00",
    "10:00",
    "550e8400-e29b-41d4-a716-446655440000",
    "550E8400-E29B-41D4-A716-446655440000",
    "550e8400-e29b-41d4-a716-44665544000",
    "550e8400e29b41d4a716446655440000",
    "example.com",
    "example.com.",
    "-example.com",
    "exa_mple.com",
    "a" * 64 + ".com",
    "1.2.3.4",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3.4\n",
    "::1",
    "::ffff:1.2.3.4",
    "1::2::3",
    "fe80::1%eth0",
    "http://example.com/x?y=1",
    "mailto:a@b.c",
    "x:",
    "not a uri",
    "//example.com",
    "$",
    "True",
    "1",
)

# Arrays whose items are equal, or only look equal, in JSON terms.
TRICKY_ARRAYS: tuple[list[Any], ...] = (
    [1, True],
    [0, False],
    [1, 1.0],
    [[1], [True], [1]],  # sorted, [True] sits between the two [1]s
    [[0], [False], [0], [1]],
    [[1, "a"], [True, "a"], [1, "a"]],
    [[1], [1.0]],
    [{"a": 1}, {"a": True}],
    [{"a": 1}, {"a": 1.0}],
    ["1", 1],
    [None, None],
    [[], {}],
)

ENUM_VALUES: tuple[Any, ...] = (
    1,
    1.0,
    0,
    2.5,
    True,
    False,
    None,
    "a",
    "1",
    "",
    [1],
    [True],
    [],
    {"a": 1},
    {"a": True},
    {},
)

NUMBERS: tuple[int | float, ...] = (
    0,
    1,
    -1,
    2,
    3,
    5,
    10,
    1.0,
    0.5,
    -0.5,
    0.1,
    0.3,
    0.01,
    19.01,
    2.5,
    100,
    1e20,
    1e308,
    -1e308,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
)


# --- schemas -----------------------------------------------------------------------------

STRING_KEYWORDS = ("minLength", "maxLength", "pattern", "format")
NUMBER_KEYWORDS = ("multipleOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
ARRAY_KEYWORDS = ("minItems", "maxItems", "uniqueItems", "items", "additionalItems", "contains")
OBJECT_KEYWORDS = ("required", "properties", "additionalProperties", "patternProperties")


def _bounds(draft: str | None) -> st.SearchStrategy[dict[str, Any]]:
    number = st.sampled_from((0, 1, 2, 5, 10, -3, 0.5, 2.5, 1e20))
    if draft == DRAFT_04:
        # draft-04: exclusiveMinimum/Maximum are booleans beside minimum/maximum.
        return st.one_of(
            st.fixed_dictionaries(
                {"minimum": number}, optional={"exclusiveMinimum": st.booleans()}
            ),
            st.fixed_dictionaries(
                {"maximum": number}, optional={"exclusiveMaximum": st.booleans()}
            ),
        )
    keyword = st.sampled_from(("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"))
    return st.dictionaries(keyword, number, min_size=1, max_size=2)


LEAF_KEYWORDS: dict[str, st.SearchStrategy[Any]] = {
    "minLength": st.integers(0, 4),
    "maxLength": st.integers(0, 6),
    "pattern": st.sampled_from(PATTERNS),
    "format": st.sampled_from(FORMAT_NAMES),
    "multipleOf": st.sampled_from((1, 2, 3, 5, 0.5, 0.25, 0.1, 0.01)),
    "minItems": st.integers(0, 3),
    "maxItems": st.integers(0, 4),
    "uniqueItems": st.booleans(),
    "required": st.lists(st.sampled_from(NAMES + ODD_NAMES), min_size=1, max_size=3, unique=True),
    "minProperties": st.integers(0, 3),
    "maxProperties": st.integers(0, 3),
    "enum": st.lists(st.sampled_from(ENUM_VALUES), min_size=1, max_size=4),
}
KEYWORDS_OF_TYPE = {
    "string": ("minLength", "maxLength", "pattern", "format"),
    "integer": ("multipleOf",),
    "number": ("multipleOf",),
    "array": ("minItems", "maxItems", "uniqueItems"),
    "object": ("required", "minProperties", "maxProperties"),
    "boolean": (),
    "null": (),
}


VALUES_OF_TYPE: dict[str, tuple[Any, ...]] = {
    "integer": (0, 1, 2, 5, -3, 10),
    "number": (1, 1.0, 2.5, 0.5, 19.01, 0.1),
    "string": ("a", "1", "", "abc", "x_1", "True"),
    "boolean": (True, False),
    "null": (None,),
    "array": ([1], [True], [], [1, "a"], [1.0]),
    "object": ({"a": 1}, {"a": True}, {}, {"a": 1.0}),
    "any": ENUM_VALUES,
}


def _values(kind: str) -> st.SearchStrategy[Any]:
    """Mostly values of the schema's own type, some of any type."""
    return st.one_of(*[st.sampled_from(VALUES_OF_TYPE[kind])] * 4, st.sampled_from(ENUM_VALUES))


def _type_keyword(kind: str) -> st.SearchStrategy[Any]:
    others = st.lists(st.sampled_from([t for t in TYPES if t != kind]), max_size=2, unique=True)
    return st.one_of(st.just(kind), others.map(lambda more: [kind, *more]))


@st.composite
def _plain(draw: st.DrawFn, draft: str | None, kind: str | None = None) -> dict[str, Any]:
    """A coherent leaf: a type (usually declared) and a few keywords that apply to it."""
    if kind is None:
        kind = draw(st.sampled_from((*TYPES, "any")))
    schema: dict[str, Any] = {}
    if kind != "any" and draw(st.integers(0, 3)):
        schema["type"] = draw(_type_keyword(kind))
    relevant = KEYWORDS_OF_TYPE.get(kind, tuple(LEAF_KEYWORDS))
    chosen = draw(st.lists(st.sampled_from(relevant), max_size=3, unique=True)) if relevant else []
    for keyword in chosen:
        schema[keyword] = draw(LEAF_KEYWORDS[keyword])
    if kind in ("integer", "number", "any") and draw(st.booleans()):
        schema.update(draw(_bounds(draft)))
    if not draw(st.integers(0, 7)):
        schema["enum"] = draw(st.lists(_values(kind), min_size=1, max_size=4))
    elif draft != DRAFT_04 and not draw(st.integers(0, 9)):
        schema["const"] = draw(_values(kind))
    if not draw(st.integers(0, 9)):  # a keyword that does not apply to the type
        stray = draw(st.sampled_from(sorted(LEAF_KEYWORDS)))
        schema[stray] = draw(LEAF_KEYWORDS[stray])
    return schema


def _leaf(draft: str | None) -> st.SearchStrategy[Any]:
    ref = st.fixed_dictionaries(
        {"$ref": st.sampled_from(sorted(REF_TARGETS))},
        # Siblings of $ref are ignored up to draft-07, by both sides.
        optional={"type": st.sampled_from(TYPES), "minLength": st.just(100)},
    )
    # Mostly plain keyword schemas; some $refs; boolean subschemas from draft-06 on.
    choices: list[st.SearchStrategy[Any]] = [_plain(draft) for _ in range(4)]
    choices.append(ref)
    if draft != DRAFT_04:
        choices.append(st.booleans())
    return st.one_of(*choices)


@st.composite
def _nested(
    draw: st.DrawFn, draft: str | None, child: st.SearchStrategy[Any], shape: str | None = None
) -> dict[str, Any]:
    """An object, array or combinator schema around generated children."""
    if shape is None:
        shape = draw(st.sampled_from(("object", "array", "combinator")))
    children = st.lists(child, min_size=1, max_size=3)
    schema: dict[str, Any] = draw(_plain(draft, shape if shape != "combinator" else None))
    if shape == "object":
        names = st.one_of(st.sampled_from(NAMES), st.sampled_from(ODD_NAMES))
        properties = draw(st.dictionaries(names, child, max_size=3))
        if bool(properties) or draw(st.booleans()):
            schema["properties"] = properties
        if draw(st.booleans()):
            declared = sorted(properties)
            schema["required"] = draw(
                st.lists(st.sampled_from(declared or list(NAMES)), min_size=1, unique=True)
            )
        if draw(st.integers(0, 2)):
            schema["additionalProperties"] = draw(st.one_of(st.just(False), st.just(True), child))
        if not draw(st.integers(0, 3)):
            schema["dependencies"] = draw(
                st.dictionaries(
                    st.sampled_from(NAMES),
                    st.one_of(st.lists(st.sampled_from(NAMES), unique=True, max_size=2), child),
                    min_size=1,
                    max_size=2,
                )
            )
        if draft != DRAFT_04 and not draw(st.integers(0, 3)):
            schema["propertyNames"] = draw(
                st.one_of(
                    st.fixed_dictionaries({"pattern": st.sampled_from(PATTERNS)}),
                    st.fixed_dictionaries({"maxLength": st.integers(0, 3)}),
                    st.booleans(),
                )
            )
        if not draw(st.integers(0, 2)):
            schema["patternProperties"] = draw(
                st.dictionaries(st.sampled_from(PATTERN_PROPERTY_KEYS), child, min_size=1)
            )
    elif shape == "array":
        if draw(st.booleans()):
            schema["items"] = draw(child)
        elif draw(st.integers(0, 3)):
            schema["items"] = draw(children)  # tuple form
        if draw(st.booleans()):  # meaningful beside the tuple form only
            schema["additionalItems"] = draw(st.one_of(st.just(True), st.just(False), child))
        if draft != DRAFT_04 and not draw(st.integers(0, 2)):
            schema["contains"] = draw(child)
    else:
        combinators = ["allOf", "anyOf", "oneOf", "not"]
        if draft in (DRAFT_07, None):
            combinators.append("if")
        for keyword in draw(
            st.lists(st.sampled_from(combinators), min_size=1, max_size=2, unique=True)
        ):
            if keyword == "not":
                schema["not"] = draw(child)
            elif keyword == "if":
                schema["if"] = draw(child)
                for branch in ("then", "else"):
                    if draw(st.integers(0, 3)):
                        schema[branch] = draw(child)
            else:
                schema[keyword] = draw(children)
    return schema


def _subschema(draft: str | None) -> st.SearchStrategy[Any]:
    return st.recursive(_leaf(draft), lambda child: _nested(draft, child), max_leaves=6)


@st.composite
def plan_rules(draw: st.DrawFn) -> dict[str, Any]:
    """A rule the way a tracking plan holds it: the schema of the whole message."""
    draft = draw(st.sampled_from(DRAFTS))
    # d1 may refer to d0 only, and node to itself only through a property, so every $ref
    # resolves and no schema recurses without consuming the event.
    d0 = draw(_plain(draft))
    d1 = draw(st.one_of(st.just({"$ref": DEFINITIONS["d0"]}), _plain(draft)))
    node = {
        "type": ["object", "null"],
        "properties": {"next": {"$ref": DEFINITIONS["node"]}, "a": draw(_plain(draft))},
    }
    rule: dict[str, Any] = {
        "type": "object",
        # Plans mostly describe `properties` as an object with named keys.
        "properties": {
            "properties": draw(
                st.one_of(_subschema(draft), _nested(draft, _subschema(draft), "object"))
            )
        },
        "definitions": {"d0": d0, "d1": d1, "node": node, "odd name/x": draw(_plain(draft))},
    }
    if draw(st.booleans()):
        rule["required"] = ["properties"]
    if draft is not None:
        rule["$schema"] = draft
    if draw(st.booleans()):
        # Custom types may arrive under $defs as well as definitions.
        text = json.dumps(rule).replace('"#/definitions/', '"#/$defs/')
        rule = json.loads(text)
        rule["$defs"] = rule.pop("definitions")
    return rule


# --- events ------------------------------------------------------------------------------

KEYS = st.sampled_from((*NAMES, *ODD_NAMES, "x_2", "12", "next", "properties", "Z"))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(NEAR_MISS_STRINGS),
    st.text(max_size=6),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.sampled_from(ENUM_VALUES), max_size=4),  # duplicates like [1, True, 1.0]
        st.dictionaries(KEYS, inner, max_size=4),
    )


json_values = st.recursive(json_scalars, _containers, max_leaves=10)


FORMAT_EXAMPLES: dict[str, tuple[str, ...]] = {
    "date-time": ("2024-02-29T10:00:00Z", "2024-01-01T10:00:00.123+02:00", "2023-02-29T10:00:00Z"),
    "date": ("2024-02-29", "2023-02-29", "2024-13-01"),
    "time": ("10:00:00Z", "10:00:00+01:00", "10:00:00"),
    "email": ("a@b.c", "a@b", "a b@c.d"),
    "uuid": ("550e8400-e29b-41d4-a716-446655440000", "550e8400e29b41d4a716446655440000"),
    "hostname": ("example.com", "example.com.", "-example.com"),
    "ipv4": ("1.2.3.4", "256.1.1.1", "1.2.3.4\n"),
    "ipv6": ("::1", "::ffff:1.2.3.4", "1::2::3"),
    "uri": ("http://example.com/x?y=1", "mailto:a@b.c", "not a uri"),
}


def _kinds(schema: dict[str, Any]) -> list[str]:
    """The types to aim at: as declared, else as the keywords suggest."""
    declared = schema.get("type")
    if declared is not None:
        return declared if isinstance(declared, list) else [declared]
    for kind, keywords in (
        ("string", STRING_KEYWORDS),
        ("number", NUMBER_KEYWORDS),
        ("array", ARRAY_KEYWORDS),
        ("object", OBJECT_KEYWORDS),
    ):
        if any(k in schema for k in keywords):
            return [kind]
    return list(TYPES)


class _Aim:
    """Events aimed at one rule: valid at most places, just across an edge at a few.

    An event counts only where everything else in it is valid (otherwise both sides say
    "invalid" whatever they think of the edge), so each node is sought valid -- candidates are
    checked against plain jsonschema and retried -- except, now and then, deliberately not.
    """

    EDGE = 0.08  # chance that a node is aimed across its edge instead
    BUDGET = 300  # nodes generated per event, retries included

    def __init__(self, rule: dict[str, Any], rnd: random.Random) -> None:
        self.root = rule
        self.rnd = rnd
        self.reference = _ORACLES[draft_of(rule)](rule)
        self.budget = self.BUDGET
        # Set by a node that chose a value the two libraries are known to read differently:
        # kept even when plain jsonschema rejects it.
        self.contested = False

    def event(self) -> Any:
        self.budget = self.BUDGET
        return self.value(self.root, 0)

    def value(self, schema: Any, depth: int) -> Any:
        self.budget -= 1
        if depth > 4 or not isinstance(schema, dict) or self.rnd.random() < 0.01:
            return self.free(2)
        if self.rnd.random() < self.EDGE:
            return self.shaped(schema, depth, edge=True)
        node = self.reference.evolve(schema=schema)
        for _ in range(4):
            self.contested = False
            candidate = self.shaped(schema, depth, edge=False)
            if self.contested or self.budget <= 0 or self._accepts(node, candidate):
                break
        self.contested = False
        return candidate

    @staticmethod
    def _accepts(node: Any, candidate: Any) -> bool:
        try:
            return bool(node.is_valid(candidate))
        except TypeError:  # an edge the reference cannot judge
            return False

    def free(self, depth: int) -> Any:
        rnd = self.rnd
        roll = rnd.random()
        if depth > 0 and roll < 0.15:
            return [self.free(depth - 1) for _ in range(rnd.randint(0, 3))]
        if depth > 0 and roll < 0.3:
            return {rnd.choice(NAMES): self.free(depth - 1) for _ in range(rnd.randint(0, 3))}
        pool = rnd.choice((NUMBERS, NEAR_MISS_STRINGS, ENUM_VALUES, TRICKY_ARRAYS))
        return copy.deepcopy(rnd.choice(pool))

    def shaped(self, schema: dict[str, Any], depth: int, edge: bool) -> Any:
        rnd = self.rnd
        if "$ref" in schema:
            ref = schema["$ref"].replace("#/$defs/", "#/definitions/")
            defs = self.root.get("definitions", self.root.get("$defs", {}))
            return self.value(defs[REF_TARGETS[ref]], depth + 1)
        if "enum" in schema and (not edge or rnd.random() < 0.5):
            return copy.deepcopy(rnd.choice(schema["enum"]))
        if "const" in schema and (not edge or rnd.random() < 0.5):
            return copy.deepcopy(schema["const"])
        branches = [
            *schema.get("anyOf", []),
            *schema.get("oneOf", []),
            *schema.get("allOf", []),
            *[schema[k] for k in ("then", "else") if k in schema],
        ]
        if branches and rnd.random() < 0.5:
            return self.value(rnd.choice(branches), depth + 1)
        kind = rnd.choice(_kinds(schema))
        if kind == "null":
            return None
        if kind == "boolean":
            return rnd.random() < 0.5
        if kind in ("integer", "number"):
            return self.number(schema, kind, edge)
        if kind == "string":
            return self.string(schema, edge)
        if kind == "array":
            return self.array(schema, depth, edge)
        return self.object(schema, depth, edge)

    def number(self, schema: dict[str, Any], kind: str, edge: bool) -> int | float:
        rnd = self.rnd
        anchors = [
            schema[k]
            for k in NUMBER_KEYWORDS
            if isinstance(schema.get(k), int | float) and not isinstance(schema.get(k), bool)
        ]
        step = schema.get("multipleOf", 1)
        if edge:
            value = rnd.choice(anchors or [0]) + rnd.choice((-1, 0, 1)) * rnd.choice((1, 1e-9))
            return rnd.choice((value, rnd.choice(NUMBERS)))
        value = rnd.choice(anchors or [0]) + rnd.randint(-3, 3) * step
        if isinstance(step, float) and rnd.random() < 0.5:
            # A decimal multiple as written, e.g. 19.01 for 0.01: not a multiple in floats.
            value = round(rnd.choice(anchors or [0]) + rnd.randint(0, 3000) * step, 2)
            self.contested = True
        elif rnd.random() < 0.05:
            value = rnd.choice((1e20, 2**53 + 1, 1e308, -1e308))
            self.contested = True
        if kind == "integer" or rnd.random() < 0.3:
            return int(value) if rnd.random() < 0.7 else float(int(value))
        number: int | float = value
        return number

    def string(self, schema: dict[str, Any], edge: bool) -> str:
        rnd = self.rnd
        pools: list[tuple[str, ...]] = [NEAR_MISS_STRINGS]
        if "pattern" in schema:
            pools += [PATTERN_EXAMPLES.get(schema["pattern"], ())] * 3
        if "format" in schema:
            pools += [FORMAT_EXAMPLES.get(schema["format"], ())] * 3
        lengths = [
            schema[k] + d for k in ("minLength", "maxLength") if k in schema for d in (-1, 0, 1)
        ]
        if lengths:
            pools.append(tuple("a" * max(n, 0) for n in lengths))
        pool = rnd.choice([p for p in pools if p])
        value = rnd.choice(pool)
        if value.endswith("\n") and "pattern" in schema:
            self.contested = True  # "$" before a final newline
        return value

    def array(self, schema: dict[str, Any], depth: int, edge: bool) -> list[Any]:
        rnd = self.rnd
        if schema.get("uniqueItems") and rnd.random() < 0.5:
            self.contested = True
            return copy.deepcopy(rnd.choice(TRICKY_ARRAYS))
        low, high = schema.get("minItems", 0), schema.get("maxItems", 4)
        size = rnd.randint(0, 5) if edge or low > high else rnd.randint(low, high)
        items = schema.get("items", {})
        if isinstance(items, list):
            extra = schema.get("additionalItems", {})
            out = [
                self.value(items[i] if i < len(items) else extra, depth + 1) for i in range(size)
            ]
        else:
            out = [self.value(items, depth + 1) for _ in range(size)]
        if "contains" in schema and (not edge or rnd.random() < 0.5):
            out.insert(rnd.randint(0, len(out)), self.value(schema["contains"], depth + 1))
        if out and (edge or not schema.get("uniqueItems")) and rnd.random() < 0.3:
            out.append(copy.deepcopy(rnd.choice(out)))  # a duplicate
        return out

    def object(self, schema: dict[str, Any], depth: int, edge: bool) -> dict[str, Any]:
        rnd = self.rnd
        properties = schema.get("properties", {})
        keys = {k for k in properties if rnd.random() < 0.6}
        required = schema.get("required", [])
        keys |= {k for k in required if not edge or rnd.random() < 0.7}
        closed = schema.get("additionalProperties", True) is False
        if edge or not closed or rnd.random() < 0.2:
            keys |= {
                rnd.choice((*NAMES, *ODD_NAMES, "x_2", "12", "next", "Z"))
                for _ in range(rnd.randint(0, 2))
            }
        out: dict[str, Any] = {}
        for key in sorted(keys):
            sub = properties.get(key)
            if sub is None:
                sub = next(
                    (
                        s
                        for p, s in schema.get("patternProperties", {}).items()
                        if re.search(p, key)
                    ),
                    schema.get("additionalProperties", {}),
                )
            out[key] = self.value(sub, depth + 1)
        return out


@st.composite
def rules_and_events(draw: st.DrawFn) -> tuple[dict[str, Any], list[Any]]:
    """A rule and a few events for it: mostly aimed at it, some free-form."""
    rule = draw(plan_rules())
    # A seeded Random, not st.randoms(): that one leans to 0.0 and would skew every odds here.
    aim = _Aim(rule, random.Random(draw(st.integers(0, 2**32 - 1))))
    events = [aim.event() for _ in range(draw(st.integers(1, 8)))]
    free = draw(
        st.lists(st.one_of(json_values.map(lambda v: {"properties": v}), json_values), max_size=2)
    )
    return rule, events + free


# --- the oracle ------------------------------------------------------------------------

# ECMA-262 `$` (no multiline flag) matches only at the very end of the string.
_DOLLAR = re.compile(r"(?<!\\)\$")


def _ecma_pattern(
    validator: Validator, pattern: str, instance: Any, _: Any
) -> Iterator[ValidationError]:
    try:
        compiled = re.compile(_DOLLAR.sub(r"\\Z", pattern))
    except re.error:  # "[$]" becomes "[\Z]"; inside a class `$` is literal anyway
        compiled = re.compile(pattern)
    if validator.is_type(instance, "string") and not compiled.search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _decimal_multiple_of(
    validator: Validator, divisor: Any, instance: Any, _: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "number"):
        return
    if isinstance(instance, int) and isinstance(divisor, int):
        multiple = instance % divisor == 0
    else:
        dividend, by = Decimal(repr(instance)), Decimal(repr(divisor))
        # Exactly: with digits enough for the whole quotient (exponents reach ±324), not the
        # default 28, which rounds -1e308 / 3 to an integer.
        with localcontext() as context:
            context.prec = 2 * (len(repr(instance)) + len(repr(divisor))) + 700
            try:
                multiple = dividend % by == 0
            except ArithmeticError:
                multiple = False
    if not multiple:
        yield ValidationError(f"{instance!r} is not a multiple of {divisor}")


def _canonical(value: Any) -> Any:
    # Equal JSON values get equal keys: 1 and 1.0 alike, True and 1 apart.
    if isinstance(value, dict):
        return frozenset((k, _canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, bool):
        return (bool, value)
    return value


def _unique_items(
    validator: Validator, unique: Any, instance: Any, _: Any
) -> Iterator[ValidationError]:
    if (
        unique
        and validator.is_type(instance, "array")
        and len({_canonical(item) for item in instance}) != len(instance)
    ):
        yield ValidationError(f"{instance!r} has non-unique elements")


def _tuple_items_only(additional_items: Any) -> Any:
    """The reference crashes (``len(True)``) on additionalItems beside a boolean ``items``;
    by the spec it applies only beside the tuple (list) form of ``items``."""

    def keyword(
        validator: Validator, extra: Any, instance: Any, schema: Any
    ) -> Iterator[ValidationError]:
        if isinstance(schema.get("items"), list):
            yield from additional_items(validator, extra, instance, schema)

    return keyword


_ORACLES: dict[str, Any] = {
    draft: validators.extend(  # type: ignore[no-untyped-call]
        cls,
        {
            "pattern": _ecma_pattern,
            "multipleOf": _decimal_multiple_of,
            "uniqueItems": _unique_items,
            "additionalItems": _tuple_items_only(cls.VALIDATORS["additionalItems"]),
        },
    )
    for draft, cls in (
        (DRAFT_04, Draft4Validator),
        (DRAFT_06, Draft6Validator),
        (DRAFT_07, Draft7Validator),
    )
}


def _oracle(rule: dict[str, Any]) -> Validator | None:
    """The reference validator of a rule, or None if the rule is not a valid schema."""
    cls = _ORACLES[draft_of(rule)]
    try:
        cls.check_schema(rule)
    except SchemaError:
        return None
    return cls(rule)  # type: ignore[no-any-return]


def _draft_04_meta_edge(rule: dict[str, Any]) -> bool:
    """Whether a draft-04 rule has a duplicate ``enum`` value or an empty ``dependencies`` list.

    Draft-04's meta-schema forbids both; the reference lets the second through and the engine
    the first. Neither changes what an event is judged by, so such rules are only compared on
    events when both compile them.
    """
    if draft_of(rule) != DRAFT_04:
        return False
    for sub in _all_dicts(rule):
        enum = sub.get("enum")
        if isinstance(enum, list) and len({_canonical(v) for v in enum}) < len(enum):
            return True
        dependencies = sub.get("dependencies")
        if isinstance(dependencies, dict) and [] in dependencies.values():
            return True
    return False


def _all_dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _all_dicts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _all_dicts(v)


def check_oracle(rule: dict[str, Any], events: list[Any]) -> None:
    rule = without_formats(rule)
    oracle = _oracle(rule)
    compiled = CompiledRule(rule)
    if _draft_04_meta_edge(rule):
        if oracle is None or compiled.error is not None:
            return
    elif oracle is None:
        assert compiled.error is not None, "an invalid schema compiled"
        return
    # A schema the reference accepts must compile: a rule error would reject every event.
    assert compiled.error is None, compiled.error
    for event in events:
        _check_event(compiled, oracle, event)


def _check_event(compiled: CompiledRule, oracle: Validator, event: Any) -> None:
    original = copy.deepcopy(event)
    valid = compiled.is_valid(event)
    expected = oracle.is_valid(event)
    assert valid == expected, (
        f"engine says {'valid' if valid else 'invalid'}, reference says "
        f"{[e.message for e in oracle.iter_errors(event)]}"
    )
    found = compiled.violations(event) if not valid else []
    for violation in found:
        assert violation["type"] in VIOLATION_TYPES
        assert isinstance(violation["message"], str)
        assert violation["message"] != "event rejected by the compiled rule"
        assert isinstance(violation["property"], str)
        assert isinstance(violation["meta"], dict)
    assert valid or found
    # The full pass alone (CompiledRule.check on a rule whose events are often invalid) finds
    # no violation exactly when the verdict is valid.
    assert (compiled._collect(event) == []) == valid
    assert event == original  # validation never modifies the event


def _wrap(sub: Any, draft: str | None = None, /, **root: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"type": "object", "properties": {"properties": sub}, **root}
    if draft is not None:
        rule["$schema"] = draft
    return rule


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
@given(rules_and_events())
# The deliberate differences (see the module docstring).
@example((_wrap({"pattern": "^[a-z]+$"}), [{"properties": "abc\n"}, {"properties": "abc"}]))
@example((_wrap({"pattern": "[$]"}), [{"properties": "$"}, {"properties": "a"}]))
@example((_wrap({"multipleOf": 0.01}), [{"properties": 19.01}, {"properties": 19.015}]))
@example((_wrap({"multipleOf": 3}), [{"properties": 1e20}, {"properties": 2**60 + 1}]))
@example((_wrap({"multipleOf": 3}), [{"properties": 1e308}, {"properties": -1e308}]))
@example((_wrap({"multipleOf": 0.01}), [{"properties": 1e308}, {"properties": -1e308}]))
@example((_wrap({"multipleOf": 0.5}), [{"properties": 10**400}, {"properties": -(10**400)}]))
# Agreed, kept as guards: equal JSON values in uniqueItems, an unsatisfiable `required`,
# additionalItems beside boolean items, bool is neither 1 nor a number, 1.0 is an integer from
# draft-06 on only, $ref siblings are ignored, odd property names.
@example(
    (
        _wrap({"uniqueItems": True}),
        [
            {"properties": v}
            for v in ([[1], [True], [1]], [1, True], [1, 1.0], [{"a": 1}, {"a": 1.0}])
        ],
    )
)
@example(
    (
        _wrap({"required": ["a"], "additionalProperties": False}),
        [{"properties": 1}, {"properties": {"a": 1}}, {"properties": {}}],
    )
)
@example((_wrap({"items": True, "additionalItems": False}), [{"properties": [1, 2]}]))
@example(
    (_wrap({"items": False, "additionalItems": {}}), [{"properties": [1]}, {"properties": []}])
)
@example((_wrap({"items": [{}], "additionalItems": True}, DRAFT_04), [{"properties": [1, 2]}]))
@example((_wrap({"enum": [1]}), [{"properties": True}, {"properties": 1.0}]))
@example((_wrap({"const": [1]}), [{"properties": [True]}, {"properties": [1.0]}]))
@example((_wrap({"minimum": 5, "multipleOf": 2}), [{"properties": True}]))
@example((_wrap({"type": "integer"}), [{"properties": 1.0}, {"properties": True}]))
@example((_wrap({"type": "integer"}, DRAFT_04), [{"properties": 1.0}]))
@example(
    (
        _wrap(
            {"$ref": "#/$defs/a%20b~1c", "type": "string"},
            **{"$defs": {"a b/c": {"type": "integer"}}},
        ),
        [{"properties": 1}, {"properties": "x"}],
    )
)
@example(
    (
        _wrap(
            {
                "properties": {n: {"type": "string", "minLength": 2} for n in ODD_NAMES},
                "required": list(ODD_NAMES),
                "additionalProperties": False,
            }
        ),
        [{"properties": dict.fromkeys(ODD_NAMES, "xy")}, {"properties": {"a-b": "x", "ab": "xy"}}],
    )
)
def test_engine_agrees_with_the_reference(case: tuple[dict[str, Any], list[Any]]) -> None:
    check_oracle(*case)


def test_content_keywords_are_annotations_only() -> None:
    # In draft-07 contentEncoding/contentMediaType are annotations, never assertions.
    rule = _wrap({"contentEncoding": "base64", "contentMediaType": "application/json"})
    compiled = CompiledRule(rule)
    assert compiled.error is None
    assert compiled.is_valid({"properties": "not base64!"})
    check_oracle(rule, [{"properties": "not base64!"}])


def test_unsatisfiable_required_compiles() -> None:
    rule = _wrap({"type": "object", "required": ["a"], "additionalProperties": False})
    compiled = CompiledRule(rule)
    assert compiled.error is None
    assert compiled.is_valid({})
    assert not compiled.is_valid({"properties": {}})
    assert not compiled.is_valid({"properties": {"a": 1}})
    types = {v["type"] for v in compiled.violations({"properties": {"a": 1}})}
    assert types == {"Additional-Properties"}


def test_deep_events_are_judged_or_reported_never_a_crash() -> None:
    node = {
        "type": ["object", "null"],
        "properties": {"next": {"$ref": "#/definitions/node"}, "v": {"type": "integer"}},
    }
    rule = _wrap({"$ref": "#/definitions/node"}, definitions={"node": node})
    compiled = CompiledRule(rule)
    event: Any = {"v": "x"}
    for _ in range(900):  # orjson parses up to 1024 levels
        event = {"next": event}
    # The engine follows the whole depth: the precise violation, 901 levels down.
    assert not compiled.is_valid({"properties": event})
    [violation] = compiled.violations({"properties": event})
    assert violation["type"] == "Datatype-Mismatch"
    assert violation["meta"]["instancePath"] == "/properties" + "/next" * 900 + "/v"
    shallow: Any = {"v": "x"}
    for _ in range(50):  # within the reference's (Python's) recursion limit
        shallow = {"next": shallow}
    check_oracle(rule, [{"properties": shallow}])
    # A failing value that is itself too deep to report: invalid, with the reason.
    flat = CompiledRule(_wrap({"type": "string"}))
    assert not flat.is_valid({"properties": event})
    [violation] = flat.violations({"properties": event})
    assert violation["type"] == "Unknown-Violation"
    assert "nested too deeply" in violation["message"]
