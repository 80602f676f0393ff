"""`gateway dev`'s test API for app CI, on the routes of Snowplow Micro's REST API.

    GET|POST /micro/all     {"total", "good", "bad"}: events since the last reset
    GET|POST /micro/good    the good events kept, newest last
    GET|POST /micro/bad     the bad events kept, with their violations
    GET|POST /micro/reset   forget everything; answers the (zero) counts

An event is *good* when it was forwarded without a violation, and *bad* when it was quarantined
or forwarded with violations (a plan whose policies forward violations still has broken
instrumentation to report). Filters — as query parameters, or a JSON body for POST, as Micro
takes them — are ``event_type``, ``event_name``, ``test_id`` (the event's ``context.testId``,
so that each test of a suite looks at its own events) and ``limit``; on ``/micro/all`` they
count among the kept events. The newest ``KEPT_EVENTS`` good and bad events are kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gateway.body import parse_json_object, read_body
from gateway.errors import ApiError, BadRequest, error_response
from gateway.http import json_ok
from gateway.publish.producer import Record
from gateway.publish.records import event_name

KEPT_EVENTS = 2000  # of each kind; events are at most ingest.max_event_bytes each
REPORTED = 20  # bad events `gateway dev --check` lists
MAX_FILTER_BYTES = 64 * 1024
FILTERS = ("event_type", "event_name", "test_id", "limit")


@dataclass
class MicroStore:
    events_topic: str
    good: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEPT_EVENTS))
    bad: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEPT_EVENTS))
    good_count: int = 0
    bad_count: int = 0
    # For `gateway dev --check`: every bad event of the run, whatever was reset meanwhile.
    run_bad_count: int = 0
    run_bad: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REPORTED))

    def observe(self, records: Sequence[Record]) -> None:
        """A request's records, acknowledged by Kafka (the ingest observer)."""
        for record in records:
            if record.topic == self.events_topic:
                self._forwarded(record)
            else:
                self._quarantined(orjson.loads(record.value))

    def _forwarded(self, record: Record) -> None:
        event = orjson.loads(record.value)
        context = event.get("context") if isinstance(event, dict) else None
        violations = context.get("violationErrors") if isinstance(context, dict) else None
        violations = violations if isinstance(violations, list) else []
        if dict(record.headers).get("violations", b"0") == b"0":
            self.good.append(_item(event, "forwarded", None, []))
            self.good_count += 1
        else:
            self._add_bad(_item(event, "forwarded", None, violations))

    def _quarantined(self, value: dict[str, Any]) -> None:
        self._add_bad(_item(value["event"], "quarantined", value["reason"], value["violations"]))

    def _add_bad(self, item: dict[str, Any]) -> None:
        self.bad.append(item)
        self.bad_count += 1
        self.run_bad.append(item)
        self.run_bad_count += 1

    def reset(self) -> None:
        self.good.clear()
        self.bad.clear()
        self.good_count = self.bad_count = 0

    def add_routes(self, app: web.Application) -> None:
        for path, handler in (
            ("/micro/all", self._all),
            ("/micro/good", self._good),
            ("/micro/bad", self._bad),
            ("/micro/reset", self._reset),
        ):
            app.router.add_route("GET", path, _answering(handler))
            app.router.add_route("POST", path, _answering(handler))

    async def _all(self, filters: dict[str, Any]) -> Any:
        if not any(k in filters for k in FILTERS[:3]):
            return _counts(self.good_count, self.bad_count)
        return _counts(len(_matching(self.good, filters)), len(_matching(self.bad, filters)))

    async def _good(self, filters: dict[str, Any]) -> Any:
        return _matching(self.good, filters)

    async def _bad(self, filters: dict[str, Any]) -> Any:
        return _matching(self.bad, filters)

    async def _reset(self, filters: dict[str, Any]) -> Any:
        self.reset()
        return _counts(0, 0)


def _item(
    event: Any, outcome: str, reason: str | None, violations: list[dict[str, Any]]
) -> dict[str, Any]:
    context = event.get("context") if isinstance(event, dict) else None
    test_id = context.get("testId") if isinstance(context, dict) else None
    return {
        "eventType": event.get("type") if isinstance(event, dict) else None,
        "eventName": event_name(event) if isinstance(event, dict) else "",
        "testId": test_id,
        "outcome": outcome,
        "reason": reason,
        "errors": [v.get("message", "") for v in violations if isinstance(v, dict)],
        "violations": violations,
        "event": event,
    }


def _counts(good: int, bad: int) -> dict[str, int]:
    return {"total": good + bad, "good": good, "bad": bad}


def _matching(items: deque[dict[str, Any]], filters: dict[str, Any]) -> list[dict[str, Any]]:
    wanted = [
        (key, filters[name])
        for name, key in (("event_type", "eventType"), ("event_name", "eventName"))
        if name in filters
    ]
    if "test_id" in filters:
        wanted.append(("testId", filters["test_id"]))
    found = [item for item in items if all(item[key] == value for key, value in wanted)]
    limit = filters.get("limit")
    return found[-limit:] if limit else found


def _answering(handler: Any) -> Any:
    async def handle(request: web.Request) -> web.Response:
        try:
            return json_ok(await handler(await _filters(request)))
        except ApiError as exc:
            return error_response(exc)

    return handle


async def _filters(request: web.Request) -> dict[str, Any]:
    raw: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        body = await read_body(request, MAX_FILTER_BYTES)
        if body.strip():
            raw = parse_json_object(body)
    unknown = sorted(set(raw) - set(FILTERS))
    if unknown:
        raise BadRequest(f"unknown filter {unknown[0]!r}; filters: {', '.join(FILTERS)}")
    for name in FILTERS[:3]:
        if name in raw and not isinstance(raw[name], str):
            raise BadRequest(f"{name}: must be a string")
    if "limit" in raw:
        limit = raw["limit"]
        if isinstance(limit, str) and limit.isascii() and limit.isdigit():
            limit = int(limit)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= KEPT_EVENTS:
            raise BadRequest(f"limit: must be an integer from 1 to {KEPT_EVENTS}")
        raw["limit"] = limit
    return raw
