"""Unit tests of event normalization (Segment spec) and the invalid-event check."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gateway.ingest.normalize import (
    RequestInfo,
    normalize,
    parse_timestamp,
    request_info,
)
from gateway.pipeline import invalid_event_problem
from gateway.times import format_timestamp

RECEIVED = datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=UTC)
RECEIVED_TEXT = "2024-05-17T09:30:15.123Z"


def info(**overrides: Any) -> RequestInfo:
    values: dict[str, Any] = {
        "received_at": RECEIVED,
        "received_at_text": RECEIVED_TEXT,
        "request_ip": "192.0.2.10",
    }
    values.update(overrides)
    return RequestInfo(**values)


def normalized(event: dict[str, Any], request: RequestInfo | None = None) -> dict[str, Any]:
    normalize(event, request or info())
    return event


# --- format_timestamp / parse_timestamp ----------------------------------------------------


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (RECEIVED, RECEIVED_TEXT),
        (datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01T00:00:00.000Z"),
        (datetime(2024, 1, 1, 0, 0, 0, 999999, tzinfo=UTC), "2024-01-01T00:00:00.999Z"),
        (
            datetime(2024, 1, 1, 1, 30, 0, 5000, tzinfo=timezone(timedelta(hours=2))),
            "2023-12-31T23:30:00.005Z",
        ),
    ],
)
def test_format_timestamp_is_utc_with_milliseconds(dt: datetime, text: str) -> None:
    assert format_timestamp(dt) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-17T09:30:15.123Z", datetime(2024, 5, 17, 9, 30, 15, 123000, tzinfo=UTC)),
        ("2024-05-17T11:30:15+02:00", datetime(2024, 5, 17, 9, 30, 15, tzinfo=UTC)),
        ("2024-05-17T09:30:15", datetime(2024, 5, 17, 9, 30, 15, tzinfo=UTC)),
        ("2024-05-17", datetime(2024, 5, 17, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("value", ["", "yesterday", "2024-13-45T00:00:00Z", None, 1700000000, {}])
def test_parse_timestamp_rejects_non_times(value: Any) -> None:
    assert parse_timestamp(value) is None


# --- request_info --------------------------------------------------------------------------


def test_request_info_received_at_is_now_in_both_forms() -> None:
    before = datetime.now(UTC)
    result = request_info(request_ip="10.0.0.1")
    after = datetime.now(UTC)
    assert before <= result.received_at <= after
    assert result.received_at_text == format_timestamp(result.received_at)
    assert (result.sent_at, result.context, result.integrations) == (None, None, None)


def test_request_info_takes_batch_envelope_fields() -> None:
    envelope = {
        "sentAt": "2024-05-17T09:00:00.000Z",
        "context": {"library": {"name": "analytics-python"}},
        "integrations": {"All": False},
        "batch": [],
    }
    result = request_info(request_ip="10.0.0.1", envelope=envelope)
    assert result.sent_at == "2024-05-17T09:00:00.000Z"
    assert result.context == {"library": {"name": "analytics-python"}}
    assert result.integrations == {"All": False}


def test_request_info_ignores_non_object_envelope_context() -> None:
    envelope = {"context": "nope", "integrations": ["x"], "batch": []}
    result = request_info(request_ip="10.0.0.1", envelope=envelope)
    assert result.context is None
    assert result.integrations is None


# --- messageId -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [("m-1", "m-1"), ("  m-1 ", "m-1"), ("\tm 1\n", "m 1"), (12345, "12345")],
)
def test_message_id_kept_and_trimmed(given: Any, kept: str) -> None:
    assert normalized({"messageId": given})["messageId"] == kept


@pytest.mark.parametrize("given", [None, "", "   ", True, {"id": 1}, ["m"], 1.5])
def test_message_id_generated_when_missing_or_unusable(given: Any) -> None:
    event = {"messageId": given} if given is not None else {}
    message_id = normalized(event)["messageId"]
    assert isinstance(message_id, str)
    parsed = uuid.UUID(message_id)
    assert parsed.version == 4
    assert str(parsed) == message_id


def test_generated_message_ids_differ() -> None:
    ids = {normalized({})["messageId"] for _ in range(100)}
    assert len(ids) == 100


# --- times ---------------------------------------------------------------------------------


def test_times_default_to_received_at() -> None:
    event = normalized({"type": "track"})
    assert event["receivedAt"] == RECEIVED_TEXT
    assert event["sentAt"] == RECEIVED_TEXT
    assert event["originalTimestamp"] == RECEIVED_TEXT
    assert event["timestamp"] == RECEIVED_TEXT


def test_received_at_overrides_a_client_value() -> None:
    event = normalized({"receivedAt": "2000-01-01T00:00:00.000Z"})
    assert event["receivedAt"] == RECEIVED_TEXT


def test_given_timestamp_is_kept_verbatim() -> None:
    event = normalized(
        {
            "timestamp": "2020-02-02T02:02:02+05:00",
            "originalTimestamp": "2024-05-17T09:00:00.000Z",
            "sentAt": "2024-05-17T09:10:00.000Z",
        }
    )
    assert event["timestamp"] == "2020-02-02T02:02:02+05:00"
    assert event["originalTimestamp"] == "2024-05-17T09:00:00.000Z"
    assert event["sentAt"] == "2024-05-17T09:10:00.000Z"


def test_timestamp_corrects_clock_skew() -> None:
    # The device clock is 3 hours behind; the event happened 10 minutes before it was sent.
    event = normalized(
        {"originalTimestamp": "2024-05-17T06:20:15.000Z", "sentAt": "2024-05-17T06:30:15.000Z"}
    )
    assert event["timestamp"] == format_timestamp(RECEIVED - timedelta(minutes=10))
    assert event["timestamp"] == "2024-05-17T09:20:15.123Z"


def test_timestamp_with_only_original_timestamp() -> None:
    # sentAt defaults to receivedAt, so no skew is assumed: timestamp = originalTimestamp.
    event = normalized({"originalTimestamp": "2024-05-17T09:00:00.000Z"})
    assert event["sentAt"] == RECEIVED_TEXT
    assert event["timestamp"] == "2024-05-17T09:00:00.000Z"


def test_timestamp_with_only_sent_at() -> None:
    # originalTimestamp defaults to receivedAt: timestamp = receivedAt - (sentAt - receivedAt).
    event = normalized({"sentAt": "2024-05-17T09:25:15.123Z"})
    assert event["originalTimestamp"] == RECEIVED_TEXT
    assert event["timestamp"] == "2024-05-17T09:35:15.123Z"


def test_timestamp_with_offsets_in_different_zones() -> None:
    event = normalized(
        {
            "originalTimestamp": "2024-05-17T08:00:00+02:00",
            "sentAt": "2024-05-17T06:00:30Z",
        }
    )
    assert event["timestamp"] == format_timestamp(RECEIVED - timedelta(seconds=30))


def test_unparseable_time_counts_as_received_at() -> None:
    event = normalized({"originalTimestamp": "2024-05-17T08:30:15.123Z", "sentAt": "garbage"})
    assert event["sentAt"] == "garbage"
    assert event["timestamp"] == "2024-05-17T08:30:15.123Z"


def test_absurd_skew_falls_back_to_received_at() -> None:
    event = normalized(
        {"originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"}
    )
    assert event["timestamp"] == RECEIVED_TEXT


def test_batch_sent_at_applies_to_items_without_their_own() -> None:
    request = info(sent_at="2024-05-17T09:40:15.123Z")
    item = normalized({"originalTimestamp": "2024-05-17T09:30:15.123Z"}, request)
    assert item["sentAt"] == "2024-05-17T09:40:15.123Z"
    assert item["timestamp"] == "2024-05-17T09:20:15.123Z"
    own = normalized({"sentAt": "2024-05-17T09:31:15.123Z"}, request)
    assert own["sentAt"] == "2024-05-17T09:31:15.123Z"


# --- request_ip ----------------------------------------------------------------------------


def test_event_request_ip_is_kept() -> None:
    assert normalized({"request_ip": "198.51.100.1"})["request_ip"] == "198.51.100.1"


@pytest.mark.parametrize("event", [{}, {"request_ip": ""}, {"request_ip": None}])
def test_request_ip_defaults_to_the_request(event: dict[str, Any]) -> None:
    assert normalized(event)["request_ip"] == "192.0.2.10"


# --- batch envelope context and integrations ------------------------------------------------


def test_envelope_context_is_merged_under_the_item_own() -> None:
    request = info(
        context={"library": {"name": "envelope"}, "ip": "1.1.1.1"},
        integrations={"All": True, "Amplitude": False},
    )
    item = normalized(
        {"context": {"library": {"name": "item"}}, "integrations": {"Amplitude": True}}, request
    )
    assert item["context"] == {"library": {"name": "item"}, "ip": "1.1.1.1"}
    assert item["integrations"] == {"All": True, "Amplitude": True}
    bare = normalized({}, request)
    assert bare["context"] == {"library": {"name": "envelope"}, "ip": "1.1.1.1"}
    assert bare["integrations"] == {"All": True, "Amplitude": False}


# --- everything else untouched -------------------------------------------------------------


def test_other_fields_are_untouched() -> None:
    event: dict[str, Any] = {
        "type": "track",
        "event": "Käufe ✓",
        "userId": 42,
        "anonymousId": None,
        "messageId": "m-1",
        "request_ip": "198.51.100.1",
        "properties": {"nested": {"list": [1, {"x": None}], "flag": False}, "n": 1.25},
        "context": {"traits": {"name": "Zoë"}},
        "integrations": {"All": True},
        "extra": [],
    }
    before = {k: v for k, v in event.items()}
    normalize(event, info())
    added = {"receivedAt", "sentAt", "originalTimestamp", "timestamp"}
    assert set(event) == set(before) | added
    assert {k: v for k, v in event.items() if k not in added} == before


# --- invalid_event_problem -----------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"type": "track", "userId": "u1", "event": "Signed Up"},
        {"type": "track", "anonymousId": "a1", "event": "x"},
        {"type": "identify", "userId": "u1"},
        {"type": "page", "anonymousId": "a1"},
        {"type": "screen", "userId": "u1", "name": "Home"},
        {"type": "group", "userId": "u1", "groupId": "g1"},
        {"type": "alias", "userId": "u1", "previousId": "a1"},
        {"type": "identify", "userId": 0},
        {"type": "identify", "userId": 12345},
        {"type": "identify", "userId": "", "anonymousId": "a1"},
    ],
)
def test_valid_events_have_no_problem(event: dict[str, Any]) -> None:
    assert invalid_event_problem(event) is None


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ({"userId": "u1", "event": "E"}, "type"),
        ({"type": "purchase", "userId": "u1"}, "purchase"),
        ({"type": "Track", "userId": "u1", "event": "E"}, "Track"),
        ({"type": 7, "userId": "u1"}, "type"),
        ({"type": "identify"}, "userId"),
        ({"type": "identify", "userId": "", "anonymousId": ""}, "userId"),
        ({"type": "identify", "userId": None, "anonymousId": None}, "userId"),
        ({"type": "identify", "userId": {"id": 1}}, "userId"),
        ({"type": "identify", "anonymousId": ["a"]}, "anonymousId"),
        ({"type": "identify", "userId": True}, "userId"),
        ({"type": "track", "userId": "u1"}, "event name"),
        ({"type": "track", "userId": "u1", "event": ""}, "event name"),
        ({"type": "track", "userId": "u1", "event": 5}, "event name"),
        ({"type": "track", "userId": "u1", "event": None}, "event name"),
    ],
)
def test_invalid_events_say_why(event: dict[str, Any], words: str) -> None:
    problem = invalid_event_problem(event)
    assert isinstance(problem, str)
    assert words in problem
