"""The gateway's own management API, versioned: ``/api/{version}/…``.

Its conventions are those of Rudder's REST API, which operators' scripts already follow:

- **Versions** are integers. A request names one in the URL (``/api/3/sources``, or
  ``/api/latest/sources``) or, on a path without one (``/api/sources``), in the
  ``X-API-Version`` header (an integer or ``latest``; without it, the latest). A version in the
  URL that is not an integer is a 404; a version that does not exist, in the URL (404) or the
  header (400), is an error that names the versions there are.
- A version applies to the whole API: an operation unchanged since version 1 answers version 3
  as it answers 1. An operation's versions are declared (:class:`Operation`); adding version 2
  of one operation is one more entry in its ``versions``, and raises the latest version.
- **Methods**: GET reads, PUT creates, POST updates, DELETE removes.
- **Parameters** come as a JSON object (``Content-Type: application/json``, or a body that is
  one) or as ``key=value`` query or form parameters, not mixed: with a JSON body, query
  parameters other than the general ones are ignored.
- **General parameters**, in the query only: ``prettify=true`` indents the response;
  ``reason`` on a modification (PUT, POST, DELETE) says why, and is kept in the change log.
- **Every answer is an envelope**: ``{"action", "id"?, "result": "success", "data"}``, or
  ``{"action", "id"?, "result": "error", "errorDetails"}`` with the error's HTTP status.
- **Token**: ``X-API-Token: <token>`` or ``Authorization: Bearer <token>`` (``admin.tokens``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from gateway.body import read_body
from gateway.catalog.auth import TOKEN_IDENTITY
from gateway.catalog.changelog import Change, recording
from gateway.catalog.declared import decode_fields, decode_json
from gateway.catalog.http import (
    MAX_BODY_BYTES,
    MODIFICATIONS,
    NATIVE_PREFIX,
    STORE_KEY,
    authorize,
    path_ids,
)
from gateway.catalog.store import Store
from gateway.errors import ApiError, BadRequest, NotFound

API_PREFIX = NATIVE_PREFIX.rstrip("/")
LATEST = "latest"
VERSION_HEADER = "X-API-Version"
GENERAL_PARAMETERS = ("prettify", "reason")
MAX_REASON = 1000
_INTEGER = re.compile(r"[0-9]{1,9}\Z")


@dataclass(frozen=True, slots=True)
class Call:
    """What an operation's code gets: the request's version, decoded parameters and path."""

    store: Store
    app: web.Application  # for the services an operation needs besides the store
    version: int
    params: Any  # an instance of the version's ``params`` type, or None
    path: Mapping[str, str]
    reason: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    data: Any  # anything msgspec encodes (structs, lists, dicts)
    id: str | None = None  # the element the call was about, when there is one


Code = Callable[[Call], Awaitable[Answer]]


@dataclass(frozen=True)
class Version:
    """One version of an operation: its code, what it takes and what it answers."""

    code: Code
    params: type[msgspec.Struct] | None = None
    data: Any = None  # the type of the envelope's ``data``, for the document


@dataclass(frozen=True)
class Operation:
    method: str  # GET reads, PUT creates, POST updates, DELETE removes
    path: str  # below the version, e.g. "/sources/{source_id}"
    action: str  # the envelope's "action"; the document's operationId
    summary: str
    versions: Mapping[int, Version]
    errors: tuple[type[ApiError], ...] = ()

    def version_for(self, requested: int) -> tuple[int, Version] | None:
        """The newest version of this operation at or below the requested API version."""
        known = [v for v in self.versions if v <= requested]
        return (max(known), self.versions[max(known)]) if known else None


class NativeApi:
    """Operations served under ``/api/{version}`` and ``/api`` (version from the header)."""

    def __init__(self, operations: Sequence[Operation]) -> None:
        self.operations = tuple(operations)
        self.latest = max(v for op in self.operations for v in op.versions)
        self.available = ", ".join([*map(str, range(1, self.latest + 1)), LATEST])

    def add_routes(self, app: web.Application) -> None:
        for op in self.operations:
            for prefix in (API_PREFIX + "/{version}", API_PREFIX):
                app.router.add_route(op.method, prefix + op.path, self._handler(op))

    def _handler(self, op: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            prettify = _flag(request.query.get("prettify"))
            element = _element_id(request)
            try:
                authorize(request)
                requested = self._requested_version(request)
                found = op.version_for(requested)
                if found is None:
                    raise NotFound(f"{op.action} does not exist in API version {requested}")
                _, version = found
                call = Call(
                    store=request.app[STORE_KEY],
                    app=request.app,
                    version=requested,
                    params=await _params(request, version.params),
                    path=request.match_info,
                    reason=_reason(request),
                )
                if op.method in MODIFICATIONS:
                    change = Change(
                        token=request[TOKEN_IDENTITY],
                        surface="native",
                        action=op.action,
                        reason=call.reason,
                        targets=path_ids(request),
                    )
                    with recording(change):
                        answer = await version.code(call)
                else:
                    answer = await version.code(call)
            except ApiError as exc:
                headers = (
                    {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else {}
                )
                envelope = {"action": op.action, "id": element, "result": "error"}
                envelope["errorDetails"] = exc.message
                return _respond(envelope, exc.status, prettify, headers)
            envelope = {"action": op.action, "id": answer.id or element, "result": "success"}
            envelope["data"] = answer.data
            return _respond(envelope, 200, prettify)

        return handle

    def _requested_version(self, request: web.Request) -> int:
        in_url = request.match_info.get("version")
        if in_url is not None:
            if in_url == LATEST:
                return self.latest
            if not _INTEGER.match(in_url):
                raise NotFound(f"no such path: {in_url!r} is not an API version")
            number = int(in_url)
            if not 1 <= number <= self.latest:
                raise NotFound(f"API version {number} does not exist; versions: {self.available}")
            return number
        header = request.headers.get(VERSION_HEADER, LATEST).strip()
        if header == LATEST:
            return self.latest
        if not _INTEGER.match(header) or not 1 <= int(header) <= self.latest:
            raise BadRequest(
                f"{VERSION_HEADER} {header!r} is not an API version; versions: {self.available}"
            )
        return int(header)


def _element_id(request: web.Request) -> str | None:
    """The id the path names (the last path parameter other than the version), if any."""
    ids = path_ids(request)
    return ids[-1] if ids else None


def _flag(raw: str | None) -> bool:
    return raw is not None and raw.strip().lower() in ("", "true", "1", "yes")


def _reason(request: web.Request) -> str | None:
    reason = request.query.get("reason")
    if reason is None or request.method not in MODIFICATIONS:
        return None
    if len(reason) > MAX_REASON:
        raise BadRequest(f"reason: at most {MAX_REASON} characters")
    return reason


async def _params(request: web.Request, kind: type[msgspec.Struct] | None) -> Any:
    """The call's parameters: the JSON body, or the query and form parameters."""
    if kind is None:
        return None
    body = b""
    if request.method in ("PUT", "POST") and request.can_read_body:
        body = await read_body(request, MAX_BODY_BYTES)
    if request.content_type == "application/json" or body.lstrip()[:1] == b"{":
        return decode_json(body or b"{}", kind)
    fields = {k: v for k, v in request.query.items() if k not in GENERAL_PARAMETERS}
    if body:
        try:
            fields.update(
                parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
            )
        except UnicodeDecodeError:
            raise BadRequest("form parameters must be UTF-8") from None
        except ValueError as exc:  # too many fields
            raise BadRequest(f"form parameters: {exc}") from None
    return decode_fields(fields, kind)


_ENCODER = msgspec.json.Encoder()


def _respond(
    envelope: dict[str, Any], status: int, prettify: bool, headers: Mapping[str, str] = {}
) -> web.Response:
    if envelope["id"] is None:
        del envelope["id"]
    body = _ENCODER.encode(envelope)
    if prettify:
        body = msgspec.json.format(body, indent=2)
    return web.Response(
        body=body, status=status, content_type="application/json", headers=dict(headers)
    )
