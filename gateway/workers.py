"""Several ingest worker processes on one port (``ingest.workers = N``).

The main process supervises: it starts N ``gateway serve --worker`` processes that all bind the
ingest port with SO_REUSEPORT (the kernel spreads connections over them), serves the admin port
itself when the role is ``all``, restarts a worker that dies, and on SIGTERM/SIGINT forwards
SIGTERM to every worker — each drains its in-flight requests — before exiting.

Metrics use prometheus-client's multiprocess mode: every process writes its samples to files in
a private directory (``PROMETHEUS_MULTIPROC_DIR``), and every ``/metrics`` answer — from any
worker or the admin port — adds them all up. The directory must be set before prometheus-client
is imported, which is why :func:`serve_with_workers` runs before the server modules load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from gateway.config import Role, Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the same name as gateway.metrics.MULTIPROC_ENV
RESTART_DELAY_S = 1.0
POLL_S = 0.5
STOP_GRACE_S = 5.0


def serve_with_workers(settings: Settings, role: Role, config: str | None) -> None:
    metrics_dir = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    try:
        asyncio.run(_supervise(settings, role, config))
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _worker_command(config: str | None) -> list[str]:
    command = [sys.executable, "-m", "gateway", "serve", "--role", Role.INGEST.value, "--worker"]
    if config:
        command += ["--config", str(Path(config).absolute())]
    return command


async def _supervise(settings: Settings, role: Role, config: str | None) -> None:
    from gateway.server import Gateway  # after MULTIPROC_ENV is set

    port = settings.ingest.port
    if port == 0:
        from gateway.broker import free_port

        port = free_port()
    env = {**os.environ, "GATEWAY_INGEST_PORT": str(port)}
    command = _worker_command(config)
    count = settings.ingest.workers
    workers = [_spawn(command, env) for _ in range(count)]
    log.info("started %d ingest workers on port %d", count, port)

    admin: Gateway | None = None
    if role is Role.ALL:
        admin = Gateway(settings, Role.ADMIN)
        await admin.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
            for i, proc in enumerate(workers):
                if proc.poll() is not None and not stop.is_set():
                    _forget(proc.pid)
                    log.error(
                        "ingest worker %d exited with code %s; restarting",
                        proc.pid,
                        proc.returncode,
                    )
                    await asyncio.sleep(RESTART_DELAY_S)
                    workers[i] = _spawn(command, env)
    finally:
        log.info("stopping %d ingest workers", len(workers))
        deadline = settings.ingest.ack_timeout_s + STOP_GRACE_S
        await asyncio.gather(*(asyncio.to_thread(_stop, p, deadline) for p in workers))
        if admin is not None:
            await admin.stop()


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Popen returns as soon as the child is forked; it does not wait for the worker.
    return subprocess.Popen(command, env=env)


def _stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.error("worker %d did not drain within %.0fs; killing it", proc.pid, timeout_s)
            proc.kill()
            proc.wait()
    _forget(proc.pid)


def _forget(pid: int) -> None:
    """Drop a dead worker's live gauges (in-flight events) from the shared metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
