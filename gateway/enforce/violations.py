"""Turning JSON-Schema errors into violations: six types, ajv-style messages (DESIGN §4).

One violation::

    {"type": "Required-Missing", "message": "must have required property 'amount'",
     "property": "amount",
     "meta": {"instancePath": "/properties", "schemaPath": "#/properties/properties/required"}}

``property`` is the missing or unplanned key for ``required`` / ``additionalProperties``, else
the last segment of the instance path ("" at the root).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import ValidationError

Violation = dict[str, Any]

UNPLANNED_EVENT = "Unplanned-Event"
REQUIRED_MISSING = "Required-Missing"
DATATYPE_MISMATCH = "Datatype-Mismatch"
ADDITIONAL_PROPERTIES = "Additional-Properties"
ADVANCE_RULES_VIOLATION = "Advance-Rules-Violation"
UNKNOWN_VIOLATION = "Unknown-Violation"

VIOLATION_TYPES = (
    UNPLANNED_EVENT,
    REQUIRED_MISSING,
    DATATYPE_MISMATCH,
    ADDITIONAL_PROPERTIES,
    ADVANCE_RULES_VIOLATION,
    UNKNOWN_VIOLATION,
)

ADVANCE_KEYWORDS = frozenset(
    [
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "multipleOf",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "uniqueItems",
        "enum",
        "if",
    ]
)


def unplanned_event_violation(name: str) -> Violation:
    return {
        "type": UNPLANNED_EVENT,
        "message": f"no schema for event: {name}",
        "property": "",
        "meta": {},
    }


def unknown_violation(message: str) -> Violation:
    return {"type": UNKNOWN_VIOLATION, "message": message, "property": "", "meta": {}}


def violations_of(
    errors: Iterable[ValidationError],
    root_schema: Mapping[str, Any],
    located_cache: dict[tuple[Any, ...], _Located],
) -> list[Violation]:
    """Classify a rule's errors; ``located_cache`` (one per rule) remembers schema paths."""
    found: list[Violation] = []
    seen_if: set[tuple[str, str]] = set()
    for error in errors:
        instance_path = _pointer(error.absolute_path)
        located = _located(error, root_schema, located_cache)
        schema_path = located.schema_pointer
        # A `false` subschema fails with no keyword at all.
        keyword = str(error.validator) if error.validator is not None else "false"
        if keyword == "required":
            found.extend(_required(error, instance_path, schema_path))
        elif keyword == "additionalProperties":
            found.extend(_additional(error, instance_path, schema_path))
        else:
            found.append(
                {
                    "type": _type_of(keyword),
                    "message": _message(keyword, error),
                    "property": _last(error.absolute_path),
                    "meta": {"instancePath": instance_path, "schemaPath": schema_path},
                }
            )
        for if_pointer, branch, consumed in located.branches:
            # ajv reports a failed then/else branch also as an `if` error, once per place.
            at = list(error.absolute_path)[:consumed]
            key = (_pointer(at), if_pointer)
            if key in seen_if:
                continue
            seen_if.add(key)
            found.append(
                {
                    "type": ADVANCE_RULES_VIOLATION,
                    "message": f'must match "{branch}" schema',
                    "property": _last(at),
                    "meta": {"instancePath": _pointer(at), "schemaPath": if_pointer},
                }
            )
    return found


def _type_of(keyword: str) -> str:
    if keyword == "type":
        return DATATYPE_MISMATCH
    if keyword in ADVANCE_KEYWORDS:
        return ADVANCE_RULES_VIOLATION
    return UNKNOWN_VIOLATION


def _required(error: ValidationError, instance_path: str, schema_path: str) -> list[Violation]:
    # jsonschema says "'x' is a required property"; name the key from the data, not the text.
    instance = error.instance if isinstance(error.instance, dict) else {}
    required = error.validator_value if isinstance(error.validator_value, list) else []
    missing = [key for key in required if key not in instance]
    # One error per missing key arrives; report each key once, on the error that names it.
    name = next((key for key in missing if repr(key) in error.message), None)
    if name is None:
        return []
    return [
        {
            "type": REQUIRED_MISSING,
            "message": f"must have required property '{name}'",
            "property": name,
            "meta": {"instancePath": instance_path, "schemaPath": schema_path},
        }
    ]


def _additional(error: ValidationError, instance_path: str, schema_path: str) -> list[Violation]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    schema = error.schema if isinstance(error.schema, dict) else {}
    declared = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        key
        for key in instance
        if key not in declared and not any(re.search(p, key) for p in patterns)
    ]
    return [
        {
            "type": ADDITIONAL_PROPERTIES,
            "message": f"must NOT have additional properties '{key}'",
            "property": key,
            "meta": {"instancePath": instance_path, "schemaPath": schema_path},
        }
        for key in extras
    ]


@dataclass(slots=True)
class _Located:
    """Where an error's schema path really leads, and the ``if`` branches it passed."""

    schema_pointer: str
    # (pointer to the `if`, "then" | "else", how many instance path segments lead to it)
    branches: list[tuple[str, str, int]]


def _located(
    error: ValidationError,
    root: Mapping[str, Any],
    cache: dict[tuple[Any, ...], _Located],
) -> _Located:
    """:func:`_locate`, remembered per schema path: it depends on nothing else."""
    key = tuple(error.absolute_schema_path)
    located = cache.get(key)
    if located is None:
        located = _locate(error, root)
        if len(cache) < _LOCATED_CACHE_MAX:  # recursive schemas have unbounded paths
            cache[key] = located
    return located


_LOCATED_CACHE_MAX = 512


def _locate(error: ValidationError, root: Mapping[str, Any]) -> _Located:
    """Follow jsonschema's schema path through the root schema.

    jsonschema leaves ``$ref`` and ``if`` out of the path, so a local ``$ref`` is resolved
    whenever the next segment is not found beside it; this yields the real location of the
    keyword (``#/definitions/amount/minimum``) and every ``then``/``else`` branch taken.
    """
    path = list(error.absolute_schema_path)
    node: Any = root
    pointer: list[Any] = []
    consumed = 0  # instance path segments used up by the schema path walked so far
    branches: list[tuple[str, str, int]] = []
    for i, segment in enumerate(path):
        for _ in range(_MAX_REF_HOPS):
            if not (isinstance(node, Mapping) and segment not in node and "$ref" in node):
                break
            resolved = _resolve_local(root, node["$ref"])
            if resolved is None:
                break
            node, pointer = resolved
        if isinstance(node, Mapping) and segment in ("then", "else") and "if" in node:
            branches.append(("#" + _pointer([*pointer, "if"]), segment, consumed))
        previous = path[i - 1] if i else None
        if (
            previous in ("properties", "patternProperties")
            or (previous == "items" and isinstance(segment, int))
            or segment in ("additionalProperties", "additionalItems", "contains")
            or (
                segment == "items"
                and isinstance(node, Mapping)
                and isinstance(node.get("items"), Mapping)
            )
        ):
            consumed += 1
        if isinstance(node, Mapping):
            node = node.get(segment)
        elif isinstance(node, list) and isinstance(segment, int) and segment < len(node):
            node = node[segment]
        else:
            node = None
        pointer = [*pointer, segment]
    return _Located("#" + _pointer(pointer), branches)


_MAX_REF_HOPS = 16


def _resolve_local(root: Mapping[str, Any], ref: Any) -> tuple[Any, list[Any]] | None:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node: Any = root
    parts: list[Any] = []
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
            parts.append(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            parts.append(int(part))
        else:
            return None
    return node, parts


def _message(keyword: str, error: ValidationError) -> str:
    value = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    match keyword:
        case "type":
            types = value if isinstance(value, list) else [value]
            return "must be " + ",".join(str(t) for t in types)
        case "minLength":
            return f"must NOT have fewer than {value} characters"
        case "maxLength":
            return f"must NOT have more than {value} characters"
        case "pattern":
            return f'must match pattern "{value}"'
        case "format":
            return f'must match format "{value}"'
        case "multipleOf":
            return f"must be multiple of {value}"
        case "minimum":
            # draft-04 spells an exclusive bound as a boolean next to minimum/maximum.
            return f"must be {'>' if schema.get('exclusiveMinimum') is True else '>='} {value}"
        case "maximum":
            return f"must be {'<' if schema.get('exclusiveMaximum') is True else '<='} {value}"
        case "exclusiveMinimum":
            return f"must be > {value}"
        case "exclusiveMaximum":
            return f"must be < {value}"
        case "minItems":
            return f"must NOT have fewer than {value} items"
        case "maxItems":
            return f"must NOT have more than {value} items"
        case "uniqueItems":
            return "must NOT have duplicate items"
        case "enum":
            return "must be equal to one of the allowed values"
        case "const":
            return "must be equal to constant"
        case "contains":
            return "must contain at least 1 valid item(s)"
        case "minProperties":
            return f"must NOT have fewer than {value} properties"
        case "maxProperties":
            return f"must NOT have more than {value} properties"
        case "not":
            return "must NOT be valid"
        case "anyOf":
            return "must match a schema in anyOf"
        case "oneOf":
            return "must match exactly one schema in oneOf"
        case "dependencies" | "dependentRequired" | "dependentSchemas":
            return f"must satisfy dependencies: {error.message}"
        case "propertyNames":
            return "property name must be valid"
        case "additionalItems":
            return f"must NOT have more than {len(schema.get('items', []))} items"
        case "false":
            return "boolean schema is false"
    return error.message


def _pointer(path: Sequence[Any] | Iterable[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _last(path: Iterable[Any]) -> str:
    items = list(path)
    return str(items[-1]) if items else ""
