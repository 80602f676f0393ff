"""Records are byte for byte what writing them in full gives.

The pipeline writes each event once before enforcement and splices the stamps in; it sizes an
item with the batch envelope merged in without merging; and it writes quarantine records from
parts shared by the request. Each shortcut must agree exactly with the straightforward
computation: ``orjson.dumps`` of the stamped event (whatever shape its ``context`` has), of the
merged item, of the quarantine record's object.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from gateway.config import IngestSettings, KafkaSettings
from gateway.enforce.enforcer import Enforcer
from gateway.ingest.normalize import SharedParts, merge_shared, request_info
from gateway.outcomes import QuarantineReason
from gateway.pipeline import Pipeline
from gateway.plans.snapshot import parse_snapshot
from gateway.publish.records import QuarantineRecords, bounded_violations
from tests.records_support import plan_snapshot

RULES = {
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"n": {"type": "number"}},
            "additionalProperties": False,
        }
    },
}
CONTEXTS: list[Any] = [
    None,  # no context key at all
    {},
    {"library": {"name": "x"}, "ip": "1.2.3.4"},
    "not an object",
    {"trackingPlanId": "client-sent", "page": {"path": "/"}},
]


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("omit", [False, True])
@pytest.mark.parametrize("props", [{"n": 1}, {"n": "x"}, {"n": 1, "extra": 2}])
@pytest.mark.parametrize("envelope", [None, {"library": {"name": "env"}, "ip": "9.9.9.9"}])
def test_spliced_record_equals_writing_the_stamped_event(
    context: Any, omit: bool, props: dict[str, Any], envelope: Any
) -> None:
    config = {"global": {"unplannedProperties": "omit" if omit else "forward"}}
    snapshot = parse_snapshot(plan_snapshot(RULES, config))
    source = snapshot.sources[0]
    event: dict[str, Any] = {"type": "track", "userId": "u", "event": "Tagged", "properties": props}
    if context is not None:
        event["context"] = copy.deepcopy(context)
    doc = {"batch": [event], **({"context": envelope} if envelope else {})}
    info = request_info(request_ip="127.0.0.1", envelope=doc)
    pipeline = Pipeline(IngestSettings(), KafkaSettings(), Enforcer())
    [record], tally = pipeline.process(doc["batch"], source, snapshot, info)
    assert sum(tally.forwarded.values()) == 1
    [stamped] = doc["batch"]  # the pipeline writes and stamps each event in place
    assert record.value == orjson.dumps(stamped)
    assert stamped["context"]["trackingPlanId"] == "tp_records"


OWN = [None, "text", {}, {"ip": "own"}, {"new": [1, 2]}, {"ip": None, "library": 1, "z": "é"}]
SHARED: list[dict[str, Any]] = [{}, {"ip": "1.1.1.1"}, {"ip": "x", "library": {"a": [1, {}]}}]


@pytest.mark.parametrize("own", OWN)
@pytest.mark.parametrize("shared", SHARED)
def test_merged_size_is_exact_without_merging(own: Any, shared: dict[str, Any]) -> None:
    info = request_info(request_ip="p", envelope={"context": shared, "integrations": {"All": True}})
    event: dict[str, Any] = {"type": "track"}
    if own is not None:
        event["context"] = copy.deepcopy(own)
    size = len(orjson.dumps(event)) + SharedParts(info).added_bytes(event)
    merge_shared(event, info)
    assert size == len(orjson.dumps(event))


QUARANTINE_CASES: list[Any] = [
    ("violation", "tp_1", 3, [{"type": "Datatype-Mismatch", "message": "must be number"}]),
    ("invalid-event", None, None, [{"type": "Invalid-Event", "message": "x" * 1000}]),
    ("unplanned-event", 'tp_\u00e9"\\', 0, [{"type": "Unplanned-Event"}] * 150),
]


@pytest.mark.parametrize(("reason", "plan_id", "version", "violations"), QUARANTINE_CASES)
@pytest.mark.parametrize("event", [{"type": "track", "n": "\u2028"}, "stub"])
def test_quarantine_records_are_the_documented_object_written_once(
    reason: str, plan_id: str | None, version: int | None, violations: list[Any], event: Any
) -> None:
    # Written from parts shared by the request's records; the same bytes as writing the
    # record's object in full, its event embedded as written and its violations bounded.
    stub = {"type": "track", "_truncated": True}
    records = QuarantineRecords('src_"1', "2026-11-01T10:00:00.000Z")
    written = orjson.dumps(event) if event != "stub" else stub
    for _ in range(2):  # the second time from the request's shared head
        value = records.value(QuarantineReason(reason), plan_id, version, violations, written)
        assert value == orjson.dumps(
            {
                "reason": reason,
                "sourceId": 'src_"1',
                "trackingPlanId": plan_id,
                "trackingPlanVersion": version,
                "violations": bounded_violations(violations),
                "violationsTotal": len(violations),
                "receivedAt": "2026-11-01T10:00:00.000Z",
                "event": event if event != "stub" else stub,
            }
        )
    assert len(orjson.loads(value)["violations"]) == min(len(violations), 100)


@pytest.mark.parametrize("setting", ["omit", "drop"])
def test_violations_shared_by_events_are_left_as_they_were_made(setting: str) -> None:
    # A violation that depends only on its place is made once per rule and shared by every
    # event that has it: stamping, omitting, bounding and writing records only read it.
    config = {"global": {"unplannedProperties": setting, "anyOtherViolation": setting}}
    snapshot = parse_snapshot(plan_snapshot(RULES, config))
    source, pipeline = snapshot.sources[0], Pipeline(IngestSettings(), KafkaSettings(), Enforcer())
    made = {
        "type": "Datatype-Mismatch",
        "message": "must be number",
        "property": "n",
        "meta": {
            "instancePath": "/properties/n",
            "schemaPath": "#/properties/properties/properties/n/type",
        },
    }
    seen = []
    for _ in range(3):  # requests
        batch: list[dict[str, Any]] = [
            {
                "type": "track",
                "userId": f"u{i}",
                "event": "Tagged",
                "properties": {"n": "x", "extra": i},
            }
            for i in range(2)
        ]
        info = request_info(request_ip="127.0.0.1", envelope={"batch": batch})
        records, _ = pipeline.process(batch, source, snapshot, info)
        for record, event in zip(records, batch, strict=True):
            written = orjson.loads(record.value)
            if setting == "omit":  # forwarded, without the unplanned key
                assert written["properties"] == {"n": "x"}
                [stamped] = event["context"]["violationErrors"]
                seen.append(stamped)
            else:  # quarantined, with the unplanned key
                assert written["event"]["properties"]["extra"] in (0, 1)
                assert made in written["violations"]
    if setting == "omit":
        assert all(violation is seen[0] for violation in seen)  # one object, shared
        assert seen[0] == made  # as it was made, after three requests used it
