"""The ``engines`` scenario: the evidence for the validation engine, per event, on the corpus.

Each engine validates the same normalized corpus events against the same compiled rules, in
this process:

- ``jsonschema-rs``: the gateway's own :class:`~gateway.enforce.compile.CompiledRule` (verdict
  with ``is_valid``, violations with ``iter_errors``, classified as the gateway reports them);
- ``fastjsonschema``: a compiled function per rule, with detailed exceptions; it stops at the
  first error, so its "violations" cost is that of the first error only;
- ``jsonschema``: a cached ``Draft7Validator`` per rule with format checking (``is_valid``,
  ``iter_errors``), the reference implementation.

Figures: microseconds per event for the verdict on mostly valid events (5 % violating), for
collecting the violations of violating events, the compile time per rule, and how many verdicts
differ from the reference on the events measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import fastjsonschema
import jsonschema

from bench.corpus import Corpus
from gateway.enforce.compile import CompiledRule
from gateway.ingest.normalize import normalize, request_info

EVENTS = 5_000
Verdict = Callable[[Any], bool]
Collect = Callable[[Any], Any]


def _corpus_events(corpus: Corpus, count: int, violating: float) -> list[dict[str, Any]]:
    info = request_info(request_ip="127.0.0.1")
    events = corpus.make_events(count, violating)
    for event in events:
        normalize(event, info)
    return events


def _rule_key(event: dict[str, Any]) -> tuple[str, str]:
    return event["type"], event.get("event", "") if event["type"] == "track" else ""


def _fast(schema: dict[str, Any]) -> tuple[Verdict, Collect]:
    check = fastjsonschema.compile(schema, use_default=False)

    def verdict(event: Any) -> bool:
        try:
            check(event)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def first_error(event: Any) -> Any:
        try:
            check(event)
        except fastjsonschema.JsonSchemaValueException as exc:
            return [exc.message]
        return []

    return verdict, first_error


def _reference(schema: dict[str, Any]) -> tuple[Verdict, Collect]:
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    return validator.is_valid, lambda event: list(validator.iter_errors(event))


def _rs(schema: dict[str, Any]) -> tuple[Verdict, Collect]:
    rule = CompiledRule(schema)
    return rule.is_valid, rule.violations


ENGINES: dict[str, Callable[[dict[str, Any]], tuple[Verdict, Collect]]] = {
    "jsonschema-rs": _rs,
    "fastjsonschema": _fast,
    "jsonschema": _reference,
}


Pair = tuple[tuple[Verdict, Collect], dict[str, Any]]


def _pairs(compiled: dict[tuple[str, str], tuple[Verdict, Collect]], events: Any) -> list[Pair]:
    return [(compiled[_rule_key(e)], e) for e in events if _rule_key(e) in compiled]


def _per_event_us(step: int, pairs: list[Pair]) -> float:
    """Microseconds per event of the engine's verdict (step 0) or collection (step 1)."""
    started = time.perf_counter()
    for engine, event in pairs:
        engine[step](event)
    return (time.perf_counter() - started) / len(pairs) * 1e6


def engines(duration_s: float) -> dict[str, Any]:
    """Per-event cost of each engine; ``duration_s`` scales the number of events."""
    corpus = Corpus()
    plan = corpus.tracking_plan()
    schemas = {(e["eventType"], e["name"]): e["rules"] for e in plan["events"]}
    count = max(500, int(EVENTS * duration_s / 10))
    mostly_valid = _corpus_events(corpus, count, 0.05)
    violating = _corpus_events(corpus, count, 1.0)
    results: dict[str, Any] = {}
    verdicts: dict[str, list[bool]] = {}
    for name, build in ENGINES.items():
        started = time.perf_counter()
        compiled = {key: build(schema) for key, schema in schemas.items()}
        compile_ms = (time.perf_counter() - started) / len(schemas) * 1000
        valid_pairs = _pairs(compiled, mostly_valid)
        bad_pairs = _pairs(compiled, violating)
        _per_event_us(0, valid_pairs[:200])  # warm up: lazy compilation, caches
        verdict_us = _per_event_us(0, valid_pairs)
        rejected = [(engine, event) for engine, event in bad_pairs if not engine[0](event)]
        violations_us = _per_event_us(1, rejected) if rejected else None
        verdicts[name] = [engine[0](event) for engine, event in valid_pairs + bad_pairs]
        results[name] = {
            "verdict_us": round(verdict_us, 2),
            "violations_us": None if violations_us is None else round(violations_us, 2),
            "compile_ms": round(compile_ms, 3),
        }
    reference = verdicts["jsonschema"]
    for name, figures in results.items():
        figures["disagreements"] = sum(
            a != b for a, b in zip(verdicts[name], reference, strict=True)
        )
    results["events"] = len(reference)
    results["disagreements_without_formats"] = _disagreements_without_formats(
        schemas, mostly_valid + violating
    )
    return results


def without_formats(schema: Any) -> Any:
    """A schema with every ``format`` keyword left out."""
    if isinstance(schema, dict):
        return {k: without_formats(v) for k, v in schema.items() if k != "format"}
    if isinstance(schema, list):
        return [without_formats(v) for v in schema]
    return schema


def _disagreements_without_formats(
    schemas: dict[tuple[str, str], dict[str, Any]], events: list[dict[str, Any]]
) -> int:
    """Verdicts of jsonschema-rs and the reference that differ once formats are left out
    (format checks differ between implementations by design; everything else must agree)."""
    plain = {key: without_formats(schema) for key, schema in schemas.items()}
    ours = _pairs({key: _rs(schema) for key, schema in plain.items()}, events)
    theirs = _pairs({key: _reference(schema) for key, schema in plain.items()}, events)
    return sum(a[0](event) != b[0](event) for (a, event), (b, _) in zip(ours, theirs, strict=True))
