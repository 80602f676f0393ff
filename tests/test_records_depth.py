"""Any nesting depth the JSON parser accepts gets 200, and the event ends up in Kafka.

The JSON parser reads 1024 levels, the writer only 254: an event is stored whole where it can
be written, else quarantined as a stub. Its quarantine record embeds the event's JSON as
written, so quarantining never adds a level that cannot be written (a 500 for ever before).
"""

from __future__ import annotations

import pytest

from gateway.server import Gateway
from tests.records_support import assert_stub_quarantine, post_raw, topic, value_of

DEPTHS = [*range(250, 257), 1000]
WRITABLE_LEVELS = 254


def deep_event(depth: int, user: bool) -> bytes:
    """A track event whose ``properties`` nest ``depth`` objects (the event itself is one more)."""
    nested = b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)
    who = b'"userId":"u-deep",' if user else b""
    return b'{"type":"track",%s"event":"Deep","messageId":"m-deep","properties":%s}' % (
        who,
        nested,
    )


@pytest.mark.parametrize("depth", DEPTHS)
async def test_valid_event_at_any_depth(gateway: Gateway, depth: int) -> None:
    body = b'{"batch":[%s]}' % deep_event(depth, user=True)
    assert await post_raw(gateway, "/v1/batch", body) == (200, "OK")
    forwarded = await topic(gateway)
    quarantined = await topic(gateway, quarantine=True)
    assert len(forwarded) + len(quarantined) == 1
    # The writer takes 254 levels: properties' `depth` plus the event itself.
    assert bool(forwarded) == (depth + 1 <= WRITABLE_LEVELS)
    if forwarded:
        assert value_of(forwarded[0])["messageId"] == "m-deep"
    else:
        doc = assert_stub_quarantine(quarantined[0], "m-deep")
        assert "nested too deeply" in doc["violations"][0]["message"]


@pytest.mark.parametrize("depth", DEPTHS)
async def test_unusable_event_at_any_depth_is_quarantined(gateway: Gateway, depth: int) -> None:
    # No userId: quarantined whatever its depth, whole where it can be written.
    fine = b'{"type":"track","userId":"u-fine","event":"Fine"}'
    body = b'{"batch":[%s,%s]}' % (deep_event(depth, user=False), fine)
    assert await post_raw(gateway, "/v1/batch", body) == (200, "OK")
    [forwarded] = await topic(gateway)
    assert value_of(forwarded)["event"] == "Fine"
    [record] = await topic(gateway, quarantine=True)
    doc = value_of(record)
    assert doc["reason"] == "invalid-event"
    assert doc["event"]["messageId"] == "m-deep"
    if "_truncated" not in doc["event"]:
        assert "neither userId nor anonymousId" in doc["violations"][0]["message"]
        assert "a" in doc["event"]["properties"]


@pytest.mark.parametrize("depth", DEPTHS)
async def test_batch_context_at_any_depth(gateway: Gateway, depth: int) -> None:
    """The batch's context is merged into each event, one level deeper than in the envelope:
    at 254 levels it was writable alone and not once merged (a 500 for ever)."""
    context = b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)
    item = b'{"type":"track","userId":"u-ctx","event":"Ctx","messageId":"m-ctx"}'
    body = b'{"context":%s,"batch":[%s]}' % (context, item)
    assert await post_raw(gateway, "/v1/batch", body) == (200, "OK")
    forwarded = await topic(gateway)
    quarantined = await topic(gateway, quarantine=True)
    assert len(forwarded) + len(quarantined) == 1
    # Merged, the context sits under the event: `depth` levels plus the event itself.
    assert bool(forwarded) == (depth + 1 <= WRITABLE_LEVELS)
    if not forwarded:
        doc = assert_stub_quarantine(quarantined[0], "m-ctx")
        assert "nested too deeply" in doc["violations"][0]["message"]
