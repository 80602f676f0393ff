"""Several ingest workers on one port: events, metrics and shutdown still add up."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import orjson

from gateway.broker import EmbeddedBroker, free_port
from tests.conftest import (
    SOURCE_ID,
    basic_auth,
    consume_all,
    metric_value,
    snapshot_doc,
    wait_ready,
    write_snapshot,
)

WORKERS = 2
REQUESTS = 60


def children_of(pid: int) -> set[int]:
    done = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return {int(line) for line in done.stdout.split()}


async def test_workers_share_the_port_and_the_metrics(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    write_snapshot(tmp_path / "snapshot.json", snapshot_doc())
    ingest_port, admin_port = free_port(), free_port()
    topic = f"events-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[ingest]\nhost = "127.0.0.1"\nport = {ingest_port}\nworkers = {WORKERS}\n'
        f'[admin]\nhost = "127.0.0.1"\nport = {admin_port}\n'
        f'[kafka]\nbootstrap_servers = "{broker.bootstrap_servers}"\nidempotence = false\n'
        f'events_topic = "{topic}"\nquarantine_topic = "{topic}.q"\ntopic_partitions = 1\n'
        '[plans]\nsource = "file:snapshot.json"\ncache_dir = "cache"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ingest = f"http://127.0.0.1:{ingest_port}"
    try:
        # A new connection per request, so the kernel spreads them over the workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            await wait_ready(http, f"{ingest}/health/ready", proc)
            async with asyncio.timeout(30):
                while len(children_of(proc.pid)) < WORKERS:
                    await asyncio.sleep(0.1)
            assert len(children_of(proc.pid)) == WORKERS

            for i in range(REQUESTS):
                async with http.post(
                    f"{ingest}/v1/track",
                    data=orjson.dumps({"userId": f"u{i}", "event": "Clicked"}),
                    headers=basic_auth(),
                ) as resp:
                    assert resp.status == 200

            # Every scrape — whichever worker answers, or the admin port — has the full total.
            for url in [f"{ingest}/metrics"] * 6 + [f"http://127.0.0.1:{admin_port}/metrics"]:
                async with http.get(url) as resp:
                    text = await resp.text()
                received = metric_value(
                    text, "gateway_events_received_total", source_id=SOURCE_ID, type="track"
                )
                forwarded = metric_value(
                    text, "gateway_events_forwarded_total", source_id=SOURCE_ID, type="track"
                )
                assert (received, forwarded) == (REQUESTS, REQUESTS), url
                assert metric_value(text, "gateway_inflight_events") == 0

            # A worker that dies is replaced; what it counted is kept.
            victim = min(children_of(proc.pid))
            os.kill(victim, signal.SIGKILL)
            async with asyncio.timeout(30):
                while victim in children_of(proc.pid) or len(children_of(proc.pid)) < WORKERS:
                    await asyncio.sleep(0.2)
            await wait_ready(http, f"{ingest}/health/ready", proc)
            async with http.get(f"{ingest}/metrics") as resp:
                text = await resp.text()
            assert (
                metric_value(
                    text, "gateway_events_received_total", source_id=SOURCE_ID, type="track"
                )
                == REQUESTS
            )

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        assert children_of(proc.pid) == set()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    records = await consume_all(broker.bootstrap_servers, topic)
    assert sorted(orjson.loads(r.value)["userId"] for r in records) == sorted(
        f"u{i}" for i in range(REQUESTS)
    )
