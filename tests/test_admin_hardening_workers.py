"""`ingest.workers > 1` with the default local plans, and no restart loops (issue case 9).

Real `gateway serve` processes: the main process owns the catalog and hands its snapshot to its
workers; settings that cannot work stop the start at once; workers that cannot start make the
gateway exit with an error rather than being restarted for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.broker import EmbeddedBroker, free_port
from gateway.catalog.snapshot_builder import LocalProvider, SnapshotBuilder
from gateway.catalog.store import Store
from gateway.config import ConfigError, Role, load_settings
from gateway.metrics import Metrics
from gateway.workers import SnapshotExport
from tests.conftest import (
    ADMIN_TOKEN,
    NATIVE_SOURCES,
    basic_auth,
    consume_all,
    snapshot_doc,
    wait_ready,
    write_snapshot,
)
from tests.test_workers import children_of

WORKERS = 2
SETTLED_IN_A_ROW = 20
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def write_config(path: Path, broker: EmbeddedBroker, topic: str, text: str) -> Path:
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{broker.bootstrap_servers}"\nidempotence = false\n'
        f'events_topic = "{topic}"\nquarantine_topic = "{topic}.q"\ntopic_partitions = 1\n' + text
    )
    return path


@contextmanager
def serving(config: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        # Workers first: once the main process is gone they are no longer its children.
        for pid in children_of(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def track(http: aiohttp.ClientSession, url: str, key: str, user: str) -> int:
    async with http.post(
        f"{url}/v1/track",
        data=orjson.dumps({"userId": user, "event": "Clicked"}),
        headers=basic_auth(key),
    ) as resp:
        return resp.status


async def until_status(
    http: aiohttp.ClientSession, url: str, key: str, wanted: int, timeout_s: float = 30
) -> None:
    """Until every worker answers ``wanted``: that many times in a row (a new connection per
    request, so the kernel spreads them over the workers)."""
    status, in_a_row = None, 0
    try:
        async with asyncio.timeout(timeout_s):
            while in_a_row < SETTLED_IN_A_ROW:
                status = await track(http, url, key, "probe")
                in_a_row = in_a_row + 1 if status == wanted else 0
                if status != wanted:
                    await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"write key answered {status}, not {wanted}, after {timeout_s}s")


async def test_workers_serve_the_main_process_catalog(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    ingest_port, admin_port = free_port(), free_port()
    topic = f"events-{uuid.uuid4().hex[:8]}"
    config = write_config(
        tmp_path / "gateway.toml",
        broker,
        topic,
        f'[ingest]\nhost = "127.0.0.1"\nport = {ingest_port}\nworkers = {WORKERS}\n'
        f'[admin]\nhost = "127.0.0.1"\nport = {admin_port}\ntokens = ["{ADMIN_TOKEN}"]\n'
        # The default plans.source, "local".
        '[plans]\nrefresh_interval_s = 0.2\ncache_dir = "cache"\n'
        '[catalog]\ndatabase_url = "sqlite:///catalog.db"\n',
    )
    ingest, admin = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{admin_port}"
    log = tmp_path / "gateway.log"
    with serving(config, log) as proc:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            await wait_ready(http, f"{ingest}/health/ready", proc, timeout_s=60)
            assert len(children_of(proc.pid)) == WORKERS

            async with http.put(
                f"{admin}{NATIVE_SOURCES}", data=orjson.dumps({"name": "Workers"}), headers=BEARER
            ) as resp:
                assert resp.status == 200, await resp.text()
                source = (await resp.json())["data"]["sources"][0]
            key = source["writeKeys"][0]
            await until_status(http, ingest, key, 200)
            for i in range(20):
                assert await track(http, ingest, key, f"u{i}") == 200

            # A deleted source stops working on every worker.
            async with http.delete(
                f"{admin}{NATIVE_SOURCES}/{source['id']}", headers=BEARER
            ) as resp:
                assert resp.status == 200
            await until_status(http, ingest, key, 401)

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()[-3000:]
        assert children_of(proc.pid) == set()
    records = await consume_all(broker.bootstrap_servers, topic)
    users = {orjson.loads(r.value)["userId"] for r in records}
    assert {f"u{i}" for i in range(20)} <= users


def test_local_plans_on_an_ingest_replica_stop_the_start_naming_the_key(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "gateway.toml",
        broker,
        "unused",
        f'[ingest]\nhost = "127.0.0.1"\nport = {free_port()}\nworkers = {WORKERS}\n',
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--role", "ingest"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "configuration error: plans.source" in done.stderr
    assert "admin.snapshot_tokens" in done.stderr


def test_the_same_port_for_ingest_and_admin_is_a_configuration_error() -> None:
    settings = load_settings(
        None, environ={"GATEWAY_INGEST_PORT": "9000", "GATEWAY_ADMIN_PORT": "9000"}
    )
    with pytest.raises(ConfigError, match=r"admin\.port"):
        settings.check_role(Role.ALL)
    settings.check_role(Role.ADMIN)  # one port only: fine


@pytest.mark.parametrize(
    ("role", "shared", "clash"),
    [
        (Role.ALL, "INGEST", "ingest.port"),
        (Role.ALL, "ADMIN", "admin.port"),
        (Role.INGEST, "INGEST", "ingest.port"),
        (Role.INGEST, "ADMIN", None),  # no admin listener in an ingest process
        (Role.ADMIN, "ADMIN", None),  # the metrics listener runs where ingest does
    ],
)
def test_a_metrics_port_shared_with_another_listener_is_a_configuration_error(
    role: Role, shared: str, clash: str | None
) -> None:
    ports = {"INGEST": "9000", "ADMIN": "9001"}
    environ = {f"GATEWAY_{name}_PORT": port for name, port in ports.items()}
    environ |= {"GATEWAY_METRICS_ENABLED": "true", "GATEWAY_METRICS_PORT": ports[shared]}
    environ["GATEWAY_PLANS_SOURCE"] = "http://admin.internal:9001"  # valid for every role
    settings = load_settings(None, environ=environ)
    if clash is None:
        settings.check_role(role)
    else:
        with pytest.raises(ConfigError, match=rf"metrics\.port: the same as {clash}"):
            settings.check_role(role)
    disabled = load_settings(None, environ={**environ, "GATEWAY_METRICS_ENABLED": "false"})
    disabled.check_role(role)  # no metrics listener, no clash


def test_serve_with_the_metrics_port_on_the_ingest_port_exits_naming_the_keys(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "gateway.toml",
        broker,
        "unused",
        f'[ingest]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n',
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "configuration error: metrics.port: the same as ingest.port" in done.stderr
    assert "Traceback" not in done.stderr


async def test_workers_that_cannot_start_stop_the_gateway_with_an_error(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    write_snapshot(tmp_path / "snapshot.json", snapshot_doc())
    # Another program holds the ingest port without SO_REUSEPORT: no worker can bind it.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    config = write_config(
        tmp_path / "gateway.toml",
        broker,
        "unused",
        f'[ingest]\nhost = "127.0.0.1"\nport = {port}\nworkers = {WORKERS}\n'
        f'[admin]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        '[plans]\nsource = "file:snapshot.json"\ncache_dir = "cache"\n'
        '[catalog]\ndatabase_url = "sqlite:///catalog.db"\n',
    )
    log = tmp_path / "gateway.log"
    try:
        with serving(config, log) as proc:
            try:
                code = await asyncio.to_thread(proc.wait, 100)
            except subprocess.TimeoutExpired:
                pytest.fail("the gateway kept restarting workers that cannot start")
            output = log.read_text()
            assert code == 1, output[-3000:]
            assert "giving up" in output
            assert "restarting in" in output  # with a back-off first
            assert children_of(proc.pid) == set()
    finally:
        holder.close()


async def test_snapshot_export_outlives_a_failing_file_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk or a permission error while replacing the workers' snapshot file is logged
    once, and the export keeps trying until the file is current again."""
    store = Store(f"sqlite:///{tmp_path / 'catalog.db'}")
    await store.open()
    target = tmp_path / "run" / "snapshot.json"
    target.parent.mkdir()
    export = SnapshotExport(LocalProvider(SnapshotBuilder(store, Metrics())), target, 0.05)

    def revision_in_file() -> str:
        return str(orjson.loads(target.read_bytes())["revision"])

    real_replace = os.replace
    failures = 0

    def disk_full(src: str, dst: str | Path) -> None:
        nonlocal failures
        if Path(dst) == target:
            failures += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    try:
        await export.start()
        first = revision_in_file()
        monkeypatch.setattr(os, "replace", disk_full)
        async with store.write():
            pass  # a catalog change: the next revision
        _, revision = await store.state()
        for _ in range(200):
            if failures >= 5:
                break
            await asyncio.sleep(0.05)
        assert failures >= 5, "the export stopped trying"
        assert revision_in_file() == first  # the last good file stays in place
        assert [p.name for p in target.parent.iterdir()] == ["snapshot.json"]  # no temp files
        failed = [r for r in caplog.records if "not written" in r.getMessage()]
        assert [r.levelno for r in failed] == [logging.ERROR]

        monkeypatch.setattr(os, "replace", real_replace)
        for _ in range(200):
            if revision_in_file() == str(revision):
                break
            await asyncio.sleep(0.05)
        assert revision_in_file() == str(revision)
    finally:
        monkeypatch.undo()
        await export.stop()
        await store.close()
