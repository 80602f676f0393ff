"""Compiling one plan event's rules: a fast validator, plus a full collector only when needed.

- The fast path is a fastjsonschema function: valid events never touch anything else.
- The collector (jsonschema ``iter_errors``) is built lazily, the first time an event of this
  rule is invalid, and reports *every* violation.
- Both use the same draft (04/06/07 by ``$schema``, draft-07 otherwise), the same format checks
  and no defaults (validation never modifies the event), so they agree on valid vs invalid.
- No ``$ref`` is ever fetched: custom types arrive inline as ``$defs``/``definitions``.
- A rule that fails to compile becomes a :class:`CompiledRule` with ``error`` set; it affects
  only events of that rule (reported as ``Unknown-Violation``), never the rest of the plan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema
from jsonschema import Draft4Validator, Draft6Validator, Draft7Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator

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


def draft_of(schema: Mapping[str, Any]) -> tuple[str, type[Validator]]:
    """The draft URI and jsonschema class; anything but 04/06 is treated as draft-07."""
    declared = schema.get("$schema", "")
    if isinstance(declared, str):
        if "draft-04" in declared:
            return declared, Draft4Validator
        if "draft-06" in declared:
            return declared, Draft6Validator
    return DRAFT_07, Draft7Validator


class CompiledRule:
    __slots__ = ("_collector", "_fast", "_validator_cls", "error", "schema")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.error: str | None = None
        self._fast: Callable[[Any], Any] | None = None
        self._collector: Validator | None = None
        draft_uri, self._validator_cls = draft_of(schema)
        try:
            self._validator_cls.check_schema(dict(schema))
        except SchemaError as exc:
            self.error = f"invalid JSON schema: {exc.message}"
            return
        except RecursionError:
            self.error = "invalid JSON schema: nesting too deep"
            return
        try:
            self._fast = fastjsonschema.compile(
                {**schema, "$schema": draft_uri},
                handlers=_HANDLERS,
                formats=FORMATS,
                use_default=False,  # defaults would be written into the event
            )
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            self.error = f"rule failed to compile: {exc}"
        except Exception as exc:
            # A valid schema the code generator cannot handle: validate this rule with the
            # collector alone — slower, but correct.
            log.warning("fast validator unavailable for a rule (%r); using jsonschema", exc)
            self._fast = self._collect_validator().validate

    def _collect_validator(self) -> Validator:
        if self._collector is None:
            self._collector = self._validator_cls(self.schema, format_checker=format_checker())
        return self._collector

    def is_valid(self, event: Any) -> bool:
        if self._fast is None:
            return False
        try:
            self._fast(event)
        except (fastjsonschema.JsonSchemaValueException, ValidationError):
            return False
        return True

    def violations(self, event: Any) -> list[Violation]:
        """Every violation of an event :meth:`is_valid` rejected."""
        if self.error is not None:
            return [unknown_violation(self.error)]
        found = violations_of(self._collect_validator().iter_errors(event), self.schema)
        if not found:
            # Should never happen (the hypothesis suite checks agreement); never turn an
            # invalid event valid because the two validators differ on an edge case.
            found = [unknown_violation("event rejected by the compiled rule")]
        return found
