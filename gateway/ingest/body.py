"""Reading request bodies: any content type, optional gzip, limits on the decompressed size.

analytics.js posts ``text/plain`` and rudder-sdk-node posts form-encoded gzip, so the body is
parsed as JSON whatever the ``Content-Type``. The size limit applies to the decompressed body and
is enforced while decompressing, so a gzip bomb costs at most ``max_bytes`` of memory.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from aiohttp import web

from gateway.ingest.errors import InvalidJson, PayloadTooLarge, UnsupportedEncoding

CHUNK = 64 * 1024


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return await _read_limited(request, max_bytes)
    if encoding in ("gzip", "x-gzip", "deflate"):
        return await _read_inflated(request, max_bytes, encoding)
    raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported (use gzip)")


async def _read_limited(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_inflated(request: web.Request, max_bytes: int, encoding: str) -> bytes:
    # wbits 47 = auto-detect zlib or gzip header; deflate may also come raw (-15).
    inflater = zlib.decompressobj(47 if encoding != "deflate" else 15 + 32)
    out: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            data = chunk
            while data:
                # max_length bounds every step, so one small chunk cannot expand without limit.
                piece = inflater.decompress(data, max_bytes - size + 1)
                size += len(piece)
                if size > max_bytes:
                    raise _too_large(max_bytes, decompressed=True)
                out.append(piece)
                data = inflater.unconsumed_tail
            if inflater.eof:
                break
        tail = inflater.flush()
    except zlib.error as exc:
        raise InvalidJson(f"body is not valid {encoding}: {exc}") from None
    size += len(tail)
    if size > max_bytes:
        raise _too_large(max_bytes, decompressed=True)
    out.append(tail)
    return b"".join(out)


def _too_large(max_bytes: int, *, decompressed: bool = False) -> PayloadTooLarge:
    what = "decompressed body" if decompressed else "body"
    return PayloadTooLarge(f"{what} exceeds the limit of {max_bytes} bytes")


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise InvalidJson("body is empty; expected a JSON object")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidJson(f"body must be a JSON object, not {type(doc).__name__}")
    return doc
