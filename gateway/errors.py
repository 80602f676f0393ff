"""API errors, turned into HTTP responses in one place (:func:`error_response`).

Both ports answer errors as JSON ``{"code": "...", "message": "..."}``. SDKs retry 429 and 5xx
and give up on other 4xx, so a 4xx must mean "this request can never succeed" — anything
transient is a 429 or 503 with ``Retry-After``.
"""

from __future__ import annotations

from aiohttp import web


class ApiError(Exception):
    """Every API error: its HTTP status and ``code``, and in its docstring when it happens
    (``/openapi.json`` describes each status from these)."""

    status = 400
    code = "bad_request"
    retry_after_s: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    """The request can never succeed: a missing or invalid field or query parameter, or
    malformed HTTP (the connection is then closed)."""

    code = "bad_request"


class Unauthorized(ApiError):
    """No credentials, or unknown ones (admin token or write key)."""

    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    """The resource does not exist."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The resource is not in a state that allows this: cancelling a replay not running in
    this process, resuming one that runs or is done; promoting a shadow plan pinned to a past
    version, or a source without one."""

    status = 409
    code = "conflict"


class InvalidJson(BadRequest):
    """The body is empty, not valid JSON, not an object, or nested too deeply."""

    code = "invalid_json"


class PayloadTooLarge(ApiError):
    """The (decompressed) body is over the limit (`ingest.max_request_bytes` on the ingest
    port, 4 MiB on the admin port), or a batch has more than `ingest.max_batch_events`
    events."""

    status = 413
    code = "payload_too_large"


class UnsupportedEncoding(ApiError):
    """A `Content-Encoding` other than gzip or deflate."""

    status = 415
    code = "unsupported_encoding"


class Unavailable(ApiError):
    """Something the gateway depends on does not answer: Kafka did not acknowledge in time,
    no tracking-plan snapshot is loaded yet, or the catalog database is unavailable. Retry
    after `Retry-After` seconds."""

    status = 503
    code = "unavailable"
    retry_after_s = 2


def error_response(exc: ApiError) -> web.Response:
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
    return web.json_response(
        {"code": exc.code, "message": exc.message}, status=exc.status, headers=headers
    )
