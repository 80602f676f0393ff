"""Several ingest worker processes on one port (``ingest.workers = N``).

The main process supervises: it starts N ``gateway serve --worker`` processes that all bind the
ingest port with SO_REUSEPORT (the kernel spreads connections over them), serves the admin port
itself when the role is ``all``, restarts a worker that dies, and on SIGTERM/SIGINT forwards
SIGTERM to every worker — each drains its in-flight requests — before exiting.

With ``plans.source = "local"`` the catalog belongs to the main process, which builds the plan
snapshot from it and keeps it in a file (replaced atomically when the catalog changes) in a
private run directory; the workers read that file as their ``file:`` source. A change reaches
them within two refresh intervals, and the last good file keeps serving if the catalog fails
or the file cannot be written (logged once per streak of failures, retried every interval).

A worker that exits within :data:`STARTUP_S` of starting is restarted after a delay that
doubles each time (from :data:`RESTART_DELAY_S` up to :data:`MAX_RESTART_DELAY_S`); after
:data:`MAX_START_FAILURES` such exits in a row — or at once when it exits with the
configuration-error status, which no restart can cure — the gateway stops with an error
instead of restarting for ever.

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import LOCAL_SOURCE, Role, Settings

if TYPE_CHECKING:
    from gateway.plans.providers import SnapshotProvider

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the same name as gateway.metrics.MULTIPROC_ENV
SNAPSHOT_FILE = "snapshot.json"
POLL_S = 0.5
STOP_GRACE_S = 5.0
# A worker that exits sooner than this after starting failed to start.
STARTUP_S = 10.0
RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 30.0
MAX_START_FAILURES = 5
# What `gateway serve` exits with on a configuration error (see gateway.cli).
CONFIG_ERROR_EXIT = 2
GAVE_UP_EXIT = 1


def serve_with_workers(settings: Settings, role: Role, config: str | None) -> int:
    """Supervise the workers until SIGTERM/SIGINT (exit code 0) or until they cannot start."""
    run_dir = Path(tempfile.mkdtemp(prefix="gateway-"))  # mode 0700: this user only
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    try:
        return asyncio.run(_supervise(settings, role, config, run_dir))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _worker_command(config: str | None) -> list[str]:
    command = [sys.executable, "-m", "gateway", "serve", "--role", Role.INGEST.value, "--worker"]
    if config:
        command += ["--config", str(Path(config).absolute())]
    return command


@dataclass
class _Slot:
    """One worker position: its current process, or when to start the next one."""

    proc: subprocess.Popen[bytes] | None
    started_at: float
    failures: int = 0  # exits in a row within STARTUP_S of starting
    restart_at: float = 0.0


async def _supervise(settings: Settings, role: Role, config: str | None, run_dir: Path) -> int:
    # After MULTIPROC_ENV is set (these load prometheus-client).
    from gateway.catalog.snapshot_builder import LocalProvider
    from gateway.server import Gateway

    port = settings.ingest.port
    if port == 0:
        from gateway.broker import free_port

        port = free_port()
    env = {**os.environ, "GATEWAY_INGEST_PORT": str(port)}

    admin: Gateway | None = None
    export: SnapshotExport | None = None
    if role is Role.ALL:
        admin = Gateway(settings, Role.ADMIN)
        await admin.start()
    if settings.plans.source == LOCAL_SOURCE:
        # Settings.check_role refuses local plans without the catalog (role ingest).
        assert admin is not None
        assert admin.snapshots is not None
        export = SnapshotExport(
            LocalProvider(admin.snapshots),
            run_dir / SNAPSHOT_FILE,
            settings.plans.refresh_interval_s,
        )
        await export.start()
        env["GATEWAY_PLANS_SOURCE"] = f"file:{export.path}"

    command = _worker_command(config)
    count = settings.ingest.workers
    slots = [_Slot(_spawn(command, env), time.monotonic()) for _ in range(count)]
    log.info("started %d ingest workers on port %d", count, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exit_code = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
            if stop.is_set():
                break
            for slot in slots:
                failure = _check(slot, command, env)
                if failure is not None:
                    log.error("%s; stopping the gateway", failure)
                    exit_code = GAVE_UP_EXIT
                    stop.set()
                    break
    finally:
        procs = [slot.proc for slot in slots if slot.proc is not None]
        log.info("stopping %d ingest workers", len(procs))
        deadline = settings.ingest.ack_timeout_s + STOP_GRACE_S
        await asyncio.gather(*(asyncio.to_thread(_stop, p, deadline) for p in procs))
        if export is not None:
            await export.stop()
        if admin is not None:
            await admin.stop()
    return exit_code


def _check(slot: _Slot, command: list[str], env: dict[str, str]) -> str | None:
    """Restart the slot's worker if it died (after its back-off); a reason to give up, or None."""
    now = time.monotonic()
    if slot.proc is None:
        if now >= slot.restart_at:
            slot.proc, slot.started_at = _spawn(command, env), now
        return None
    code = slot.proc.poll()
    if code is None:
        return None
    pid, uptime = slot.proc.pid, now - slot.started_at
    _forget(pid)
    slot.proc = None
    if uptime >= STARTUP_S:
        slot.failures = 1  # it ran: a fresh series
    else:
        slot.failures += 1
        if code == CONFIG_ERROR_EXIT:
            return f"ingest worker {pid} exited at start with a configuration error"
        if slot.failures >= MAX_START_FAILURES:
            return (
                f"ingest worker {pid} exited with code {code} within {STARTUP_S:.0f}s of "
                f"starting, {slot.failures} times in a row; giving up (see its log above)"
            )
    delay = min(RESTART_DELAY_S * 2 ** (slot.failures - 1), MAX_RESTART_DELAY_S)
    slot.restart_at = now + delay
    log.error(
        "ingest worker %d exited with code %s after %.1fs; restarting in %.1fs",
        pid,
        code,
        uptime,
        delay,
    )
    return None


class SnapshotExport:
    """Keeps the main process's plan snapshot in a file for its workers (``file:`` source)."""

    def __init__(self, provider: SnapshotProvider, path: Path, interval_s: float) -> None:
        self.provider = provider
        self.path = path
        self.interval_s = interval_s
        self._etag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # the last export failed (logged once per streak of failures)

    async def start(self) -> None:
        """Write the first snapshot (workers then start ready), then keep it current."""
        await self.export_once()
        self._task = asyncio.create_task(self._loop(), name="snapshot-export")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.provider.close()

    async def export_once(self) -> None:
        from gateway.plans.providers import ProviderError

        try:
            fetched = await self.provider.fetch(self._etag)
        except ProviderError as exc:
            # The workers keep the last good file (and their own persisted copy).
            log.warning("plan snapshot for the workers not updated: %s", exc)
            return
        if fetched is None:
            return
        await asyncio.to_thread(_replace, self.path, fetched.content)
        self._etag = fetched.etag
        if self._failing:
            log.info("plan snapshot for the workers written again")
            self._failing = False

    async def _loop(self) -> None:
        # Never ends but by stop(): a loop that died would leave the workers serving a stale
        # snapshot for ever (a deleted write key would keep working).
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.export_once()
            except Exception:  # e.g. OSError from writing the file: disk full, permissions
                if not self._failing:
                    log.exception(
                        "plan snapshot for the workers not written; they keep the last one, "
                        "retrying every %.1fs",
                        self.interval_s,
                    )
                self._failing = True


def _replace(path: Path, content: bytes) -> None:
    """Write ``path`` atomically: a reader sees the old document or the new one, whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".snapshot-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        # A failed attempt leaves nothing behind: on a full disk, the next one needs the room.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
