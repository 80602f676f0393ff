"""Declared routes of the RudderStack-compatible catalog: one declaration per operation.

A :class:`Route` names its method, path, operation id and summary, the types of its body, query
and answer (msgspec structs), the error statuses it can answer, and its code. From it the route
is registered — the body decoded strictly from JSON and the query converted from its strings,
both into their types, any mismatch a 400 ``{"code": "bad_request", "message": "<field>:
…"}`` — and its part of ``/openapi.json`` is generated (see gateway.openapi). Rules a type
cannot say (a track event's name, a custom type that must exist) stay in the code, once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from aiohttp import web
from sqlalchemy import Table

from gateway.body import read_body
from gateway.catalog import request_rules as v
from gateway.catalog.http import MAX_BODY_BYTES, STORE_KEY
from gateway.catalog.store import Store, page_of_table
from gateway.errors import BadRequest, InvalidJson

B = TypeVar("B")
Q = TypeVar("Q")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Input(Generic[B, Q]):
    """What a route's code gets: the store, the path's parameters, the decoded body and query."""

    store: Store
    path: Mapping[str, str]
    body: B
    query: Q


Code = Callable[[Input[Any, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation_id: str
    summary: str
    code: Code
    body: type[msgspec.Struct] | None = None
    query: type[msgspec.Struct] | None = None
    answer: Any = None  # the answer's type; None: 204 without a body
    answer_description: str = ""  # default: the summary
    errors: tuple[int, ...] = ()
    description: str = ""


# --- what listings share ---------------------------------------------------------------------


class Audited(msgspec.Struct, rename="camel", kw_only=True):
    # This gateway has tokens, not users: there is no author to name.
    created_by: None = None
    updated_by: None = None


class PlanPageQuery(msgspec.Struct, rename="camel"):
    page: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=v.MAX_PAGES,
            description=f"Page number ({v.PAGE_SIZE} items a page, at most {v.MAX_PAGES} pages).",
        ),
    ] = 1


class PageQuery(PlanPageQuery, rename="camel"):
    order_by: (
        Annotated[
            str,
            msgspec.Meta(
                pattern=r"^(name|createdAt|updatedAt)(:([aA][sS][cC]|[dD][eE][sS][cC]))?$",
                description="`name`, `createdAt` or `updatedAt`, optionally with `:asc` or "
                "`:desc` (default `createdAt:asc`).",
            ),
        ]
        | None
    ) = None


class Page(msgspec.Struct, Generic[T], rename="camel"):
    """One page of a listing: 50 items at most, oldest first unless ``orderBy`` says."""

    data: list[T]
    total: int
    current_page: int
    page_size: int


async def list_page(
    call: Input[None, PageQuery], table: Table, shape: Callable[[Any, str], T]
) -> Page[T]:
    """A page of a whole table, in ``orderBy`` order (ids break ties)."""
    query = call.query
    field, _, direction = (query.order_by or "createdAt").partition(":")
    async with call.store.read() as conn:
        total, rows = await page_of_table(
            conn, table, v.ORDER_FIELDS[field], direction.lower() == "desc", query.page, v.PAGE_SIZE
        )
    return Page([shape(r, call.store.workspace_id) for r in rows], total, query.page, v.PAGE_SIZE)


# --- registration ------------------------------------------------------------------------------


def add_routes(app: web.Application, routes: Sequence[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, _handler(route))


_ENCODER = msgspec.json.Encoder()


def _handler(route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        body = None
        if route.body is not None:
            body = decode_json(await read_body(request, MAX_BODY_BYTES), route.body)
        query = None if route.query is None else decode_fields(request.query, route.query)
        answer = await route.code(Input(request.app[STORE_KEY], request.match_info, body, query))
        if route.answer is None:
            return web.Response(status=204)
        return web.Response(body=_ENCODER.encode(answer), content_type="application/json")

    return handle


def decode_json(body: bytes, kind: type[T]) -> T:
    """``body`` as a ``kind``: 400 naming the field for anything else."""
    if not body.strip():
        raise InvalidJson("body is empty; expected a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(field_error(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise InvalidJson(f"body is not valid JSON: {exc}") from None
    except RecursionError:  # a free-form field (``dict[str, Any]``) nested past the decoder
        raise InvalidJson("body nests too deeply") from None


def decode_fields(fields: Mapping[str, str], kind: type[T]) -> T:
    """Query or form parameters (strings) as a ``kind``, converting numbers and booleans.

    An integer must be written as one, in plain decimal digits: not ``1.0``, ``+1``, `` 1`` or
    ``01``, which a lax conversion would take."""
    try:
        value = msgspec.convert(dict(fields), type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(field_error(str(exc))) from None
    for field in msgspec.structs.fields(kind):  # type: ignore[arg-type]
        got = getattr(value, field.name)
        raw = fields.get(field.encode_name)
        if raw is not None and type(got) is int and raw != str(got):
            raise BadRequest(f"{field.encode_name}: expected an integer, got {raw!r}")
    return value


def field_error(message: str) -> str:
    """msgspec's "Expected `str`, got `int` - at `$.name`" as "name: expected str, got int"."""
    text, _, where = message.partition(" - at `$")
    where = where.rstrip("`").lstrip(".")
    text = (text[:1].lower() + text[1:]).replace("`", "")
    return f"{where}: {text}" if where else text


def query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAPI query parameters of a struct's JSON schema, one per field."""
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": field}
        for name, field in schema["properties"].items()
    ]
