"""The time to receive a request is bounded (``ingest.read_timeout_s``, ``admin.read_timeout_s``).

Real slow clients on raw sockets: headers that never finish, a body that trickles or stalls,
an idle keep-alive connection. Each gets a 408 with the JSON error body (where an answer is
possible) and its connection closed. The timeouts here are 1 s; the bounds on waiting are
generous (the test only needs the answer to come at all, and well before the 60 s test timeout).
"""

from __future__ import annotations

import asyncio

from gateway.server import Gateway
from tests.conftest import (
    ADMIN_BEARER,
    ADMIN_TOKEN,
    GatewayFactory,
    basic_auth,
    closed_by_server,
    read_reply,
    request_head,
)

SHORT_S = 1.0
# Far above SHORT_S: a stuck server fails the test instead of hanging it.
PATIENCE_S = 20.0


async def short_timeout_gateway(
    make_gateway: GatewayFactory, keepalive_timeout_s: float = SHORT_S
) -> Gateway:
    return await make_gateway(
        ingest={"read_timeout_s": SHORT_S, "keepalive_timeout_s": keepalive_timeout_s},
        admin={
            "read_timeout_s": SHORT_S,
            "keepalive_timeout_s": keepalive_timeout_s,
            "tokens": (ADMIN_TOKEN,),
        },
    )


async def connect(port: int | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert port is not None
    return await asyncio.open_connection("127.0.0.1", port)


async def assert_408_and_closed(reader: asyncio.StreamReader) -> None:
    async with asyncio.timeout(PATIENCE_S):
        reply = await read_reply(reader)
        assert reply.status == 408
        assert reply.json()["code"] == "request_timeout"
        assert reply.json()["message"]
        assert await closed_by_server(reader)


async def test_stalled_body_gets_408_and_is_closed(make_gateway: GatewayFactory) -> None:
    gw = await short_timeout_gateway(make_gateway)
    reader, writer = await connect(gw.ingest_port)
    writer.write(request_head("POST", "/v1/track", basic_auth(), content_length=1000))
    writer.write(b'{"userId": "u1", ')  # then nothing more
    await writer.drain()
    await assert_408_and_closed(reader)
    writer.close()


async def test_trickling_body_gets_408_although_bytes_keep_coming(
    make_gateway: GatewayFactory,
) -> None:
    """The bound is on the whole request, not on the pause between two bytes."""
    gw = await short_timeout_gateway(make_gateway)
    reader, writer = await connect(gw.ingest_port)
    writer.write(request_head("POST", "/v1/track", basic_auth(), content_length=100_000))
    await writer.drain()

    async def trickle() -> None:
        try:
            while True:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(SHORT_S / 10)
        except ConnectionError:
            pass

    trickling = asyncio.create_task(trickle())
    try:
        await assert_408_and_closed(reader)
    finally:
        trickling.cancel()
        writer.close()


async def test_incomplete_headers_get_408_and_are_closed(make_gateway: GatewayFactory) -> None:
    # A keep-alive time as short would close the connection first (silently, also fine).
    gw = await short_timeout_gateway(make_gateway, keepalive_timeout_s=PATIENCE_S)
    reader, writer = await connect(gw.ingest_port)
    writer.write(b"POST /v1/track HTTP/1.1\r\nHost: gateway.test\r\nContent-Le")
    await writer.drain()
    await assert_408_and_closed(reader)
    writer.close()


async def test_idle_keep_alive_connection_is_closed(make_gateway: GatewayFactory) -> None:
    gw = await short_timeout_gateway(make_gateway)
    reader, writer = await connect(gw.ingest_port)
    writer.write(request_head("GET", "/health/live", content_length=None))
    await writer.drain()
    async with asyncio.timeout(PATIENCE_S):
        reply = await read_reply(reader)
        assert reply.status == 200
        assert reply.headers.get("connection", "").lower() != "close"
        # Nothing more is sent: the idle connection is closed, silently.
        assert await closed_by_server(reader)
    writer.close()


async def test_connection_is_reused_after_a_timely_request(make_gateway: GatewayFactory) -> None:
    """Requests that arrive in time are not cut by a timer left over from an earlier one."""
    # A long keep-alive: the pauses below test the read timer, never the idle one.
    gw = await short_timeout_gateway(make_gateway, keepalive_timeout_s=60.0)
    reader, writer = await connect(gw.ingest_port)
    for _ in range(3):
        body = b'{"userId": "u1", "event": "E"}'
        writer.write(request_head("POST", "/v1/track", basic_auth(), content_length=len(body)))
        writer.write(body)
        await writer.drain()
        async with asyncio.timeout(PATIENCE_S):
            reply = await read_reply(reader)
        assert reply.status == 200, reply.body
        await asyncio.sleep(SHORT_S * 0.6)  # past half the read time
    writer.close()


async def test_admin_port_has_the_same_bound(make_gateway: GatewayFactory) -> None:
    gw = await short_timeout_gateway(make_gateway)
    reader, writer = await connect(gw.admin_port)
    writer.write(request_head("POST", "/catalog/tracking-plans", ADMIN_BEARER, content_length=1000))
    writer.write(b'{"name": ')
    await writer.drain()
    await assert_408_and_closed(reader)
    writer.close()
