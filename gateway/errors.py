"""API errors, turned into HTTP responses in one place (:func:`error_response`).

Both ports answer errors as JSON ``{"code": "...", "message": "..."}``. SDKs retry 429 and 5xx
and give up on other 4xx, so a 4xx must mean "this request can never succeed" — anything
transient is a 429 or 503 with ``Retry-After``.
"""

from __future__ import annotations

from aiohttp import web


class ApiError(Exception):
    status = 400
    code = "bad_request"
    retry_after_s: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class InvalidJson(BadRequest):
    code = "invalid_json"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedEncoding(ApiError):
    status = 415
    code = "unsupported_encoding"


class Unavailable(ApiError):
    """Something the gateway depends on (Kafka, the catalog database) does not answer."""

    status = 503
    code = "unavailable"
    retry_after_s = 2


def error_response(exc: ApiError) -> web.Response:
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
    return web.json_response(
        {"code": exc.code, "message": exc.message}, status=exc.status, headers=headers
    )
