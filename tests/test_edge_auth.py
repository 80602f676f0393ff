"""A write key in the Basic header or the query is checked before the body is read.

The client declares a large body and sends none of it: an unknown key (401) or a disabled source
(404) is answered at once — long before the read timeout, which is set far beyond the wait here.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.server import Gateway
from tests.conftest import (
    DISABLED_KEY,
    GatewayFactory,
    basic_auth,
    read_reply,
    request_head,
)

DECLARED_BYTES = 3 * 1024 * 1024
# Far below the read timeout below: the answer cannot be the 408.
WAIT_S = 20.0
READ_TIMEOUT_S = 600.0


@pytest.fixture
async def patient_gateway(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway(ingest={"read_timeout_s": READ_TIMEOUT_S})


@pytest.mark.parametrize(
    ("where", "key", "status", "code"),
    [
        ("basic", "wk_nobody", 401, "unauthorized"),
        ("query", "wk_nobody", 401, "unauthorized"),
        ("basic", DISABLED_KEY, 404, "source_disabled"),
        ("query", DISABLED_KEY, 404, "source_disabled"),
    ],
)
async def test_refused_without_reading_the_body(
    patient_gateway: Gateway, where: str, key: str, status: int, code: str
) -> None:
    assert patient_gateway.ingest_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", patient_gateway.ingest_port)
    try:
        path = "/v1/batch" if where == "basic" else f"/v1/batch?writeKey={key}"
        headers = basic_auth(key) if where == "basic" else {}
        writer.write(request_head("POST", path, headers, content_length=DECLARED_BYTES))
        await writer.drain()  # and no body at all
        async with asyncio.timeout(WAIT_S):
            reply = await read_reply(reader)
        assert reply.status == status
        assert reply.json()["code"] == code
    finally:
        writer.close()


async def test_query_key_wins_over_a_body_key(patient_gateway: Gateway) -> None:
    """The key that decides is the one checked before reading, whatever the body says."""
    assert patient_gateway.ingest_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", patient_gateway.ingest_port)
    try:
        body = b'{"writeKey": "wk_test_source", "userId": "u1", "event": "E"}'
        head = request_head("POST", "/v1/t?writeKey=wk_nobody", {}, content_length=len(body))
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(WAIT_S):
            reply = await read_reply(reader)
        assert reply.status == 401
    finally:
        writer.close()


@pytest.mark.parametrize(
    "value",
    ["Basic \u00e9t\u00e9", "Basic \x80", "Basic d2tfdGVzdF9zb3VyY2U6\u00ff", "basic \ud7ff=="],
    ids=["latin", "c1-control", "valid-then-not", "bmp"],
)
@pytest.mark.parametrize("port", ["ingest", "admin"])
async def test_basic_auth_with_any_characters_is_a_401(
    make_gateway: GatewayFactory, port: str, value: str
) -> None:
    """Non-ASCII in a Basic header is not base64: a 401 on either port, never a 500."""
    gw = await make_gateway(admin={"tokens": ("an-admin-token",)})
    port_number = gw.ingest_port if port == "ingest" else gw.admin_port
    assert port_number is not None
    path = "/v1/track" if port == "ingest" else "/catalog/tracking-plans"
    reader, writer = await asyncio.open_connection("127.0.0.1", port_number)
    try:
        body = b'{"userId": "u1", "event": "E"}' if port == "ingest" else b""
        head = request_head(
            "POST" if port == "ingest" else "GET",
            path,
            {"Authorization": value},
            content_length=len(body),
        )
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(WAIT_S):
            reply = await read_reply(reader)
        assert reply.status == 401
        assert reply.json()["code"] == "unauthorized"
    finally:
        writer.close()
