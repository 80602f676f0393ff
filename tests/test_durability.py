"""Durability under failure: 200 means in Kafka, and trouble answers 429/503 quickly.

- A paused broker (SIGSTOP) gets every request answered 503/429 with ``Retry-After`` within a
  bounded time, never a hang; once it resumes, requests succeed again and every event that got
  a 200 is on the topic.
- SIGTERM to a real ``gateway serve`` process under load: it exits 0 promptly and every event
  whose request got a 200 is on the topic.
- Kafka unreachable at start: not ready, ingest answers 503 with ``Retry-After``, no crash; it
  recovers once a broker appears.

Every loop is bounded in count and time; stopped or started processes are resumed or ended in
``finally`` blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.broker import EmbeddedBroker, free_port
from gateway.config import LogSettings
from gateway.logs import setup_logging
from gateway.metrics import Metrics
from gateway.publish.producer import LIBRDKAFKA_LOGGER, KafkaPublisher, KafkaUnavailable, Record
from gateway.server import Gateway
from tests.conftest import (
    basic_auth,
    consume_all,
    gateway_settings,
    headers_of,
    ingest_url,
    snapshot_doc,
    write_snapshot,
)

REPO = Path(__file__).resolve().parent.parent
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)


def new_batch(n: int, user: str = "user-1") -> tuple[dict[str, Any], list[str]]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    batch = [
        {
            "type": "track",
            "event": "Durability Probe",
            "userId": user,
            "messageId": mid,
            "properties": {"i": i},
        }
        for i, mid in enumerate(ids)
    ]
    return {"batch": batch}, ids


async def post_batch(
    http: aiohttp.ClientSession, url: str, n: int
) -> tuple[int, dict[str, str], list[str]]:
    body, ids = new_batch(n)
    async with http.post(url, json=body, headers=basic_auth()) as resp:
        await resp.read()
        return resp.status, dict(resp.headers), ids


def assert_retry_after(status: int, headers: dict[str, str]) -> None:
    assert status in (429, 503), status
    retry_after = headers.get("Retry-After")
    assert retry_after is not None, f"{status} without Retry-After"
    assert int(retry_after) > 0


async def message_ids_on(bootstrap_servers: str, topic: str) -> set[str]:
    records = await consume_all(bootstrap_servers, topic)
    return {headers_of(r)["message-id"] for r in records}


async def test_paused_broker_answers_quickly_and_loses_no_acked_event(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "dedicated-broker.log")
    await asyncio.to_thread(broker.start)
    gw: Gateway | None = None
    paused = False
    try:
        assert broker.process is not None
        pid = broker.process.pid
        settings = gateway_settings(
            broker, tmp_path, ingest={"ack_timeout_s": 2, "max_inflight_events": 50}
        )
        gw = Gateway(settings)
        await gw.start()
        assert await gw.publisher.wait_connected(15), "gateway did not connect to Kafka"
        url = ingest_url(gw, "/v1/batch")
        acked: set[str] = set()

        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            for _ in range(3):
                status, _, ids = await post_batch(http, url, 5)
                assert status == 200
                acked.update(ids)

            os.kill(pid, signal.SIGSTOP)
            paused = True
            try:
                started = time.monotonic()
                # 20 requests x 5 events: beyond the in-flight limit of 50, so some are turned
                # away at once (429) and the rest wait at most ack_timeout_s (503).
                async with asyncio.timeout(15):
                    results = await asyncio.gather(*(post_batch(http, url, 5) for _ in range(20)))
                elapsed = time.monotonic() - started
                for status, headers, _ in results:
                    assert_retry_after(status, headers)
                assert elapsed < 10, f"answers took {elapsed:.1f}s with ack_timeout_s=2"
                statuses = {status for status, _, _ in results}
                assert 503 in statuses, statuses

                # Readiness notices that Kafka stopped acknowledging (bounded probe).
                async with asyncio.timeout(10):
                    async with http.get(ingest_url(gw, "/health/ready")) as resp:
                        assert resp.status == 503
            finally:
                os.kill(pid, signal.SIGCONT)
                paused = False

            # After resuming, a request succeeds again within a bounded number of attempts.
            recovered = False
            deadline = time.monotonic() + 30
            for _ in range(60):
                if time.monotonic() > deadline:
                    break
                status, headers, ids = await post_batch(http, url, 5)
                if status == 200:
                    acked.update(ids)
                    recovered = True
                    break
                assert_retry_after(status, headers)
                await asyncio.sleep(0.5)
            assert recovered, "gateway did not accept events again after the broker resumed"

        on_kafka = await message_ids_on(broker.bootstrap_servers, settings.kafka.events_topic)
        missing = acked - on_kafka
        assert not missing, f"{len(missing)} acknowledged events are not in Kafka"
    finally:
        if paused:
            os.kill(pid, signal.SIGCONT)
        if gw is not None:
            await gw.stop()
        await asyncio.to_thread(broker.stop)


def write_config(tmp_path: Path, bootstrap_servers: str) -> tuple[Path, int, str]:
    suffix = uuid.uuid4().hex[:8]
    events_topic = f"events-{suffix}"
    snapshot = tmp_path / "snapshot.json"
    write_snapshot(snapshot, snapshot_doc())
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[ingest]
host = "127.0.0.1"
port = {port}
ack_timeout_s = 5.0

[admin]
host = "127.0.0.1"
port = {free_port()}

[kafka]
bootstrap_servers = "{bootstrap_servers}"
events_topic = "{events_topic}"
quarantine_topic = "quarantine-{suffix}"
idempotence = false
topic_partitions = 1
request_timeout_ms = 5000

[plans]
source = "file:{snapshot.name}"
cache_dir = "plans-cache"
refresh_interval_s = 1.0

[log]
level = "warning"
"""
    )
    return config, port, events_topic


async def wait_ready(
    http: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.returncode is None, f"gateway exited early with {proc.returncode}"
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise AssertionError(f"gateway not ready within {timeout_s}s")


async def streamed_request(url: str, release: asyncio.Event) -> tuple[int | None, list[str]]:
    """POST a batch whose body is sent in two parts, the second only once ``release`` is set."""
    body, ids = new_batch(5, user="in-flight")
    data = orjson.dumps(body)
    half = len(data) // 2

    async def chunks() -> AsyncIterator[bytes]:
        yield data[:half]
        await release.wait()
        yield data[half:]

    headers = {**basic_auth(), "Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        try:
            async with http.post(url, data=chunks(), headers=headers) as resp:
                await resp.read()
                return resp.status, ids
        except aiohttp.ClientError:
            return None, ids


async def new_connection_refused(url: str) -> bool:
    body, _ = new_batch(1)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT, connector=connector) as http:
        try:
            async with http.post(url, json=body, headers=basic_auth()) as resp:
                await resp.read()
        except aiohttp.ClientConnectorError:
            return True
    return False


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    base: str
    events_topic: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextlib.asynccontextmanager
async def gateway_process(tmp_path: Path, bootstrap_servers: str) -> AsyncIterator[Served]:
    """``gateway serve --config FILE`` as a real process, ready; killed on the way out if alive."""
    config, port, events_topic = write_config(tmp_path, bootstrap_servers)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(config),
            cwd=REPO,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    served = Served(proc, f"http://127.0.0.1:{port}", events_topic, log_path)
    try:
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            await wait_ready(http, f"{served.base}/health/ready", proc, 20)
        yield served
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_under_load_exits_cleanly_and_keeps_acked_events(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    acked: set[str] = set()
    acked_requests = 0
    rejected: list[int] = []
    async with gateway_process(tmp_path, broker.bootstrap_servers) as served:
        url = f"{served.base}/v1/batch"
        warmed_up = asyncio.Event()

        async def sender(budget: int) -> None:
            nonlocal acked_requests
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
                for _ in range(budget):
                    try:
                        status, _, ids = await post_batch(http, url, 3)
                    except (aiohttp.ClientError, TimeoutError):
                        return  # connection refused/reset once shutting down: expected
                    if status == 200:
                        acked.update(ids)
                        acked_requests += 1
                        if acked_requests >= 40:
                            warmed_up.set()
                    else:
                        rejected.append(status)

        async with asyncio.timeout(40):
            senders = [asyncio.create_task(sender(100)) for _ in range(4)]
            # SIGTERM mid-load: once some requests succeeded (or after 5 s regardless).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(warmed_up.wait(), 5)
            served.proc.send_signal(signal.SIGTERM)
            terminated_at = time.monotonic()
            await asyncio.gather(*senders)
            returncode = await asyncio.wait_for(served.proc.wait(), 20)
            exit_s = time.monotonic() - terminated_at

    assert returncode == 0, f"gateway exited with {returncode}:\n{served.log()}"
    assert "Traceback" not in served.log(), served.log()
    assert exit_s < 15, f"shutdown took {exit_s:.1f}s"
    assert acked_requests > 0
    # Rejections are allowed only as retryable answers, never as a 4xx the SDK would drop.
    assert set(rejected) <= {429, 503}, rejected
    on_kafka = await message_ids_on(broker.bootstrap_servers, served.events_topic)
    missing = acked - on_kafka
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events are not in Kafka"


async def test_sigterm_finishes_request_in_flight_and_refuses_new_ones(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A request whose handler is running at SIGTERM (its body still arriving) gets its 200."""
    async with gateway_process(tmp_path, broker.bootstrap_servers) as served:
        url = f"{served.base}/v1/batch"
        async with asyncio.timeout(40):
            release = asyncio.Event()
            in_flight = asyncio.create_task(streamed_request(url, release))
            await asyncio.sleep(0.3)  # headers and half the body are in: the handler runs
            served.proc.send_signal(signal.SIGTERM)
            terminated_at = time.monotonic()
            await asyncio.sleep(0.3)
            # Stop accepting: a new connection is refused while in-flight work drains.
            refused = await new_connection_refused(url)
            release.set()
            status, ids = await in_flight
            returncode = await asyncio.wait_for(served.proc.wait(), 20)
            exit_s = time.monotonic() - terminated_at

    assert refused, "a new connection was accepted after SIGTERM"
    assert returncode == 0, f"gateway exited with {returncode}:\n{served.log()}"
    assert "Traceback" not in served.log(), served.log()
    assert status == 200, f"the request in flight at SIGTERM got {status} (None: disconnected)"
    assert exit_s < 5, f"shutdown took {exit_s:.1f}s for one small in-flight request"
    on_kafka = await message_ids_on(broker.bootstrap_servers, served.events_topic)
    assert set(ids) <= on_kafka


async def test_kafka_unreachable_at_start_answers_503_and_recovers(tmp_path: Path) -> None:
    absent = EmbeddedBroker()  # a free port with nothing listening (yet)
    settings = gateway_settings(absent, tmp_path)
    gw = Gateway(settings)
    late_broker: EmbeddedBroker | None = None
    try:
        async with asyncio.timeout(10):
            await gw.start()
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            async with asyncio.timeout(10):
                async with http.get(ingest_url(gw, "/health/ready")) as resp:
                    assert resp.status == 503
                    body = orjson.loads(await resp.read())
                    assert body["kafka"] is False
                    assert body["snapshot"] is True
                for route in ("/v1/track", "/v1/batch"):
                    for _ in range(3):
                        event = {"userId": "u1", "event": "Nope", "type": "track"}
                        payload = event if route == "/v1/track" else {"batch": [event]}
                        async with http.post(
                            ingest_url(gw, route), json=payload, headers=basic_auth()
                        ) as resp:
                            await resp.read()
                            assert_retry_after(resp.status, dict(resp.headers))
                            assert resp.status == 503
                async with http.get(ingest_url(gw, "/health/live")) as resp:
                    assert resp.status == 200

            # Kafka appears later on that address: the gateway connects and accepts events.
            late_broker = EmbeddedBroker(port=absent.port, log_path=tmp_path / "late.log")
            await asyncio.to_thread(late_broker.start)
            deadline = time.monotonic() + 20
            ok = False
            for _ in range(100):
                if time.monotonic() > deadline:
                    break
                status, headers, ids = await post_batch(http, ingest_url(gw, "/v1/batch"), 2)
                if status == 200:
                    ok = True
                    break
                assert_retry_after(status, headers)
                await asyncio.sleep(0.25)
            assert ok, "gateway did not start accepting events once Kafka came up"
            # Readiness is probed at most once a second: it may lag the first 200 by that much.
            async with asyncio.timeout(5):
                while True:
                    async with http.get(ingest_url(gw, "/health/ready")) as resp:
                        if resp.status == 200:
                            break
                    await asyncio.sleep(0.2)
        on_kafka = await message_ids_on(late_broker.bootstrap_servers, settings.kafka.events_topic)
        assert set(ids) <= on_kafka
    finally:
        await gw.stop()
        if late_broker is not None:
            await asyncio.to_thread(late_broker.stop)


async def test_kafka_unreachable_is_logged_once_per_error_not_per_attempt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # librdkafka retries a dead broker many times a second and logs each attempt at error
    # level; at the default log level the operator reads each kind of failure once.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging(LogSettings())
    root.addHandler(caplog.handler)  # setup_logging replaced the root's handlers
    settings = gateway_settings(EmbeddedBroker(), tmp_path).kafka  # nothing listens there
    publisher = KafkaPublisher(settings, Metrics())
    await publisher.start()
    try:
        assert not await publisher.wait_connected(3)
        with pytest.raises(KafkaUnavailable):
            await publisher.publish([Record(settings.events_topic, b"k", b"{}", [])], 1)
    finally:
        await publisher.stop()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in ("aiokafka", LIBRDKAFKA_LOGGER):
            logging.getLogger(name).setLevel(logging.NOTSET)
    client_errors = [r.getMessage() for r in caplog.records if "Kafka client:" in r.getMessage()]
    assert any("brokers are down" in m for m in client_errors)
    assert len(client_errors) == len(set(client_errors)) <= 3, client_errors
    assert not [r for r in caplog.records if r.name == LIBRDKAFKA_LOGGER]
    reconnects = [r for r in caplog.records if "not reachable" in r.getMessage()]
    assert 1 <= len(reconnects) <= 4  # backing off: 0.2 s, 0.4 s, 0.8 s ...
