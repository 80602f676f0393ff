"""Compiling one plan event's rule: one jsonschema-rs validator gives verdict and violations.

- The draft is chosen by ``$schema`` (04 and 06 by name, draft-07 for anything else); formats
  are validated by the engine's own checks, which run in linear time.
- ``pattern`` and ``patternProperties`` run on a regex engine with hard bounds: patterns
  without backreferences or look-around are evaluated in linear time, the rest by a
  backtracking engine that gives up after :data:`BACKTRACK_LIMIT` steps. A pattern that cannot
  be evaluated within the bound is a violation of that property (see ``violations.py``), never
  a hang and never a silent pass.
- No ``$ref`` is ever fetched: custom types arrive inline as ``$defs``/``definitions``, and a
  rule with any other reference fails to compile.
- A rule that fails to compile becomes a :class:`CompiledRule` with ``error`` set; it affects
  only events of that rule (reported as ``Unknown-Violation``), never the rest of the plan.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

import jsonschema_rs

from gateway.enforce.violations import (
    Violation,
    has_branches,
    unknown_violation,
    uuid_as_pattern,
    violations_of,
)

DRAFT_04 = "http://json-schema.org/draft-04/schema#"
DRAFT_06 = "http://json-schema.org/draft-06/schema#"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"

# Steps the backtracking regex engine may take for one match before it gives up. Measured with
# catastrophic patterns on 32 KB strings, 10,000 steps cost about a millisecond; real patterns
# (slugs, ids, e-mail shapes) never come near it, and most never backtrack at all.
BACKTRACK_LIMIT = 10_000
# Compiled pattern programs and their lazy DFAs are bounded too, so a rule's pattern cannot
# take unbounded memory either (the regex crate's defaults are 10 MiB and 2 MiB).
REGEX_SIZE_LIMIT = 1 << 20
DFA_SIZE_LIMIT = 1 << 20

_PATTERN_OPTIONS = jsonschema_rs.FancyRegexOptions(
    backtrack_limit=BACKTRACK_LIMIT,
    size_limit=REGEX_SIZE_LIMIT,
    dfa_size_limit=DFA_SIZE_LIMIT,
)

# `format: "uuid"` (not a format of drafts 04-07; ajv-formats has it). The engine checks it as
# this pattern, natively (see _engine_form); the callback below only where a subschema has a
# pattern of its own.
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN)


def _is_uuid(value: str) -> bool:
    # A fixed-length pattern on at most 36 characters: constant time.
    return len(value) == 36 and _UUID.fullmatch(value) is not None


# Formats beyond the draft's own that ajv-formats checks and tracking plans use.
_EXTRA_FORMATS = {"uuid": _is_uuid}

_VALIDATORS: dict[str, type[jsonschema_rs.Validator]] = {
    DRAFT_04: jsonschema_rs.Draft4Validator,
    DRAFT_06: jsonschema_rs.Draft6Validator,
    DRAFT_07: jsonschema_rs.Draft7Validator,
}


def draft_of(schema: Mapping[str, Any]) -> str:
    """The draft a rule is validated with: 04 or 06 when its ``$schema`` says so, else 07."""
    declared = schema.get("$schema", "")
    if isinstance(declared, str):
        if "draft-04" in declared:
            return DRAFT_04
        if "draft-06" in declared:
            return DRAFT_06
    return DRAFT_07


def _refuse_remote(uri: str) -> NoReturn:
    # The pre-check in CompiledRule names the reference first; this is the engine's backstop.
    raise ValueError(f"remote $ref {uri!r} is not fetched")


# Where subschemas sit in drafts 04-07: under these keywords, as one, a list or a map.
_SUBSCHEMA = frozenset(
    [
        "additionalItems",
        "additionalProperties",
        "contains",
        "else",
        "if",
        "items",
        "not",
        "propertyNames",
        "then",
    ]
)
_SUBSCHEMA_LIST = frozenset(["allOf", "anyOf", "items", "oneOf"])
_SUBSCHEMA_MAP = frozenset(
    ["$defs", "definitions", "dependencies", "patternProperties", "properties"]
)


def _subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    """The schema and every object subschema in it (not enum/const values that look alike)."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key, value in schema.items():
        if key in _SUBSCHEMA_MAP and isinstance(value, dict):
            for sub in value.values():
                yield from _subschemas(sub)
        elif key in _SUBSCHEMA_LIST and isinstance(value, list):
            for sub in value:
                yield from _subschemas(sub)
        elif key in _SUBSCHEMA:
            yield from _subschemas(value)


def _remote_ref(schema: Mapping[str, Any]) -> str | None:
    for sub in _subschemas(schema):
        ref = sub.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return ref
    return None


# Annotations in drafts 04-07 (ajv ignores them too) that the engine would assert.
_ANNOTATIONS = frozenset(["contentEncoding", "contentMediaType"])


def _engine_form(schema: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema as the engine should see it, and whether it needs the format callbacks.

    A copy, if anything changes: without :data:`_ANNOTATIONS`, and with ``format: "uuid"`` as
    :data:`UUID_PATTERN` (a Python format callback costs about a microsecond a value, and
    slows every check of a rule that has one; violations still name the format, see
    violations.py). Both replace or remove leaf keywords only, so every other keyword keeps
    its schema path.
    """
    if all(_ANNOTATIONS.isdisjoint(s) and s.get("format") != "uuid" for s in _subschemas(schema)):
        return dict(schema), False
    form = copy.deepcopy(dict(schema))
    callbacks = False
    for sub in _subschemas(form):
        for keyword in _ANNOTATIONS:
            sub.pop(keyword, None)
        if uuid_as_pattern(sub):
            del sub["format"]
            sub["pattern"] = UUID_PATTERN
        elif sub.get("format") == "uuid":
            callbacks = True
    return form, callbacks


def _compile(schema: Mapping[str, Any]) -> tuple[jsonschema_rs.Validator | None, str | None]:
    try:
        remote = _remote_ref(schema)
        engine_schema, callbacks = _engine_form(schema)
    except RecursionError:
        return None, "invalid JSON schema: nesting too deep"
    if remote is not None:
        return None, (
            f"rule failed to compile: remote $ref {remote!r} is not fetched; "
            "define it inline under $defs or definitions"
        )
    try:
        validator = _VALIDATORS[draft_of(schema)](
            engine_schema,
            formats=_EXTRA_FORMATS if callbacks else None,
            validate_formats=True,
            retriever=_refuse_remote,
            pattern_options=_PATTERN_OPTIONS,
        )
    except jsonschema_rs.ValidationError as exc:  # the rule fails its draft's meta-schema
        return None, f"invalid JSON schema: {exc.message}"
    except jsonschema_rs.ReferencingError as exc:
        return None, f"rule failed to compile: {exc.message}"
    except ValueError as exc:  # the engine's nesting limit, among others
        reason = "nesting too deep" if "ecursion" in str(exc) else str(exc)
        return None, f"invalid JSON schema: {reason}"
    return validator, None


# Which of the engine's two calls a rule's events go to first (see CompiledRule.check). The
# verdict alone is the cheaper call on a valid event; on an invalid one it is wasted, as the
# violations need a second, full pass. A rule whose events are often invalid is checked by
# collecting the violations at once: an invalid event moves the score up by INVALID_WEIGHT, a
# valid one down by 1, so above one invalid event in (INVALID_WEIGHT + 1) the score climbs.
INVALID_WEIGHT = 3
SCORE_MAX = 32
ERRORS_FIRST_SCORE = 16


class CompiledRule:
    """One rule, compiled once; shared by every plan event whose rules are equal."""

    __slots__ = ("_branches", "_located", "_remembered", "_score", "_validator", "error", "schema")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._validator, self.error = _compile(schema)
        # Schema paths already walked for violations (see violations.py), per rule.
        self._located: dict[tuple[Any, ...], Any] = {}
        self._remembered: dict[tuple[Any, ...], Violation] = {}
        self._branches = has_branches(schema)
        self._score = 0  # how often this rule's events were invalid lately (see above)

    def check(self, event: Any, collect: bool = True) -> list[Violation] | None:
        """The event's violations: [] when it is valid; None when it is invalid and ``collect``
        is false (the violations were not wanted, so not collected)."""
        score = self._score
        if collect and score >= ERRORS_FIRST_SCORE:
            found = self._collect(event)
        elif self.is_valid(event):
            if score:
                self._score = score - 1
            return []
        elif collect:
            found = self.violations(event)
        else:
            return None
        if found:
            self._score = min(score + INVALID_WEIGHT, SCORE_MAX)
        elif score:
            self._score = score - 1
        return found

    def is_valid(self, event: Any) -> bool:
        if self._validator is None:
            return False
        try:
            return self._validator.is_valid(event)
        except ValueError:
            # Nested deeper than the engine follows: it cannot be checked, so it is not valid;
            # violations() says why.
            return False

    def violations(self, event: Any) -> list[Violation]:
        """Every violation of an event :meth:`is_valid` rejected."""
        found = self._collect(event)
        if not found:
            # Never turn an event the verdict rejected into a valid one.
            found = [unknown_violation("event rejected by the compiled rule")]
        return found

    def _collect(self, event: Any) -> list[Violation]:
        """Every violation of the event; [] when it has none."""
        if self._validator is None:
            return [unknown_violation(self.error or "rule failed to compile")]
        try:
            return violations_of(
                self._validator.iter_errors(event),
                event,
                self.schema,
                self._located,
                self._branches,
                self._remembered,
            )
        except ValueError:
            return [unknown_violation("event nested too deeply to validate")]
