"""The attack side of the ``abuse`` scenario: ``python -m bench.attack URL ...``.

Runs in its own process (its CPU is not the gateway's), against loopback only, bounded in
time (``--duration``, then at most ``--read-timeout`` + a margin to collect the last answers)
and in count (a fixed number of slow connections, the other kinds at a fixed rate):

- ``slow``: ``--slow`` connections send a request's headers and a few bytes of its body, then
  stall (half of them) or trickle a byte a second (the other half); half name the write key
  in the Basic header, half would carry it in the body. Each should be answered 408 at the
  read timeout; it is re-opened at once, until the window ends.
- ``gzip_bomb``: a few KB of gzip that inflate past ``--max-request-bytes`` (413).
- ``regex``: 30 KB values against a backtracking-prone pattern and the ``email`` format
  (the scenario's plan has both), and the 20 KB identify email of the issue.
- oversized fields, one kind each: ``long_user_id``, a batch of a good event and one with a
  1.2 MB ``userId``; ``padded_context``, a 500 KB batch ``context`` over 2,500 small events;
  ``over_event_limit``, an event just over ``--max-event-bytes``.

Every request goes on a new connection. One ``ATTACK {json}`` line is printed at the end: per
kind, the answers by status (``closed``: the connection closed without an answer; ``error``:
refused or reset; ``timeout``: no answer within the bound), and the time the slow
connections waited for their answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import time
from base64 import b64encode
from collections import Counter, defaultdict
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

import orjson

SLOW_RAMP_S = 1.0  # slow connections open spread over this long (not one SYN burst)
TRICKLE_INTERVAL_S = 1.0
RATE_PER_S = {"gzip_bomb": 10.0, "regex": 10.0, "oversized": 1.0}  # oversized: the 3 in turn
SLUG_EVENT = "Slug Checked"  # the scenario's plan: slug pattern + email format
SLUG_PATTERN = "^([a-z0-9]+-?)+$"


class Attack:
    def __init__(self, url: str, write_key: str, answer_bound_s: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.write_key = write_key
        self.auth = "Basic " + b64encode(f"{write_key}:".encode()).decode()
        self.answer_bound_s = answer_bound_s
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.slow_waits_s: list[float] = []
        self.slow_count = 1

    def request(
        self, path: str, body: bytes, *, auth: bool = True, encoding: str = "", length: int = -1
    ) -> bytes:
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += f"Authorization: {self.auth}\r\n" if auth else ""
        head += f"Content-Encoding: {encoding}\r\n" if encoding else ""
        head += "Content-Type: application/json\r\nConnection: close\r\n"
        head += f"Content-Length: {len(body) if length < 0 else length}\r\n\r\n"
        return head.encode() + body

    async def send(self, kind: str, request: bytes) -> None:
        """One request on a new connection; its answer's status is counted under ``kind``."""
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.statuses[kind]["error"] += 1
            return
        try:
            writer.write(request)
            await writer.drain()
            status = await asyncio.wait_for(_status(reader), self.answer_bound_s)
        except TimeoutError:
            status = "timeout"
        except OSError:
            status = "error"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self.statuses[kind][status] += 1

    async def slow(self, index: int, stop_at: float) -> None:
        """One slow client, re-opened after each answer until ``stop_at``."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(SLOW_RAMP_S * index / self.slow_count)
        trickle = index % 2 == 1
        header_key = index % 4 < 2
        body = b'{"batch":[' if header_key else b'{"writeKey":"' + self.write_key.encode()
        request = self.request("/v1/batch", body, auth=header_key, length=8192)
        while loop.time() < stop_at:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                self.statuses["slow"]["error"] += 1
                await asyncio.sleep(0.5)
                continue
            started = loop.time()
            answer = asyncio.ensure_future(_status(reader))
            try:
                writer.write(request)
                while not answer.done() and loop.time() - started < self.answer_bound_s:
                    await asyncio.wait({answer}, timeout=TRICKLE_INTERVAL_S)
                    if trickle and not answer.done():
                        writer.write(b" ")
                status = answer.result() if answer.done() else "timeout"
            except OSError:
                status = "error"
            finally:
                answer.cancel()
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            self.statuses["slow"][status] += 1
            self.slow_waits_s.append(loop.time() - started)

    async def paced(
        self, kind: str, requests: list[tuple[str, bytes, int | None]], stop_at: float
    ) -> None:
        """``requests`` (name, request, most) in turn, each at most ``most`` times (None: no
        limit), at the kind's rate (each on its own task), until ``stop_at``; the answers are
        counted under the request's name."""
        loop = asyncio.get_running_loop()
        interval = 1 / RATE_PER_S[kind]
        pending: set[asyncio.Task[None]] = set()
        sent: Counter[int] = Counter()
        n = 0
        while loop.time() < stop_at:
            index = n % len(requests)
            n += 1
            name, request, most = requests[index]
            if most is not None and sent[index] >= most:
                continue
            sent[index] += 1
            task = asyncio.ensure_future(self.send(name, request))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(interval)
        if pending:
            await asyncio.wait(pending)

    async def run(self, duration_s: float, slow: int, limits: dict[str, int]) -> None:
        self.slow_count = max(1, slow)
        stop_at = asyncio.get_running_loop().time() + duration_s
        tasks: list[Awaitable[None]] = [self.slow(i, stop_at) for i in range(slow)]
        tasks += [
            self.paced("gzip_bomb", self.gzip_bombs(limits["max_request_bytes"]), stop_at),
            self.paced("regex", self.regex_inputs(), stop_at),
            self.paced(
                "oversized",
                self.oversized(limits["max_event_bytes"], limits["padded_batches"]),
                stop_at,
            ),
        ]
        await asyncio.gather(*tasks)

    def gzip_bombs(self, max_request_bytes: int) -> list[tuple[str, bytes, int | None]]:
        # Spaces are valid JSON whitespace: only the size limit can stop it.
        inflated = b" " * (max_request_bytes + 1024 * 1024)
        with_key = gzip.compress(b'{"writeKey":"' + self.write_key.encode() + b'",' + inflated)
        no_key = gzip.compress(b'{"batch":[' + inflated)
        return [
            ("gzip_bomb", self.request("/v1/batch", no_key, encoding="gzip"), None),
            ("gzip_bomb", self.request("/v1/batch", with_key, auth=False, encoding="gzip"), None),
        ]

    def regex_inputs(self) -> list[tuple[str, bytes, int | None]]:
        slug = {"slug": "a" * 30_000 + "!"}
        email = {"email": "a@" + "." * 30_000 + "@"}
        identify = {"userId": "u-regex", "traits": {"email": "a@" + "." * 20_000 + "@"}}
        return [
            ("regex", self.request("/v1/track", _json(_track(SLUG_EVENT, slug))), None),
            ("regex", self.request("/v1/track", _json(_track(SLUG_EVENT, email))), None),
            ("regex", self.request("/v1/identify", _json(identify)), None),
        ]

    def oversized(
        self, max_event_bytes: int, padded_batches: int
    ) -> list[tuple[str, bytes, int | None]]:
        """The padded batch is limited to ``padded_batches``: 2,500 events each carrying the
        500 KB context may make ~1.25 GB of quarantine records per request."""
        long_user = {
            "batch": [_track("Attack Good"), {**_track("Attack"), "userId": "u" * 1_200_000}]
        }
        padded = {"context": {"pad": "x" * 500_000}, "batch": [_track("Pad")] * 2500}
        just_over = _track("Just Over", {"pad": ""})
        just_over["properties"]["pad"] = "x" * (max_event_bytes + 1 - len(_json(just_over)))
        return [
            ("long_user_id", self.request("/v1/batch", _json(long_user)), None),
            ("over_event_limit", self.request("/v1/track", _json(just_over)), None),
            ("padded_context", self.request("/v1/batch", _json(padded)), padded_batches),
        ]


def _track(event: str, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "track", "event": event, "userId": "u-attack", "properties": properties or {}}


def _json(doc: Any) -> bytes:
    return orjson.dumps(doc)


async def _status(reader: asyncio.StreamReader) -> str:
    """The status of the answer (its head is enough), or ``closed``."""
    line = await reader.readline()
    parts = line.split()
    return parts[1].decode() if len(parts) >= 2 else "closed"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.attack")
    parser.add_argument("url", help="the gateway's ingest URL (loopback)")
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--slow", type=int, default=500, help="slow connections")
    parser.add_argument("--read-timeout", type=float, required=True, help="the gateway's")
    parser.add_argument("--max-request-bytes", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--max-event-bytes", type=int, default=32 * 1024)
    parser.add_argument("--padded-batches", type=int, default=1, help="at most this many")
    args = parser.parse_args()
    host = urlsplit(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    # An answer is due within the read timeout (slow clients) or Kafka's ack time; beyond
    # twice that plus a margin, it is counted as "timeout" and the connection dropped.
    attack = Attack(args.url, args.write_key, answer_bound_s=2 * args.read_timeout + 20)
    limits = {
        "max_request_bytes": args.max_request_bytes,
        "max_event_bytes": args.max_event_bytes,
        "padded_batches": args.padded_batches,
    }
    started = time.perf_counter()
    asyncio.run(attack.run(args.duration, args.slow, limits))
    waits = sorted(attack.slow_waits_s)
    out = {
        "seconds": round(time.perf_counter() - started, 3),
        "statuses": {kind: dict(counts) for kind, counts in sorted(attack.statuses.items())},
        "slow_wait_s": {"min": round(waits[0], 3), "max": round(waits[-1], 3)} if waits else {},
    }
    print("ATTACK " + orjson.dumps(out).decode(), flush=True)


if __name__ == "__main__":
    main()
