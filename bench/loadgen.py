"""The load generator used where ``wrk`` is not installed: ``python -m bench.loadgen``.

Same contract as ``bench/wrk.lua``: keep-alive connections POST pre-generated bodies (one per
line of a file) round-robin, each connection optionally pausing between requests (random
pauses with a given mean), and one ``BENCH {json}`` line with the figures is printed at the
end. With ``--stamp``, the ``@ID@`` in a body becomes a unique messageId per request, and the
figures list the statuses and the messageIds answered 200. Requests are pre-encoded bytes and
responses are read with a minimal HTTP/1.1 parser, so the generator costs little CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from bench.measure import percentile


class Counts:
    def __init__(self) -> None:
        self.requests = 0
        self.non_2xx = 0
        self.socket_errors = 0
        self.latencies_us: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.acked: list[str] = []


async def _connection(
    host: str, port: int, requests: list[bytes], first: int, stop_at: float, delay_s: float,
    counts: Counts, stamp: str = "",
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        counts.socket_errors += 1
        return
    index = first
    sent = 0
    message_id = ""
    try:
        while loop.time() < stop_at:
            started = time.perf_counter()
            request = requests[index % len(requests)]
            index += 1
            if stamp:
                sent += 1
                message_id = f"{stamp}{first // 7 + 1}-{sent}"
                request = _stamped(request, message_id)
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            counts.latencies_us.append((time.perf_counter() - started) * 1e6)
            counts.requests += 1
            counts.non_2xx += not 200 <= status < 300
            counts.statuses[status] += 1
            if stamp and status == 200:
                counts.acked.append(message_id)
            message_id = ""
            if delay_s:
                # Random pauses with the given mean, as in wrk.lua: no synchronised bursts.
                await asyncio.sleep(random.expovariate(1 / delay_s))
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
        counts.socket_errors += 1
        counts.statuses[0] += bool(message_id)  # a request without a response
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _stamped(request: bytes, message_id: str) -> bytes:
    """``request`` with the body's ``@ID@`` replaced; Content-Length is its last header."""
    head, body = request.split(b"\r\n\r\n", 1)
    body = body.replace(b"@ID@", message_id.encode(), 1)
    head = head.rsplit(b"\r\n", 1)[0] + b"\r\nContent-Length: %d" % len(body)
    return head + b"\r\n\r\n" + body


async def run(
    url: str,
    bodies: list[bytes],
    auth: str,
    connections: int,
    duration_s: float,
    delay_ms: float,
    stamp: str = "",
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
    head += f"Authorization: {auth}\r\n".encode() if auth else b""
    head += b"Content-Type: application/json\r\n"
    requests = [head + b"Content-Length: %d\r\n\r\n" % len(b) + b for b in bodies]
    counts = Counts()
    started = time.perf_counter()
    stop_at = asyncio.get_running_loop().time() + duration_s
    await asyncio.gather(
        *(
            _connection(host, port, requests, i * 7, stop_at, delay_ms / 1000, counts, stamp)
            for i in range(connections)
        )
    )
    latencies = sorted(counts.latencies_us)
    return {
        "requests": counts.requests,
        "duration_us": (time.perf_counter() - started) * 1e6,
        "non_2xx": counts.non_2xx,
        "socket_errors": counts.socket_errors,
        **{f"p{q}_us": percentile(latencies, q) or 0.0 for q in (50, 95, 99)},
        **(
            {"statuses": {str(k): n for k, n in counts.statuses.items()}, "acked": counts.acked}
            if stamp
            else {}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("--bodies", type=Path, required=True, help="one request body per line")
    parser.add_argument("--auth", default="", help="Authorization header value, if any")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--stamp", default="", help="messageId prefix replacing @ID@ in bodies")
    args = parser.parse_args()
    bodies = args.bodies.read_bytes().splitlines()
    figures = asyncio.run(
        run(args.url, bodies, args.auth, args.connections, args.duration, args.delay_ms, args.stamp)
    )
    print("BENCH " + orjson.dumps(figures).decode(), flush=True)


if __name__ == "__main__":
    main()
