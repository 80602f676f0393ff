"""One memory budget (``ingest.max_inflight_bytes``) against a real ``gateway serve`` process.

The issue's case: many connections each send a few KB of gzip that inflates to 4 MB and then
stall (or send it whole, many at once). The gateway's resident memory must stay within a bound
derived from the budget, every such request gets a 4xx (401, 413, 429 or 408 — never a 5xx),
and the stalled connections are closed after the read timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from gateway.broker import EmbeddedBroker, free_port
from gateway.config import Settings
from tests.conftest import (
    GatewayFactory,
    basic_auth,
    closed_by_server,
    consume_all,
    gateway_settings,
    ingest_url,
    metric_value,
    read_reply,
    request_head,
    rss_bytes,
    settings_toml,
    wait_ready,
)

MIB = 1024 * 1024
BUDGET_BYTES = 16 * MIB
READ_TIMEOUT_S = 3.0
CONNECTIONS = 30
# 4 MB of JSON that gzip shrinks to a few KB, without a write key (it would be in the body).
BOMB_JSON = b'{"pad": "' + b"a" * (4 * 1000 * 1000 - 20) + b'"}'
BOMB = gzip.compress(BOMB_JSON)
# The resident-memory bound the README states: the budget three times over (a body, its
# inflated copy and parsed document can coexist for the request being parsed) plus what the
# connections themselves cost.
RSS_GROWTH_BOUND_BYTES = 3 * BUDGET_BYTES + 16 * MIB


@dataclass
class Served:
    pid: int
    port: int
    base: str


@contextlib.asynccontextmanager
async def gateway_process(settings: Settings, tmp_path: Path) -> AsyncIterator[Served]:
    config = tmp_path / "gateway.toml"
    config.write_text(settings_toml(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "gateway", "serve", "--config", str(config)),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    base = f"http://127.0.0.1:{settings.ingest.port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, f"{base}/health/ready")
        yield Served(proc.pid, settings.ingest.port, base)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert b"Traceback" not in log_path.read_bytes(), log_path.read_text()[-3000:]


def budget_settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    return gateway_settings(
        broker,
        tmp_path,
        ingest={
            "port": free_port(),
            "max_inflight_bytes": BUDGET_BYTES,
            "read_timeout_s": READ_TIMEOUT_S,
        },
        admin={"port": free_port()},
        log={"level": "warning"},
    )


async def stalled_bomb(port: int, results: list[int], closed: list[bool]) -> None:
    """Sends the whole bomb but declares more, then stalls; records the answer and the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = {"Content-Encoding": "gzip", "Content-Type": "text/plain"}
        writer.write(request_head("POST", "/v1/t", head, content_length=len(BOMB) + 1000))
        writer.write(BOMB)
        await writer.drain()
        async with asyncio.timeout(READ_TIMEOUT_S * 10):
            results.append((await read_reply(reader)).status)
            closed.append(await closed_by_server(reader))
    finally:
        writer.close()


async def whole_bomb(http: aiohttp.ClientSession, url: str, results: list[int]) -> None:
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain"}
    async with http.post(url, data=BOMB, headers=headers) as resp:
        body = orjson.loads(await resp.read())
        assert body["code"]
        assert body["message"]
        results.append(resp.status)


async def test_gzip_bombs_and_stalled_clients_stay_within_the_budget(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    async with gateway_process(budget_settings(broker, tmp_path), tmp_path) as served:
        async with aiohttp.ClientSession() as http:
            # Warm up: the code paths of a normal request are loaded before the baseline.
            for _ in range(5):
                doc = {"userId": "u1", "event": "Warm"}
                async with http.post(
                    f"{served.base}/v1/track", json=doc, headers=basic_auth()
                ) as resp:
                    assert resp.status == 200
            baseline = rss_bytes(served.pid)
            peak = baseline
            sampling = True

            async def sample() -> None:
                nonlocal peak
                while sampling:
                    peak = max(peak, rss_bytes(served.pid))
                    await asyncio.sleep(0.02)

            sampler = asyncio.create_task(sample())
            stalled: list[int] = []
            closed: list[bool] = []
            whole: list[int] = []
            await asyncio.gather(
                *(stalled_bomb(served.port, stalled, closed) for _ in range(CONNECTIONS)),
                *(whole_bomb(http, f"{served.base}/v1/t", whole) for _ in range(CONNECTIONS)),
            )
            sampling = False
            await sampler
        growth = peak - baseline
        print(f"RSS baseline {baseline / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB")
        assert growth < RSS_GROWTH_BOUND_BYTES, f"RSS grew by {growth / MIB:.1f} MiB"
        # The stalled ones waited for the rest of their body: 408 after the read timeout, closed.
        assert stalled == [408] * CONNECTIONS
        assert all(closed)
        # The whole ones were read: no write key (401), or no room in the budget (429).
        assert set(whole) <= {401, 429}, whole
        assert 401 in whole


async def test_spent_budget_answers_429_before_reading(make_gateway: GatewayFactory) -> None:
    """With the budget held by a slow upload's bytes, the next request is refused at once."""
    gw = await make_gateway(ingest={"max_inflight_bytes": 4 * MIB, "max_request_bytes": 4 * MIB})
    assert gw.ingest_port is not None
    _, writer = await asyncio.open_connection("127.0.0.1", gw.ingest_port)
    try:
        # Sends all but the last few bytes of a 4 MiB body, then stalls: the bytes that
        # arrived are what it holds.
        writer.write(request_head("POST", "/v1/batch", basic_auth(), content_length=4 * MIB))
        writer.write(b'{"batch": [' + b" " * (4 * MIB - 64))
        await writer.drain()
        async with aiohttp.ClientSession() as http:
            status = None
            for _ in range(100):  # until the slow upload's bytes have been read
                async with http.post(
                    ingest_url(gw, "/v1/track"), json={"userId": "u", "event": "E"}
                ) as resp:
                    status = resp.status
                if status == 429:
                    break
                await asyncio.sleep(0.1)
            assert status == 429
            # A body-key request (analytics.js) is charged too, and gets 429 before its body.
            async with http.post(
                ingest_url(gw, "/v1/t"),
                json={"writeKey": "wk_test_source", "userId": "u", "event": "E"},
            ) as resp:
                assert resp.status == 429
                assert resp.headers["Retry-After"]
                assert (await resp.json())["code"] == "overloaded"
    finally:
        writer.close()


async def test_declared_lengths_alone_do_not_spend_the_budget(
    make_gateway: GatewayFactory,
) -> None:
    """Connections that send headers declaring 4 MiB bodies, then nothing, held the whole
    budget for the read timeout: every SDK request got 429. Only bytes that arrive count."""
    gw = await make_gateway(ingest={"max_inflight_bytes": 16 * MIB, "max_request_bytes": 4 * MIB})
    assert gw.ingest_port is not None
    writers = []
    try:
        for _ in range(8):  # declares 32 MiB in all, twice the budget
            _, writer = await asyncio.open_connection("127.0.0.1", gw.ingest_port)
            writer.write(request_head("POST", "/v1/t", {}, content_length=4 * MIB))
            await writer.drain()
            writers.append(writer)
        async with aiohttp.ClientSession() as http:
            async with http.get(ingest_url(gw, "/metrics")) as resp:
                assert metric_value(await resp.text(), "gateway_inflight_bytes") < MIB
            async with http.post(
                ingest_url(gw, "/v1/track"),
                json={"userId": "u", "event": "E"},
                headers=basic_auth(),
            ) as resp:
                assert resp.status == 200
    finally:
        for writer in writers:
            writer.close()


async def test_records_amplified_by_a_shared_context_are_charged(
    make_gateway: GatewayFactory,
) -> None:
    """A 30 KB batch context merged into 2,500 small events makes ~75 MB of records from a
    ~200 KB body: with the budget partly held, that request is refused (429), not buffered."""
    gw = await make_gateway(ingest={"max_inflight_bytes": 16 * MIB, "max_request_bytes": 4 * MIB})
    assert gw.ingest_port is not None
    batch = {
        "context": {"pad": "x" * 30_000},
        "batch": [{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(2500)],
    }
    _, writer = await asyncio.open_connection("127.0.0.1", gw.ingest_port)
    try:
        # Another request holds part of the budget: a slow upload that sent 1 MiB of 2.
        writer.write(request_head("POST", "/v1/batch", basic_auth(), content_length=2 * MIB))
        writer.write(b'{"batch": [' + b" " * MIB)
        await writer.drain()
        async with aiohttp.ClientSession() as http:
            for _ in range(50):  # until the slow upload's headers have been seen
                async with http.get(ingest_url(gw, "/metrics")) as resp:
                    used = metric_value(await resp.text(), "gateway_inflight_bytes")
                if used >= MIB:
                    break
                await asyncio.sleep(0.1)
            async with http.post(
                ingest_url(gw, "/v1/batch"), json=batch, headers=basic_auth()
            ) as resp:
                assert resp.status == 429
                assert (await resp.json())["code"] == "overloaded"
                assert resp.headers["Retry-After"]
    finally:
        writer.close()
    events = await consume_all(gw.settings.kafka.bootstrap_servers, gw.settings.kafka.events_topic)
    assert events == []
