"""Turning JSON-Schema errors into violations: six types, ajv-style messages.

One violation::

    {"type": "Required-Missing", "message": "must have required property 'amount'",
     "property": "amount",
     "meta": {"instancePath": "/properties", "schemaPath": "#/properties/properties/required"}}

The type follows the failed keyword: ``required`` → Required-Missing, ``type`` →
Datatype-Mismatch, ``additionalProperties`` → Additional-Properties, the bounds, ``pattern``,
``format``, ``enum``, ``uniqueItems`` and ``if`` → Advance-Rules-Violation (see ADVANCE_KEYWORDS),
any other keyword → Unknown-Violation; an unmatched ``track`` event is an Unplanned-Event.

``property`` is the missing or unplanned key for ``required`` / ``additionalProperties``, else
the last segment of the instance path ("" at the root).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jsonschema_rs

from gateway.publish.records import cut_text

Violation = dict[str, Any]

UNPLANNED_EVENT = "Unplanned-Event"
REQUIRED_MISSING = "Required-Missing"
DATATYPE_MISMATCH = "Datatype-Mismatch"
ADDITIONAL_PROPERTIES = "Additional-Properties"
ADVANCE_RULES_VIOLATION = "Advance-Rules-Violation"
UNKNOWN_VIOLATION = "Unknown-Violation"
# Not a rule's verdict: the event could not be judged (see invalid_event_violation).
INVALID_EVENT = "Invalid-Event"

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


def unknown_version_violation(name: str, pinned: object, versions: Iterable[int]) -> Violation:
    """The event names a version of its rule (``context.protocols.event_version``) that the plan
    does not have."""
    have = ", ".join(str(v) for v in sorted(versions))
    return {
        "type": UNKNOWN_VIOLATION,
        "message": f"no version {pinned!r} of the rule for {name}: the plan has {have}",
        "property": "event_version",
        "meta": {"instancePath": "/context/protocols", "schemaPath": ""},
    }


def invalid_event_violation(problem: str) -> Violation:
    """Why an event could not be judged by its rule at all (quarantined as ``invalid-event``)."""
    return {"type": INVALID_EVENT, "message": cut_text(problem)}


def unknown_violation(message: str) -> Violation:
    return {"type": UNKNOWN_VIOLATION, "message": message, "property": "", "meta": {}}


def violations_of(
    errors: Iterable[jsonschema_rs.ValidationError],
    event: Any,
    root_schema: Mapping[str, Any],
    located_cache: dict[tuple[Any, ...], Any],
    conditional: bool,
    remembered: dict[tuple[Any, ...], Violation],
) -> list[Violation]:
    """Classify a rule's errors on ``event``; ``located_cache`` (one per rule) remembers where in
    the rule each error points. ``conditional``: the rule has ``then``/``else`` branches (see
    :func:`has_branches`); without, no error needs its evaluation path walked.

    ``remembered`` (one per rule) holds the violations that depend on nothing but where they
    are in the rule and in the event: most invalid events of a rule break it in the same few
    places, and they share one object each (violations are never changed once made)."""
    found: list[Violation] = []
    seen_if: set[tuple[str, str]] = set()
    seen_closed: set[tuple[str, str]] | None = None
    for error in errors:
        instance_at = error.instance_path
        kind = error.kind
        place = None
        if kind.__class__ not in _NAMED:
            place = (kind.__class__, tuple(error.schema_path), tuple(instance_at))
            known = remembered.get(place)
            if known is not None:
                found.append(known)
                if conditional:
                    _add_branches(found, error, instance_at, root_schema, located_cache, seen_if)
                continue
        instance_path = _pointer(instance_at)
        # The engine's schema path is already resolved through local $refs.
        keyword, schema, at_schema, schema_path, kind_of, message = _keyword_at(
            error, root_schema, located_cache
        )
        if isinstance(kind, _REQUIRED):
            name = kind.property
            if keyword == "dependencies":
                kind_of = UNKNOWN_VIOLATION
                message = f"must have property '{name}' when {_dependants(schema, name, error)}"
            else:
                kind_of, message = REQUIRED_MISSING, f"must have required property '{name}'"
            found.append(_violation(kind_of, message, name, instance_path, schema_path))
        elif isinstance(kind, _ADDITIONAL):
            found.extend(_additional(kind.unexpected, instance_path, schema_path))
        elif keyword == "false" and at_schema and at_schema[-1] == "additionalProperties":
            # `additionalProperties: false` beside neither `properties` nor `patternProperties`
            # is reported once per object, as a false schema: every key of it is unplanned.
            closed = node_at(event, instance_at)
            if seen_closed is None:
                seen_closed = set()
            if (schema_path, instance_path) not in seen_closed and isinstance(closed, dict):
                seen_closed.add((schema_path, instance_path))
                planned = schema.get("properties")
                extras = [k for k in closed if not isinstance(planned, dict) or k not in planned]
                found.extend(_additional(extras, instance_path, schema_path))
        else:
            violation = _violation(
                kind_of,
                error.message if message is None else message,
                _last(instance_at),
                instance_path,
                schema_path,
            )
            if (
                place is not None
                and message is not None  # the engine's own message quotes the value
                and len(remembered) < _REMEMBERED_MAX
                and len(instance_path) <= _REMEMBERED_PATH_MAX
                and not any(isinstance(segment, int) for segment in instance_at)
            ):
                remembered[place] = violation
            found.append(violation)
        if conditional:
            _add_branches(found, error, instance_at, root_schema, located_cache, seen_if)
    return found


def _add_branches(
    found: list[Violation],
    error: jsonschema_rs.ValidationError,
    instance_at: Sequence[Any],
    root_schema: Mapping[str, Any],
    located_cache: dict[tuple[Any, ...], Any],
    seen_if: set[tuple[str, str]],
) -> None:
    for if_pointer, branch, consumed in _branches(error, root_schema, located_cache):
        # ajv reports a failed then/else branch also as an `if` error, once per place.
        at = instance_at[:consumed]
        key = (_pointer(at), if_pointer)
        if key in seen_if:
            continue
        seen_if.add(key)
        found.append(
            _violation(
                ADVANCE_RULES_VIOLATION,
                f'must match "{branch}" schema',
                _last(at),
                _pointer(at),
                if_pointer,
            )
        )


def has_branches(schema: Any) -> bool:
    """Whether a rule has a ``then`` or ``else`` beside an ``if`` anywhere (ajv reports a failed
    branch also as an ``if`` error, found by walking each error's evaluation path)."""
    stack = [schema]  # iterative: a rule may be nested deeper than Python's recursion limit
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            if "if" in node and ("then" in node or "else" in node):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _additional(keys: Iterable[str], instance_path: str, schema_path: str) -> list[Violation]:
    return [
        _violation(
            ADDITIONAL_PROPERTIES,
            f"must NOT have additional properties '{key}'",
            key,
            instance_path,
            schema_path,
        )
        for key in keys
    ]


def _violation(
    kind: str, message: str, prop: str, instance_path: str, schema_path: str
) -> Violation:
    return {
        "type": kind,
        "message": message,
        "property": prop,
        "meta": {"instancePath": instance_path, "schemaPath": schema_path},
    }


def _type_of(keyword: str) -> str:
    if keyword == "type":
        return DATATYPE_MISMATCH
    if keyword in ADVANCE_KEYWORDS:
        return ADVANCE_RULES_VIOLATION
    return UNKNOWN_VIOLATION


_REQUIRED = jsonschema_rs.ValidationErrorKind.Required
_ADDITIONAL = jsonschema_rs.ValidationErrorKind.AdditionalProperties
# Kinds whose violations name a property the error carries (not its place): never remembered.
# A kind is an instance of exactly one of the engine's kind classes, so a set finds it.
_NAMED = frozenset([_REQUIRED, _ADDITIONAL, jsonschema_rs.ValidationErrorKind.FalseSchema])
_PATTERN_FAILURES = (
    jsonschema_rs.ValidationErrorKind.BacktrackLimitExceeded,
    jsonschema_rs.ValidationErrorKind.RegexEngineFailure,
)


class _Located(NamedTuple):
    """Where an error points in its rule, and what follows from that alone."""

    keyword: str
    schema: Mapping[str, Any]
    at_schema: list[Any]
    schema_path: str  # the JSON Pointer of at_schema, "#/…"
    kind_of: str  # the violation type
    message: str | None  # None: the engine's own message (a keyword without ajv wording)


def _keyword_at(
    error: jsonschema_rs.ValidationError,
    root: Mapping[str, Any],
    cache: dict[tuple[Any, ...], Any],
) -> _Located:
    """:func:`_keyword_of`, its schema pointer, type and message, remembered per schema path
    and error kind (an event with thousands of errors has them at a handful of places)."""
    kind = error.kind
    key = ("keyword", type(kind), *error.schema_path)
    found: _Located | None = cache.get(key)
    if found is None:
        keyword, value, schema, at_schema = _keyword_of(error, root)
        found = _Located(
            keyword,
            schema,
            at_schema,
            "#" + _pointer(at_schema),
            _type_of(keyword),
            _message(keyword, value, schema, kind),
        )
        if len(cache) < _BRANCH_CACHE_MAX:
            cache[key] = found
    return found


def _keyword_of(
    error: jsonschema_rs.ValidationError, root: Mapping[str, Any]
) -> tuple[str, Any, Mapping[str, Any], list[Any]]:
    """The keyword that failed, its value, the (sub)schema holding it, and its schema path.

    The keyword is the last segment of the engine's schema path (inside ``propertyNames`` that
    is the keyword the name failed, as in ajv), with three exceptions: draft-04's boolean
    ``exclusiveMinimum``/``exclusiveMaximum`` are reported as the bound they modify, a
    pattern the regex engine gave up on is reported as ``pattern`` wherever it sits, and
    ``format: "uuid"``, which the engine checks as a pattern, is reported as the format.
    """
    path = list(error.schema_path)
    parent = node_at(root, path[:-1])
    schema: Mapping[str, Any] = parent if isinstance(parent, Mapping) else {}
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.FalseSchema):
        return "false", False, schema, path
    keyword = str(path[-1]) if path else error.kind.name
    if keyword == "pattern" and uuid_as_pattern(schema):
        keyword = path[-1] = "format"
        return keyword, "uuid", schema, path
    if isinstance(error.kind, _PATTERN_FAILURES):
        if len(path) >= 2 and path[-2] == "patternProperties":
            return "pattern", path[-1], {}, path
        return "pattern", schema.get("pattern"), schema, path
    if keyword in _DRAFT_04_BOUNDS and isinstance(schema.get(keyword), bool):
        keyword = _DRAFT_04_BOUNDS[keyword]
        path[-1] = keyword
    return keyword, schema.get(keyword), schema, path


_DRAFT_04_BOUNDS = {"exclusiveMinimum": "minimum", "exclusiveMaximum": "maximum"}


def uuid_as_pattern(schema: Mapping[str, Any]) -> bool:
    """Whether the engine checks this (sub)schema's ``format: "uuid"`` as a pattern
    (compile.UUID_PATTERN): where it has no ``pattern`` of its own to keep."""
    return schema.get("format") == "uuid" and "pattern" not in schema


def _dependants(
    schema: Mapping[str, Any], missing: str, error: jsonschema_rs.ValidationError
) -> str:
    """ajv's wording of a property dependency: which present property needs ``missing``."""
    instance = error.instance if isinstance(error.instance, dict) else {}
    dependencies = schema.get("dependencies")
    if isinstance(dependencies, Mapping):
        for name, needs in dependencies.items():
            if name in instance and isinstance(needs, list) and missing in needs:
                return f"property {name} is present"
    return "a dependant property is present"


def _branches(
    error: jsonschema_rs.ValidationError,
    root: Mapping[str, Any],
    cache: dict[tuple[Any, ...], Any],
) -> list[tuple[str, str, int]]:
    """:func:`_walk`, remembered per evaluation path: it depends on nothing else."""
    key = tuple(error.evaluation_path)
    branches = cache.get(key)
    if branches is None:
        branches = _walk(key, root)
        if len(cache) < _BRANCH_CACHE_MAX:  # recursive schemas have unbounded paths
            cache[key] = branches
    return branches


_BRANCH_CACHE_MAX = 512
# Violations remembered per rule (violations_of). Their keys are places in events, which
# clients choose: only places named by object keys (not array items, of which one event can
# have thousands), of a bounded length, and a bounded number of them per rule, kept apart from
# the caches above, so no event can make a rule hold much or crowd out what is worth keeping.
_REMEMBERED_MAX = 64
_REMEMBERED_PATH_MAX = 256


def _walk(path: Sequence[Any], root: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """The ``then``/``else`` branches an error's evaluation path took through the rule.

    Each is (pointer to its ``if``, "then" | "else", how many instance path segments lead to
    it). The evaluation path names every ``$ref`` it followed, so the walk resolves each one
    to report the ``if`` where it is written (``#/definitions/card/if``).
    """
    node: Any = root
    pointer: list[Any] = []
    consumed = 0  # instance path segments used up by the schema path walked so far
    branches: list[tuple[str, str, int]] = []
    previous: Any = None
    for segment in path:
        if segment == "$ref" and isinstance(node, Mapping):
            resolved = _resolve_local(root, node.get("$ref"))
            if resolved is None:
                break
            node, pointer = resolved
            previous = segment
            continue
        if isinstance(node, Mapping) and segment in ("then", "else") and "if" in node:
            branches.append(("#" + _pointer([*pointer, "if"]), segment, consumed))
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
        node = node_at(node, [segment])
        pointer = [*pointer, segment]
        previous = segment
    return branches


def _resolve_local(root: Mapping[str, Any], ref: Any) -> tuple[Any, list[Any]] | None:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node: Any = root
    parts: list[Any] = []
    for part in pointer_tokens(ref[1:]):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
            parts.append(part)
        elif isinstance(node, list) and (index := list_index(part, len(node))) is not None:
            node = node[index]
            parts.append(index)
        else:
            return None
    return node, parts


def _message(keyword: str, value: Any, schema: Mapping[str, Any], kind: Any) -> str | None:
    """ajv's wording of a failed keyword; None for a keyword ajv words otherwise."""
    if isinstance(kind, _PATTERN_FAILURES):
        return f'must match pattern "{value}" (not evaluated: too costly for this value)'
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
        case "additionalItems":
            return f"must NOT have more than {len(schema.get('items', []))} items"
        case "false":
            return "boolean schema is false"
    return None


def _pointer(path: Sequence[Any]) -> str:
    """The JSON Pointer of a path ("" for the root); escapes only where a segment needs it."""
    if not path:
        return ""
    text = "/".join(map(str, path))
    if "~" in text or text.count("/") != len(path) - 1:
        return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return "/" + text


def pointer_tokens(pointer: str) -> list[str]:
    """The unescaped reference tokens of a JSON Pointer (RFC 6901): :func:`_pointer` undone."""
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


MISSING = object()


def list_index(token: str, length: int) -> int | None:
    """The array index a JSON Pointer token names, if it is one of ``length`` items: ASCII
    digits only (``str.isdigit`` also takes digits ``int`` refuses), and few enough that no
    token costs more than a short conversion."""
    if token.isascii() and token.isdigit() and len(token) < 19:
        index = int(token)
        if index < length:
            return index
    return None


def node_at(root: Any, path: Sequence[Any]) -> Any:
    """The value ``path`` leads to in ``root``; MISSING where none is. Segments are object keys
    and array indexes: ints (the engine's paths) or their digits (JSON Pointer tokens)."""
    node = root
    for segment in path:
        if isinstance(node, dict):
            node = node.get(segment, MISSING)
            if node is MISSING:
                return MISSING
        elif isinstance(node, list):
            if isinstance(segment, str):
                segment = list_index(segment, len(node))
            if not isinstance(segment, int) or not 0 <= segment < len(node):
                return MISSING
            node = node[segment]
        else:
            return MISSING
    return node


def _last(path: Sequence[Any]) -> str:
    return str(path[-1]) if path else ""
