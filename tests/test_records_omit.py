"""``unplannedProperties: omit`` when an omitted key's parent was omitted before it.

``properties.extra`` is unplanned for the first ``allOf`` branch, and the second branch finds
``properties.extra.inner.x`` unplanned too: once ``extra`` is removed, the path to ``x`` is
gone. Both are listed in ``omittedProperties``; the request is answered 200 (a 500 before).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import GatewayFactory
from tests.records_support import gateway_with_plan, plan_snapshot, post_json, topic, value_of

RULES = {
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "allOf": [
                {"properties": {"amount": {"type": "number"}}, "additionalProperties": False},
                {
                    "properties": {
                        "extra": {
                            "type": "object",
                            "properties": {
                                "inner": {"type": "object", "additionalProperties": False}
                            },
                        }
                    }
                },
            ],
        }
    },
}


async def test_omit_after_parent_was_omitted(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    snapshot = plan_snapshot(RULES, {"global": {"unplannedProperties": "omit"}})
    gw = await gateway_with_plan(make_gateway, tmp_path, snapshot)
    sent = {
        "type": "track",
        "userId": "u1",
        "event": "Tagged",
        "messageId": "m-omit",
        "properties": {"amount": 3, "extra": {"inner": {"x": 1, "y": 2}}},
    }
    assert await post_json(gw, "/v1/track", sent) == (200, "OK")
    [record] = await topic(gw)
    event = value_of(record)
    assert event["properties"] == {"amount": 3}
    context = event["context"]
    assert sorted(context["omittedProperties"]) == [
        "properties.extra",
        "properties.extra.inner.x",
        "properties.extra.inner.y",
    ]
    assert context["violationErrors"] == []
    assert dict(record.headers)["violations"] == b"3"
