"""Typed request errors, turned into HTTP responses in one place (:func:`error_response`).

SDKs retry 429 and 5xx and give up on other 4xx, so a 400 must mean "this request can never
succeed" — anything transient is a 429 or 503 with ``Retry-After``.
"""

from __future__ import annotations

from aiohttp import web


class IngestError(Exception):
    status = 400
    code = "bad_request"
    retry_after_s: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidJson(IngestError):
    code = "invalid_json"


class InvalidRequest(IngestError):
    code = "invalid_request"


class Unauthorized(IngestError):
    status = 401
    code = "unauthorized"


class SourceDisabled(IngestError):
    status = 404
    code = "source_disabled"


class PayloadTooLarge(IngestError):
    status = 413
    code = "payload_too_large"


class UnsupportedEncoding(IngestError):
    status = 415
    code = "unsupported_encoding"


class Overloaded(IngestError):
    status = 429
    code = "overloaded"
    retry_after_s = 1


class Unavailable(IngestError):
    status = 503
    code = "unavailable"
    retry_after_s = 2


def error_response(exc: IngestError) -> web.Response:
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
    return web.json_response(
        {"code": exc.code, "message": exc.message}, status=exc.status, headers=headers
    )
