"""Compiling one plan event's rules: a fast validator, plus a full collector only when needed.

- The fast path is a fastjsonschema function: valid events never touch anything else.
- The collector (jsonschema ``iter_errors``) is built lazily, the first time an event of this
  rule is invalid, and reports *every* violation.
- Both use the same draft (04/06/07 by ``$schema``, draft-07 otherwise), the same format checks
  and no defaults (validation never modifies the event), so they agree on valid vs invalid.
  Where the two libraries still differ: the collector reads ``pattern``, ``multipleOf`` and
  ``uniqueItems`` as the generated code does (and ``additionalItems`` without crashing); the
  fast path gets the schema spelled as it understands it (:func:`_for_fast_path`); and a rule
  fastjsonschema would get wrong is validated by the collector alone (:func:`_needs_collector`,
  an unsatisfiable ``required``, a generator crash). ``tests/test_enforce_agreement.py``
  checks the agreement on generated schemas and events.
- No ``$ref`` is ever fetched: custom types arrive inline as ``$defs``/``definitions``.
- A rule that fails to compile becomes a :class:`CompiledRule` with ``error`` set; it affects
  only events of that rule (reported as ``Unknown-Violation``), never the rest of the plan.
"""

from __future__ import annotations

import copy
import logging
import math
import re
from collections.abc import Callable, Hashable, Iterator, Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any

import fastjsonschema
from jsonschema import Draft4Validator, Draft6Validator, Draft7Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.exceptions import NoSuchResource

from gateway.enforce.formats import FORMATS, format_checker
from gateway.enforce.violations import Violation, unknown_violation, violations_of

log = logging.getLogger(__name__)

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
REFUSED_SCHEMES = ("http", "https", "file", "ftp", "ftps", "data", "urn", "")


def _refuse_remote(uri: str) -> Any:
    raise fastjsonschema.JsonSchemaDefinitionException(
        f"remote $ref {uri!r} is not fetched; define it inline under $defs or definitions"
    )


_HANDLERS = dict.fromkeys(REFUSED_SCHEMES, _refuse_remote)

# fastjsonschema (draft-07) decodes these and rejects what fails to decode; in JSON Schema
# draft-07, and in jsonschema, they are annotations only.
_ASSERTED_ANNOTATIONS = frozenset(["contentEncoding", "contentMediaType"])
# fastjsonschema refuses, at compile time, a `required` key that `additionalProperties: false`
# forbids. The schema is valid (ajv compiles it; the object is just unsatisfiable), so such a
# rule must still report Required-Missing / Additional-Properties like any other.
_UNSATISFIABLE_REQUIRED = "are required but not allowed"


def draft_of(schema: Mapping[str, Any]) -> tuple[str, type[Validator]]:
    """The draft URI and jsonschema class; anything but 04/06 is treated as draft-07."""
    declared = schema.get("$schema", "")
    if isinstance(declared, str):
        if "draft-04" in declared:
            return declared, Draft4Validator
        if "draft-06" in declared:
            return declared, Draft6Validator
    return DRAFT_07, Draft7Validator


# --- the collector reads these keywords the way the fast path does ----------------------
#
# pattern, multipleOf and uniqueItems below are the *same* tests fastjsonschema generates (its
# code is not ours to change), so the collector cannot disagree with it.

# fastjsonschema turns every `$` not preceded by a backslash into `\Z`: ECMA-262 `$` (no
# multiline flag) only matches at the very end, whereas Python's also matches before a final
# "\n" -- so "^[a-z]+$" must reject "abc\n". jsonschema uses the pattern as Python reads it.
_DOLLAR = re.compile(r"(?<!\\)\$")


@lru_cache(maxsize=1024)
def ecma_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(_DOLLAR.sub(r"\\Z", pattern))
    except re.error:
        # e.g. "[$]" becomes "[\Z]": fastjsonschema fails to build the rule, which is then
        # validated by the collector alone (see CompiledRule), with the pattern as written.
        return re.compile(pattern)


def is_multiple_of(value: int | float, divisor: int | float) -> bool:
    """fastjsonschema's multipleOf: exact for ints, decimal (not binary) for float divisors.

    jsonschema divides floats (19.01 / 0.01 = 1901.0000000000002, so not a multiple) and takes
    ``%`` for int divisors (1e20 % 3 != 0, while 1e20 / 3 is a whole float). Out of range it
    also follows fastjsonschema: a quotient of +inf is "not a multiple".
    """
    if isinstance(value, int) and isinstance(divisor, int):
        return value % divisor == 0
    try:
        if isinstance(divisor, float):
            quotient: Decimal | float = Decimal(repr(value)) / Decimal(repr(divisor))
        else:
            quotient = value / divisor
        return int(quotient) == quotient and value / divisor != math.inf
    except (ArithmeticError, ValueError):
        return False


def _canonical(value: Any) -> Hashable:
    # Equal JSON values get equal keys: 1 and 1.0 alike, True and 1 apart.
    if isinstance(value, dict):
        return frozenset((k, _canonical(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, bool):
        return (bool, value)
    return value  # type: ignore[no-any-return]


def has_unique_items(items: list[Any]) -> bool:
    """jsonschema sorts and compares neighbours, so [[1], [True], [1]] passes as unique."""
    return len(items) == len({_canonical(item) for item in items})


def _pattern(
    validator: Validator, pattern: str, instance: Any, _: Any
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _multiple_of(
    validator: Validator, divisor: int | float, instance: Any, _: Any
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "number") and not is_multiple_of(instance, divisor):
        yield ValidationError(f"{instance!r} is not a multiple of {divisor}")


def _unique_items(
    validator: Validator, unique: bool, instance: Any, _: Any
) -> Iterator[ValidationError]:
    if unique and validator.is_type(instance, "array") and not has_unique_items(instance):
        yield ValidationError(f"{instance!r} has non-unique elements")


Keyword = Callable[[Validator, Any, Any, Any], Iterator[ValidationError]]


def _tuple_items_only(additional_items: Keyword) -> Keyword:
    """jsonschema's additionalItems crashes (``len(True)``) beside a boolean ``items``; like
    fastjsonschema and the spec, it only applies beside the tuple (list) form of ``items``."""

    def keyword(
        validator: Validator, extra: Any, instance: Any, schema: Any
    ) -> Iterator[ValidationError]:
        if isinstance(schema.get("items"), list):
            yield from additional_items(validator, extra, instance, schema)

    return keyword


_SHARED_KEYWORDS: dict[str, Keyword] = {
    "pattern": _pattern,
    "multipleOf": _multiple_of,
    "uniqueItems": _unique_items,
}
_COLLECTORS: dict[type[Validator], type[Validator]] = {
    cls: validators.extend(  # type: ignore[no-untyped-call]  # not in the stubs
        cls,
        {
            **_SHARED_KEYWORDS,
            "additionalItems": _tuple_items_only(cls.VALIDATORS["additionalItems"]),
        },
    )
    for cls in (Draft4Validator, Draft6Validator, Draft7Validator)
}


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


def _no_retrieve(uri: str) -> Any:
    raise NoSuchResource(uri)


# The collector's reference registry: local references only, nothing is ever retrieved.
_NO_REMOTE: Registry[Any] = Registry(retrieve=_no_retrieve)  # type: ignore[call-arg]


def _skipping_valid_properties(base: type[Validator], draft_uri: str) -> type[Validator]:
    """``base`` whose ``properties`` keyword skips values a compiled check finds valid.

    Collecting every error otherwise walks every property of an invalid event, most of which
    are valid; the checks (fastjsonschema, compiled when a subschema is first met) make that
    walk go only where the errors are. A subschema with a ``$ref`` or ``$id`` (which resolve
    against the whole rule) or one the fast path must not judge gets no check: the collector
    descends into it as before. One class per rule, so the checks live as long as the rule.
    """
    checks: dict[int, tuple[Any, Callable[[Any], bool] | None]] = {}

    def check_of(subschema: Any) -> Callable[[Any], bool] | None:
        entry = checks.get(id(subschema))
        if entry is None:
            # The entry holds the subschema, so its id is not reused while the entry exists.
            entry = checks[id(subschema)] = (subschema, _subschema_check(subschema, draft_uri))
        return entry[1]

    def properties(
        validator: Validator, properties: Any, instance: Any, schema: Any
    ) -> Iterator[ValidationError]:
        if not validator.is_type(instance, "object"):
            return
        for name, subschema in properties.items():
            if name in instance:
                check = check_of(subschema)
                if check is not None and check(instance[name]):
                    continue
                yield from validator.descend(  # type: ignore[attr-defined]  # not in Protocol
                    instance[name], subschema, path=name, schema_path=name
                )

    extended: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
        base, {"properties": properties}
    )
    return extended


def _subschema_check(subschema: Any, draft_uri: str) -> Callable[[Any], bool] | None:
    if not isinstance(subschema, dict) or _needs_collector(subschema):
        return None
    if any("$ref" in s or "$id" in s or "id" in s for s in _subschemas(subschema)):
        return None
    try:
        fast = _compile_fast(subschema, draft_uri)
    except Exception:
        return None

    def check(value: Any) -> bool:
        try:
            fast(value)
        except Exception:  # invalid, or the generated code could not tell: descend
            return False
        return True

    return check


def _compile_fast(schema: Mapping[str, Any], draft_uri: str) -> Callable[[Any], Any]:
    """The fastjsonschema function of a schema (raises what fastjsonschema raises)."""
    compiled: Callable[[Any], Any] = fastjsonschema.compile(
        _for_fast_path(schema, draft_uri),
        handlers=_HANDLERS,
        formats=FORMATS,
        use_default=False,  # defaults would be written into the event
        # Only the verdict is used (violations come from the collector): without the details
        # the generated code is 40 % smaller and compiles twice as fast, which matters when a
        # refresh recompiles rules while requests are served.
        detailed_exceptions=False,
    )
    return compiled


def _needs_collector(schema: Mapping[str, Any]) -> bool:
    """Whether fastjsonschema would assert a keyword that is only an annotation."""
    return any(not _ASSERTED_ANNOTATIONS.isdisjoint(sub) for sub in _subschemas(schema))


def _for_fast_path(schema: Mapping[str, Any], draft_uri: str) -> dict[str, Any]:
    """A copy of the schema, spelled the way fastjsonschema reads it as jsonschema does."""
    fast = copy.deepcopy(dict(schema))
    fast["$schema"] = draft_uri
    if "draft-04" in draft_uri:
        for sub in _subschemas(fast):
            # draft-04 allows `additionalItems: true`; fastjsonschema's draft-04 generator
            # takes only `false` or an object there ("definition must be an object").
            if sub.get("additionalItems") is True:
                sub["additionalItems"] = {}
    return fast


class CompiledRule:
    __slots__ = (
        "_collector",
        "_draft_uri",
        "_fast",
        "_located",
        "_validator_cls",
        "error",
        "schema",
    )

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.error: str | None = None
        self._fast: Callable[[Any], Any] | None = None
        self._collector: Validator | None = None
        self._located: dict[tuple[Any, ...], Any] = {}
        self._draft_uri, self._validator_cls = draft_of(schema)
        try:
            self._validator_cls.check_schema(dict(schema))
        except SchemaError as exc:
            self.error = f"invalid JSON schema: {exc.message}"
            return
        except RecursionError:
            self.error = "invalid JSON schema: nesting too deep"
            return
        remote = _remote_ref(schema)
        if remote is not None:
            # Checked here, not only by fastjsonschema's handlers: rules validated by the
            # collector alone must never fetch either (that would block the event loop).
            self.error = (
                f"rule failed to compile: remote $ref {remote!r} is not fetched; "
                "define it inline under $defs or definitions"
            )
            return
        if _needs_collector(schema):
            self._fast = self._collector_verdict
            return
        try:
            self._fast = _compile_fast(schema, self._draft_uri)
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            if _UNSATISFIABLE_REQUIRED in str(exc):
                self._fast = self._collector_verdict
            else:
                self.error = f"rule failed to compile: {exc}"
        except Exception as exc:
            # A valid schema the code generator cannot handle: validate this rule with the
            # collector alone — slower, but correct.
            log.warning("fast validator unavailable for a rule (%r); using jsonschema", exc)
            self._fast = self._collector_verdict

    def _collect_validator(self) -> Validator:
        if self._collector is None:
            collector_cls = _skipping_valid_properties(
                _COLLECTORS[self._validator_cls], self._draft_uri
            )
            self._collector = collector_cls(
                self.schema, format_checker=format_checker(), registry=_NO_REMOTE
            )
        return self._collector

    def _collector_verdict(self, event: Any) -> None:
        """The fast path of a rule fastjsonschema cannot be trusted with."""
        if not self._collect_validator().is_valid(event):
            raise ValidationError("event rejected by the collector")

    def is_valid(self, event: Any) -> bool:
        if self._fast is None:
            return False
        try:
            self._fast(event)
        except (fastjsonschema.JsonSchemaValueException, ValidationError):
            return False
        except RecursionError:
            # Nested deeper than the validators can follow (orjson accepts 1024 levels): it
            # cannot be checked, so it is not valid; violations() says why.
            return False
        except Exception:
            # The generated code can raise on an extreme value (an OverflowError in arithmetic,
            # say); the collector decides instead of failing the request.
            if self._fast == self._collector_verdict:
                raise
            return self._collect_validator().is_valid(event)
        return True

    def errors(self, event: Any) -> list[ValidationError]:
        """The collector's errors for an event (none if, and only if, it is valid)."""
        return list(self._collect_validator().iter_errors(event))

    def violations(self, event: Any) -> list[Violation]:
        """Every violation of an event :meth:`is_valid` rejected."""
        if self.error is not None:
            return [unknown_violation(self.error)]
        try:
            found = violations_of(self.errors(event), self.schema, self._located)
        except RecursionError:
            return [unknown_violation("event nested too deeply to validate")]
        if not found:
            # Should never happen (the hypothesis suite checks agreement); never turn an
            # invalid event valid because the two validators differ on an edge case.
            found = [unknown_violation("event rejected by the compiled rule")]
        return found
