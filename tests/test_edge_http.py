"""Smaller hardening of the public port: deflate, disconnects, proxies, probes, metrics, CORS."""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.ingest.client_ip import ClientAddress
from gateway.server import Gateway
from tests.conftest import (
    GatewayFactory,
    basic_auth,
    consume,
    ingest_url,
    metric_value,
    read_reply,
    request_head,
)

EVENT = {"userId": "u1", "event": "E"}


async def post(
    gw: Gateway, path: str, data: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(ingest_url(gw, path), data=data, headers=headers) as resp,
    ):
        return resp.status, orjson.loads(await resp.read()) if resp.status != 200 else {}


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.text()


# --- Content-Encoding: deflate --------------------------------------------------------------


@pytest.mark.parametrize("wbits", [-15, 15], ids=["raw-deflate", "zlib"])
async def test_deflate_body_raw_or_zlib(gateway: Gateway, wbits: int) -> None:
    packer = zlib.compressobj(wbits=wbits)
    body = packer.compress(orjson.dumps({**EVENT, "messageId": f"m{wbits}"})) + packer.flush()
    status, _ = await post(
        gateway, "/v1/track", body, {**basic_auth(), "Content-Encoding": "deflate"}
    )
    assert status == 200
    [record] = await consume(
        gateway.settings.kafka.bootstrap_servers, gateway.settings.kafka.events_topic, 1
    )
    assert orjson.loads(record.value)["messageId"] == f"m{wbits}"


@pytest.mark.parametrize(
    ("encoding", "wbits", "cut"),
    [("gzip", 31, 8), ("gzip", 31, 1), ("deflate", 15, 3), ("deflate", 15, 1)],
    ids=["gzip-no-trailer", "gzip-short-trailer", "zlib-no-checksum", "zlib-short-checksum"],
)
async def test_truncated_stream_is_a_400_even_when_its_json_is_whole(
    gateway: Gateway, encoding: str, wbits: int, cut: int
) -> None:
    """Cut inside the trailer, the stream still inflates to whole JSON; without its end and
    checksum it is not the body the client sent."""
    packer = zlib.compressobj(wbits=wbits)
    body = packer.compress(orjson.dumps(EVENT)) + packer.flush()
    status, error = await post(
        gateway, "/v1/track", body[:-cut], {**basic_auth(), "Content-Encoding": encoding}
    )
    assert status == 400
    assert error["code"] == "invalid_json"
    assert "truncated" in error["message"]


# --- a client that goes away mid-body --------------------------------------------------------


async def test_disconnect_mid_body_is_no_server_error(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    assert gateway.ingest_port is not None
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.ingest_port)
    writer.write(request_head("POST", "/v1/track", basic_auth(), content_length=1000))
    writer.write(b'{"userId": ')
    await writer.drain()
    await asyncio.sleep(0.2)  # let the handler start reading
    writer.close()
    metrics_url = ingest_url(gateway, "/metrics")
    async with asyncio.timeout(20):
        while True:
            _, _, text = await get(metrics_url)
            if metric_value(text, "gateway_request_duration_seconds_count", status="499"):
                break
            await asyncio.sleep(0.1)
    assert metric_value(text, "gateway_request_duration_seconds_count", status="500") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# --- malformed HTTP ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10_000 + b"\r\n\r\n",
        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    ],
    ids=["long-line", "long-header", "bad-length"],
)
async def test_malformed_http_gets_a_json_400(
    gateway: Gateway, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    assert gateway.ingest_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.ingest_port)
    writer.write(raw)
    await writer.drain()
    async with asyncio.timeout(20):
        reply = await read_reply(reader)
    writer.close()
    assert reply.status == 400
    assert reply.json()["code"] == "bad_request"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# --- X-Forwarded-For and trusted proxies -----------------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "expected"),
    [
        # The default: the loopback peer is a proxy; the address it saw is the client.
        (("127.0.0.0/8", "::1/128"), "198.51.100.1, 203.0.113.9", "203.0.113.9"),
        # Nobody trusted: the header is anyone's to write and is ignored.
        ((), "203.0.113.9", "127.0.0.1"),
        # A chain of trusted proxies is walked from the right.
        (("127.0.0.0/8", "10.0.0.0/8"), "198.51.100.1, 203.0.113.9, 10.1.2.3", "203.0.113.9"),
    ],
    ids=["loopback-default", "none", "chain"],
)
async def test_forwarded_for_only_from_trusted_proxies(
    make_gateway: GatewayFactory, trusted: tuple[str, ...], forwarded_for: str, expected: str
) -> None:
    gw = await make_gateway(ingest={"trusted_proxies": trusted})
    status, _ = await post(
        gw, "/v1/track", orjson.dumps(EVENT), {**basic_auth(), "X-Forwarded-For": forwarded_for}
    )
    assert status == 200
    [record] = await consume(gw.settings.kafka.bootstrap_servers, gw.settings.kafka.events_topic, 1)
    assert orjson.loads(record.value)["request_ip"] == expected


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("10.0.0.5", "203.0.113.9", "203.0.113.9"),
        ("198.51.100.7", "203.0.113.9", "198.51.100.7"),  # peer not a proxy
        ("10.0.0.5", "<script>, 10.0.0.6", "10.0.0.6"),  # junk stops the walk
        ("10.0.0.5", " , ", "10.0.0.5"),
        ("10.0.0.5", "10.0.0.6, 10.0.0.7", "10.0.0.6"),  # all proxies: the farthest one
        ("::ffff:10.0.0.5", "2001:db8::1", "2001:db8::1"),  # IPv4-mapped peer
    ],
)
def test_client_address(peer: str, forwarded_for: str, expected: str) -> None:
    assert ClientAddress(["10.0.0.0/8"]).of(peer, forwarded_for) == expected


# --- readiness is probed at most once a second ------------------------------------------------


async def test_hammered_readiness_probes_kafka_once_a_second(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = 0
    real_probe = gateway.publisher.probe

    async def counted(timeout_s: float) -> bool:
        nonlocal probes
        probes += 1
        return await real_probe(timeout_s)

    monkeypatch.setattr(gateway.publisher, "probe", counted)
    await asyncio.sleep(1.1)  # past whatever was cached at startup
    url = ingest_url(gateway, "/health/ready")
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:

        async def hit() -> int:
            async with http.get(url) as resp:
                return resp.status

        for _ in range(4):
            assert set(await asyncio.gather(*(hit() for _ in range(50)))) == {200}
    elapsed = time.monotonic() - started
    # 200 hits; one probe per second of hammering (and one for a second begun).
    assert 1 <= probes <= int(elapsed) + 2, (probes, elapsed)


# --- /metrics and /openapi.json off the public port -------------------------------------------


async def test_metrics_listener_and_a_public_port_without_internals(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(
        ingest={"serve_metrics_and_openapi": False},
        metrics={"enabled": True, "host": "127.0.0.1", "port": 0},
    )
    for path in ("/metrics", "/openapi.json"):
        status, _, body = await get(ingest_url(gw, path))
        assert status == 404
        assert orjson.loads(body)["code"] == "not_found"
    assert (await get(ingest_url(gw, "/health/live")))[0] == 200
    base = f"http://127.0.0.1:{gw.metrics_port}"
    status, _, text = await get(f"{base}/metrics")
    assert status == 200
    assert "gateway_inflight_bytes" in text
    assert (await get(f"{base}/health/ready"))[0] == 200
    assert (await get(f"{base}/openapi.json"))[0] == 404  # only metrics and health there


async def test_internals_stay_on_the_admin_port(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ingest={"serve_metrics_and_openapi": False})
    for path in ("/metrics", "/openapi.json"):
        status, _, _ = await get(f"http://127.0.0.1:{gw.admin_port}{path}")
        assert status == 200


# --- CORS only on SDK routes ------------------------------------------------------------------

ORIGIN = {"Origin": "https://shop.example"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/no/such/path"),
        ("OPTIONS", "/metrics"),
        ("OPTIONS", "/no/such/path"),
    ],
)
async def test_no_cors_headers_off_the_sdk_routes(gateway: Gateway, method: str, path: str) -> None:
    headers = {**ORIGIN, "Access-Control-Request-Method": "GET"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, ingest_url(gateway, path), headers=headers) as resp,
    ):
        await resp.read()
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert resp.status < 500


async def test_sdk_route_errors_keep_cors_headers(gateway: Gateway) -> None:
    """A browser must be able to read why its request failed."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            ingest_url(gateway, "/v1/track"), data=b"{", headers={**ORIGIN, **basic_auth()}
        ) as resp,
    ):
        assert resp.status == 400
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
