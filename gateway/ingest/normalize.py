"""Normalization of one event, per the Segment spec.

- ``messageId``: kept (trimmed) or generated (UUIDv4);
- ``receivedAt``: the server's time for the whole request;
- ``originalTimestamp`` and ``sentAt`` default to ``receivedAt`` (``sentAt`` first to the batch's);
- ``timestamp``: kept if given, else ``receivedAt - (sentAt - originalTimestamp)``, which corrects
  the device clock's skew; an unparseable time counts as ``receivedAt``, as RudderStack does;
- ``request_ip``: the event's own, else the request's (see :mod:`gateway.ingest.client_ip`).

Every other field is left untouched. The event dict is modified in place: it was parsed for this
request alone, and copying it would cost time on the hot path for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from random import getrandbits
from typing import Any

import orjson

from gateway.times import format_timestamp


@dataclass(frozen=True, slots=True)
class RequestInfo:
    received_at: datetime
    received_at_text: str
    request_ip: str
    # From a batch envelope: sentAt applies to items without their own; context and
    # integrations are shallow-merged under each item's own.
    sent_at: Any = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None


def parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def request_info(*, request_ip: str, envelope: dict[str, Any] | None = None) -> RequestInfo:
    now = datetime.now(UTC)
    sent_at = context = integrations = None
    if envelope is not None:
        sent_at = envelope.get("sentAt")
        context = envelope.get("context") if isinstance(envelope.get("context"), dict) else None
        raw_integrations = envelope.get("integrations")
        integrations = raw_integrations if isinstance(raw_integrations, dict) else None
    return RequestInfo(
        received_at=now,
        received_at_text=format_timestamp(now),
        request_ip=request_ip,
        sent_at=sent_at,
        context=context,
        integrations=integrations,
    )


def new_message_id() -> str:
    """A random (version 4) UUID as text; several times faster than ``str(uuid.uuid4())``.

    The bits come from ``random`` (reseeded in forked children), not the OS: a message id must be
    unique, not unpredictable, and a system call per event is measurable.
    """
    n = getrandbits(128) & _V4_CLEAR | _V4_SET
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Version 4 in bits 76-79, RFC 4122 variant (0b10) in bits 62-63.
_V4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_V4_SET = (0x4 << 76) | (0x2 << 62)


def normalize(event: dict[str, Any], info: RequestInfo) -> None:
    normalize_fields(event, info)
    merge_shared(event, info)


def merge_shared(event: dict[str, Any], info: RequestInfo) -> None:
    """Merge the batch envelope's context and integrations under the event's own.

    The pipeline calls this only once the merged size is known to be within the event limit
    (see :class:`SharedParts`): the merge costs a copy of every envelope key per event.
    """
    # Always a new dict per event: later stages stamp each event's context separately.
    if info.context is not None:
        own = event.get("context")
        event["context"] = {**info.context, **own} if isinstance(own, dict) else {**info.context}
    if info.integrations is not None:
        own = event.get("integrations")
        event["integrations"] = (
            {**info.integrations, **own} if isinstance(own, dict) else {**info.integrations}
        )


def normalize_fields(event: dict[str, Any], info: RequestInfo) -> None:
    """Everything of normalization but the envelope merge."""
    message_id = event.get("messageId")
    if isinstance(message_id, str) and message_id.strip():
        if message_id[0].isspace() or message_id[-1].isspace():
            event["messageId"] = message_id.strip()
    elif isinstance(message_id, int) and not isinstance(message_id, bool):
        event["messageId"] = str(message_id)
    else:
        event["messageId"] = new_message_id()

    received = info.received_at_text
    event["receivedAt"] = received
    if event.get("sentAt") is None:
        event["sentAt"] = info.sent_at if info.sent_at is not None else received
    if event.get("originalTimestamp") is None:
        event["originalTimestamp"] = received
    if event.get("timestamp") is None:
        event["timestamp"] = _corrected_timestamp(event, info)
    if not event.get("request_ip"):
        event["request_ip"] = info.request_ip


def _corrected_timestamp(event: dict[str, Any], info: RequestInfo) -> str:
    sent_at = event["sentAt"]
    original = event["originalTimestamp"]
    if sent_at == original:
        return info.received_at_text  # no skew to correct: the common case, no parsing
    sent = parse_timestamp(sent_at) or info.received_at
    orig = parse_timestamp(original) or info.received_at
    try:
        return format_timestamp(info.received_at - (sent - orig))
    except OverflowError:
        return info.received_at_text


class SharedParts:
    """The envelope's context and integrations, sized once per request.

    Every item of a batch gets them merged in, so a large envelope ``context`` would be copied
    and written once per item — 2,500 times for one request. Instead, the size an item will
    have once merged is computed here from the envelope's size (written once) and the sizes of
    the few envelope keys the item overrides, so an item that will be too large is found
    without being merged or written. Raises ``orjson.JSONEncodeError`` for parts nested too
    deeply to be written.
    """

    def __init__(self, info: RequestInfo) -> None:
        # (key, the envelope's object, its JSON size, sizes of its entries as looked up)
        self._parts: list[tuple[str, dict[str, Any], int, dict[str, int]]] = [
            (name, shared, len(orjson.dumps(shared)), {})
            for name, shared in (("context", info.context), ("integrations", info.integrations))
            if shared is not None
        ]

    def __bool__(self) -> bool:
        return bool(self._parts)

    def added_bytes(self, event: dict[str, Any]) -> int:
        """How many bytes the merge adds to the event's JSON (which must have a key already)."""
        added = 0
        for name, shared, shared_bytes, entry_bytes in self._parts:
            own = event.get(name, _ABSENT)
            if own is _ABSENT:
                # A new last key: ',"name":' then the envelope's object.
                added += len(name) + 4 + shared_bytes
                continue
            own_bytes = len(orjson.dumps(own))
            if not isinstance(own, dict):
                added += shared_bytes - own_bytes
                continue
            # An object of n entries is 2 + sum(entries) + (n - 1) commas bytes long.
            entries = _entries_bytes(shared_bytes, len(shared))
            entries += _entries_bytes(own_bytes, len(own))
            count = len(shared) + len(own)
            for key in own:
                if key in shared:
                    size = entry_bytes.get(key)
                    if size is None:
                        size = entry_bytes[key] = len(orjson.dumps({key: shared[key]})) - 2
                    entries -= size
                    count -= 1
            added += 2 + entries + max(count - 1, 0) - own_bytes
        return added


_ABSENT = object()


def _entries_bytes(object_bytes: int, count: int) -> int:
    """The bytes of an object's entries, without braces and commas."""
    return object_bytes - 2 - max(count - 1, 0)
