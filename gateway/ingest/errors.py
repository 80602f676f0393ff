"""Ingest errors; every one is an :class:`~gateway.errors.ApiError` with its HTTP status."""

from __future__ import annotations

from gateway.errors import (
    ApiError,
    BadRequest,
    InvalidJson,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedEncoding,
    error_response,
)


class InvalidRequest(BadRequest):
    code = "invalid_request"


class SourceDisabled(ApiError):
    status = 404
    code = "source_disabled"


class Overloaded(ApiError):
    status = 429
    code = "overloaded"
    retry_after_s = 1


__all__ = [
    "InvalidJson",
    "InvalidRequest",
    "Overloaded",
    "PayloadTooLarge",
    "SourceDisabled",
    "Unauthorized",
    "Unavailable",
    "UnsupportedEncoding",
    "error_response",
]
