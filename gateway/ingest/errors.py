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
    """JSON the route cannot take: a batch without a non-empty `batch` array, or a Host header
    that is not a host name."""

    code = "invalid_request"


class SourceDisabled(ApiError):
    """The write key's source is disabled."""

    status = 404
    code = "source_disabled"


class Overloaded(ApiError):
    """The gateway is at its limits: too many events wait for Kafka
    (`ingest.max_inflight_events`), or the bytes of requests in flight reached
    `ingest.max_inflight_bytes`. Retry after `Retry-After` seconds."""

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
