"""Reading request bodies on both ports: any content type, optional gzip/deflate, limits on the
decompressed size.

analytics.js posts ``text/plain`` and rudder-sdk-node posts form-encoded gzip, so the body is
parsed as JSON whatever the ``Content-Type``. A compressed body is read whole first and inflated
afterwards, so a client that stalls mid-body holds only the compressed bytes it sent; inflation
stops at ``max_bytes`` of output (a gzip bomb costs at most that much memory).

With a :class:`Hold` (the ingest port's, from its byte budget), every byte kept — read or
inflated — is charged to the ingest memory budget as it arrives (a declared
``Content-Length`` is only checked for room); the compressed bytes are given back once
inflated.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any, Protocol

import orjson
from aiohttp import web

from gateway.errors import InvalidJson, PayloadTooLarge, UnsupportedEncoding


class Hold(Protocol):
    """What a body read is charged to as it arrives (the ingest port's memory budget)."""

    def check_room(self, n: int) -> None: ...

    def grow(self, n: int) -> None: ...

    def shrink(self, n: int) -> None: ...


CHUNK = 64 * 1024
COMPRESSED = ("gzip", "x-gzip", "deflate")
# zlib window bits: 47 = gzip or zlib header (auto-detected); 15 = zlib; -15 = raw deflate.
GZIP_WBITS = 47
GZIP_MAGIC = b"\x1f\x8b"
GZIP_MIN_BYTES = 18  # a 10-byte header and an 8-byte trailer (CRC-32, inflated size)
# Deflate's best case: about 1,032 bytes out per byte in (long runs of one byte).
MAX_DEFLATE_RATIO = 1032
ZLIB_WBITS = 15
RAW_DEFLATE_WBITS = -15
# Output inflated on the event loop (well under a millisecond); the rest in worker threads, in
# steps of THREAD_INFLATE_BYTES each charged to the budget before the next.
LOOP_INFLATE_BYTES = 256 * 1024
THREAD_INFLATE_BYTES = 1024 * 1024


async def read_body(request: web.Request, max_bytes: int, hold: Hold | None = None) -> bytes:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return await _read_limited(request, max_bytes, hold)
    if encoding not in COMPRESSED:
        raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported (use gzip)")
    compressed = await _read_limited(request, compressed_limit(max_bytes), hold)
    body = await _inflate(compressed, max_bytes, encoding, hold)
    if hold is not None:
        hold.shrink(len(compressed))
    return body


def compressed_limit(max_bytes: int) -> int:
    """Largest compressed body that can still inflate within ``max_bytes``.

    Deflate stores incompressible data in blocks of at most 64 KiB with 5 bytes of overhead
    each, plus a gzip header and trailer; anything larger inflates beyond the limit.
    """
    return max_bytes + 5 * (max_bytes // 65535 + 1) + 64


async def _read_limited(request: web.Request, max_bytes: int, hold: Hold | None) -> bytes:
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    if hold is not None and declared is not None:
        # A body that could not fit is refused before a byte of it is read; but only what has
        # arrived is charged: a declared length alone (headers, then nothing) must not let a
        # handful of connections spend the whole budget for everyone.
        hold.check_room(declared)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        if hold is not None:
            hold.grow(len(chunk))  # charged as it arrives
        chunks.append(chunk)
    return b"".join(chunks)


async def _inflate(data: bytes, max_bytes: int, encoding: str, hold: Hold | None) -> bytes:
    """Inflate within ``max_bytes``, charging each step to the budget before the next.

    A bomb of a few KB costs milliseconds of CPU to inflate up to the limit: past the first
    :data:`LOOP_INFLATE_BYTES` (what ordinary SDK batches inflate to), the work runs in a worker
    thread (zlib releases the GIL while it inflates), so the event loop keeps serving others.
    """
    if _declares_too_much(data, max_bytes):
        raise _too_large(max_bytes, decompressed=True)
    inflater = zlib.decompressobj(GZIP_WBITS if encoding != "deflate" else _deflate_wbits(data))
    out: list[bytes] = []
    size = 0
    on_loop = True
    try:
        while not inflater.eof:
            step = LOOP_INFLATE_BYTES if on_loop else THREAD_INFLATE_BYTES
            limit = min(step, max_bytes - size + 1)
            if on_loop:
                pieces, data = _inflate_some(inflater, data, limit)
            else:
                pieces, data = await asyncio.to_thread(_inflate_some, inflater, data, limit)
            produced = sum(map(len, pieces))
            if not produced and not data:
                break  # input used up before the end of the stream: a truncated body
            size += produced
            if size > max_bytes:
                raise _too_large(max_bytes, decompressed=True)
            if hold is not None:
                hold.grow(produced)
            out.extend(pieces)
            on_loop = False
    except zlib.error as exc:
        raise InvalidJson(f"body is not valid {encoding}: {exc}") from None
    if not inflater.eof:
        # Even when what was inflated parses, the end of the stream and its checksum are
        # missing: the body is not what the client meant to send.
        raise InvalidJson(f"body is not valid {encoding}: the stream is truncated")
    return b"".join(out)


def _declares_too_much(data: bytes, max_bytes: int) -> bool:
    """Whether a gzip body's trailer states an inflated size over ``max_bytes``.

    The trailer's last field is the inflated size (modulo 2**32): a bomb made by any gzip tool
    is refused without inflating a byte. A size deflate cannot reach from this many bytes is
    no trailer (a truncated or corrupt body, which inflating then reports as such). A false
    size costs no more than before: inflation still stops at the limit, and zlib refuses a
    trailer that does not match what it inflated.
    """
    if data[:2] != GZIP_MAGIC or len(data) < GZIP_MIN_BYTES:
        return False
    declared = int.from_bytes(data[-4:], "little")
    return max_bytes < declared <= MAX_DEFLATE_RATIO * len(data)


def _inflate_some(inflater: Any, data: bytes, limit: int) -> tuple[list[bytes], bytes]:
    """Up to ``limit`` bytes of output (in CHUNK pieces) and the input left over."""
    pieces: list[bytes] = []
    produced = 0
    while produced < limit and not inflater.eof:
        # max_length bounds every step, so a small input cannot expand without limit.
        piece = inflater.decompress(data, min(CHUNK, limit - produced))
        data = inflater.unconsumed_tail
        if not piece and not data:
            break
        produced += len(piece)
        pieces.append(piece)
    return pieces, data


def _deflate_wbits(data: bytes) -> int:
    """HTTP's ``deflate`` is the zlib format, but many clients send a raw deflate stream."""
    looks_zlib = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
    return ZLIB_WBITS if looks_zlib else RAW_DEFLATE_WBITS


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
