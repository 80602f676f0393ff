"""`gateway dev`'s Micro store on its own: what a request's records make good or bad, whatever
the events hold."""

from __future__ import annotations

import orjson

from gateway.micro import MicroStore
from gateway.publish.producer import Record


def forwarded(event: object, violations: int) -> Record:
    headers = [("violations", str(violations).encode())]
    return Record("events", None, orjson.dumps(event), headers)


def test_records_sorted_into_good_and_bad_whatever_the_events_hold() -> None:
    micro = MicroStore("events")
    quarantined = {
        "reason": "violation",
        "violations": [{"type": "Datatype-Mismatch", "message": "must be number"}],
        "event": {"type": "track", "event": "A", "context": {"testId": "t1"}},
    }
    micro.observe(
        [
            forwarded({"type": "track", "event": "A", "context": "not an object"}, 0),
            # A client's own violationErrors (the source's plan does not propagate them).
            forwarded({"type": "track", "event": "A", "context": {"violationErrors": [1]}}, 2),
            forwarded({"type": "identify", "context": {"violationErrors": "x"}}, 1),
            Record("events.quarantine", None, orjson.dumps(quarantined), []),
        ]
    )
    assert (micro.good_count, micro.bad_count, micro.run_bad_count) == (1, 3, 3)
    assert [item["errors"] for item in micro.bad] == [[], [], ["must be number"]]
    assert micro.bad[2]["testId"] == "t1"
    assert micro.bad[2]["reason"] == "violation"
    micro.reset()
    assert (micro.good_count, micro.bad_count, micro.run_bad_count) == (0, 0, 3)
