"""Segment's Public API for tracking plans, served by the admin port over the same catalog.

The protocol, as Segment's Public API has it: every answer is ``{"data": …}``, and every error
``{"errors": [{"type", "message", "status"}]}`` with status 404 (no such plan or source), 422
(the request is invalid: Segment's "validation failure", where the other surfaces answer 400),
401/403 (the token), or 429 (too many requests). Lists take ``pagination.count`` and
``pagination.cursor`` and answer ``pagination: {current, next?, totalEntries}``; a query
parameter may name a list item's field as ``rules.0.key``.

Each token may make ``admin.segment_requests_per_minute`` requests a minute, and list rules
``admin.segment_rules_requests_per_minute`` times (as Segment's rules listing): a token bucket
per token and kind, whose state every answer reports in ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (Unix seconds when the bucket is full
again); a 429 also carries ``Retry-After``. Writes are recorded in the change log (surface
``segment``). The operations are declared like the other catalog routes (gateway.catalog.declared):
their types and code in ``plans.py`` and ``rules.py``, their table in ``routes.py``.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from aiohttp import web

from gateway.body import read_body
from gateway.catalog.auth import TOKEN_IDENTITY
from gateway.catalog.changelog import Change, recording
from gateway.catalog.declared import Input, Route, decode_json, field_error
from gateway.catalog.http import (
    MAX_BODY_BYTES,
    MODIFICATIONS,
    STORE_KEY,
    authorize,
    path_ids,
)
from gateway.errors import ApiError, BadRequest

VALIDATION_STATUS = 422  # what Segment answers where the other surfaces answer 400
MAX_QUERY_ITEMS = 100  # list items a query may name (rules.0.key … rules.99.key)
DEFAULT_COUNT = 50
MAX_COUNT = 200
RULES_LIMIT = "rules"  # the kind of request limited at the rules listing's rate

T = TypeVar("T")


class RateLimited(ApiError):
    """The token made more requests than the Segment API allows a minute
    (`admin.segment_requests_per_minute`; listing a plan's rules,
    `admin.segment_rules_requests_per_minute`). Retry after `Retry-After` seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after_s: int, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = headers


# --- rate limits -------------------------------------------------------------------------------


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, capacity: float, now: float) -> None:
        self.tokens = capacity
        self.updated = now


class RateLimits:
    """A token bucket per (token identity, kind): ``per_minute[kind]`` requests a minute, at
    most that many at once. Tokens come from the configuration, so the buckets are few."""

    def __init__(self, per_minute: Mapping[str, int], clock: Callable[[], float] = time.time):
        self.per_minute = dict(per_minute)
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def take(self, token: str, kind: str) -> dict[str, str]:
        """Spend one request; the rate headers. RateLimited (with the headers) when none is left."""
        limit = self.per_minute[kind]
        rate = limit / 60.0
        now = self.clock()
        bucket = self._buckets.get((token, kind))
        if bucket is None:
            bucket = self._buckets[token, kind] = _Bucket(limit, now)
        bucket.tokens = min(limit, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        allowed = bucket.tokens >= 1
        if allowed:
            bucket.tokens -= 1
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(int(bucket.tokens)),
            "X-RateLimit-Reset": str(math.ceil(now + (limit - bucket.tokens) / rate)),
        }
        if not allowed:
            wait = max(1, math.ceil((1 - bucket.tokens) / rate))
            message = f"more than {limit} requests a minute; retry in {wait} s"
            raise RateLimited(message, wait, headers)
        return headers


RATE_LIMITS_KEY = web.AppKey("segment_rate_limits", RateLimits)


# --- pagination ----------------------------------------------------------------------------------


class PaginationInput(msgspec.Struct):
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] = DEFAULT_COUNT
    cursor: (
        Annotated[str, msgspec.Meta(max_length=64, description="`current` or `next` of a page.")]
        | None
    ) = None


class Pagination(msgspec.Struct, rename="camel", omit_defaults=True):
    current: str
    total_entries: int
    next: str | None = None


class ListQuery(msgspec.Struct):
    pagination: PaginationInput = msgspec.field(default_factory=PaginationInput)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    pagination: Pagination


def cursor_of(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode()


def offset_of(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        text = base64.b64decode(cursor.encode("utf-8"), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    if not text.isdigit() or len(text) > 9:
        raise BadRequest(f"pagination.cursor: {cursor!r} is not a cursor this API gave")
    return int(text)


def page_of(items: Sequence[T], pagination: PaginationInput) -> Page[T]:
    """One page of a whole list."""
    start = offset_of(pagination.cursor)
    end = start + pagination.count
    following = cursor_of(end) if end < len(items) else None
    return Page(list(items[start:end]), Pagination(cursor_of(start), len(items), following))


class Status(msgspec.Struct):
    status: str = "SUCCESS"


SUCCESS = Status()


# --- the protocol --------------------------------------------------------------------------------


def add_segment_routes(
    app: web.Application, routes: Sequence[Route], per_minute: Mapping[str, int]
) -> None:
    app[RATE_LIMITS_KEY] = RateLimits(per_minute)
    for route in routes:
        app.router.add_route(route.method, route.path, _handler(route))


def limit_kind(route: Route) -> str:
    return RULES_LIMIT if route.operation_id == "listRulesFromTrackingPlan" else "default"


_ENCODER = msgspec.json.Encoder()


def _handler(route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    kind = limit_kind(route)

    async def handle(request: web.Request) -> web.Response:
        headers: dict[str, str] = {}
        try:
            authorize(request)
            headers = request.app[RATE_LIMITS_KEY].take(request[TOKEN_IDENTITY], kind)
            body = None
            if route.body is not None:
                body = decode_json(await read_body(request, MAX_BODY_BYTES), route.body)
            query = None if route.query is None else decode_query(request.query, route.query)
            call = Input(request.app[STORE_KEY], request.match_info, body, query)
            if request.method in MODIFICATIONS:
                change = Change(
                    token=request[TOKEN_IDENTITY],
                    surface="segment",
                    action=route.operation_id,
                    reason=None,
                    targets=path_ids(request),
                )
                with recording(change):
                    answer = await route.code(call)
            else:
                answer = await route.code(call)
        except ApiError as exc:
            return error_response(exc, headers)
        return web.Response(
            body=_ENCODER.encode({"data": answer}), content_type="application/json", headers=headers
        )

    return handle


def error_response(exc: ApiError, headers: Mapping[str, str] = {}) -> web.Response:
    status = VALIDATION_STATUS if exc.status == 400 else exc.status
    out = {**headers, **(exc.headers if isinstance(exc, RateLimited) else {})}
    if exc.retry_after_s is not None:
        out["Retry-After"] = str(exc.retry_after_s)
    body = {"errors": [{"type": exc.code, "message": exc.message, "status": status}]}
    return web.Response(
        body=_ENCODER.encode(body), status=status, content_type="application/json", headers=out
    )


def decode_query(fields: Mapping[str, str], kind: type[T]) -> T:
    """Query parameters as a ``kind``: ``a.b=1`` (or ``a[b]=1``) is ``{"a": {"b": "1"}}`` and
    ``a.0.b=1`` (or ``a[0][b]=1``) is ``{"a": [{"b": "1"}]}`` (items in index order); strings
    convert to numbers where the type says so. Other names are ignored, as unknown parameters
    are."""
    nested: dict[str, Any] = {}
    for name, value in fields.items():
        # Generated clients write a.b as a[b] (qs), and a.0.b as a[0][b].
        match name.replace("]", "").replace("[", ".").split("."):
            case [key]:
                nested[key] = value
            case [key, field]:
                _object(nested, key, name)[field] = value
            case [key, index, field] if index.isdigit():
                if len(index) > 3 or int(index) >= MAX_QUERY_ITEMS:
                    raise BadRequest(f"{name}: at most {MAX_QUERY_ITEMS} items")
                _object(nested, key, name).setdefault(int(index), {})[field] = value
    for key, value in nested.items():
        if isinstance(value, dict) and value and all(isinstance(k, int) for k in value):
            nested[key] = [value[i] for i in sorted(value)]
    try:
        return msgspec.convert(nested, type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(field_error(str(exc))) from None


def _object(nested: dict[str, Any], key: str, name: str) -> dict[Any, Any]:
    found = nested.setdefault(key, {})
    if not isinstance(found, dict):
        raise BadRequest(f"{name}: {key} is also given on its own")
    return found
