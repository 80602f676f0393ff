"""Scenarios against real processes: the Tansu broker, ``gateway serve`` and a load generator.

The gateway runs with the production configuration path (a TOML file; acks=all, zstd
compression, one worker); only idempotence is off, which Tansu does not support. The load
generator is ``wrk`` with ``bench/wrk.lua`` when installed, else ``python -m bench.loadgen``;
either runs in its own process, and its CPU is reported so it can be seen not to be the
bottleneck.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import WRITE_KEY, Corpus, scale_write_key
from bench.inprocess import ceiling_slices
from bench.measure import CpuWindow, SliceRun, alternate, result, rss_mb
from gateway.broker import EmbeddedBroker, free_port

HERE = Path(__file__).parent
BATCH = 100
SINGLE_CONNECTIONS = 32
BATCH_CONNECTIONS = 8
INTERLEAVED_SLICE_S = 3.0  # batch, violations: each slice of their interleaved comparisons
PACING_CYCLE_S = 0.05  # latency: request + pause per connection
PACING_PROBE_S = 2.0  # latency: the paced run that measures the requests' own time
REFRESH_WINDOW_S = 10.0  # plan-scale: the load window in which the snapshot changes


def basic_auth(write_key: str) -> str:
    return "Basic " + b64encode(f"{write_key}:".encode()).decode()


@dataclass
class Load:
    """What one load-generator run measured."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    latencies_ms: tuple[float, float, float]  # p50, p95, p99
    gateway_cpu_percent: float
    loadgen_cpu_percent: float
    # With ``stamp``: responses by status ("0" = none: socket error, timeout, cut off at the
    # end) and the messageIds of the requests answered 200.
    statuses: dict[str, int] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)

    @property
    def ok_requests(self) -> int:
        return self.requests - self.non_2xx


class Stack:
    """A broker and a gateway process, configured as in production, in a scratch directory."""

    def __init__(
        self,
        snapshot: dict[str, Any],
        refresh_interval_s: float = 10.0,
        ingest: dict[str, float | int] | None = None,
    ) -> None:
        self.ingest = ingest or {}
        self.dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        self.snapshot_path = self.dir / "snapshot.json"
        self.write_snapshot(snapshot)
        self.refresh_interval_s = refresh_interval_s
        self.broker = EmbeddedBroker(log_path=self.dir / "broker.log")
        self.port = free_port()
        self.admin_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def write_snapshot(self, doc: dict[str, Any]) -> None:
        tmp = self.snapshot_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(doc))
        os.replace(tmp, self.snapshot_path)

    def __enter__(self) -> Stack:
        self.broker.start()
        config = self.dir / "gateway.toml"
        extra = "".join(f"{key} = {value!r}\n" for key, value in self.ingest.items())
        config.write_text(
            f"""
[ingest]
host = "127.0.0.1"
port = {self.port}
{extra}[admin]
host = "127.0.0.1"
port = {self.admin_port}
[kafka]
bootstrap_servers = "{self.broker.bootstrap_servers}"
idempotence = false
[plans]
source = "file:snapshot.json"
refresh_interval_s = {self.refresh_interval_s}
[log]
level = "warning"
"""
        )
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--role", "ingest", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "gateway.log").open("wb"),
            stdin=subprocess.DEVNULL,
        )
        self._wait_ready(timeout_s=120)
        self.ready_s = time.perf_counter() - started
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"gateway exited during startup; see {self.dir}/gateway.log")
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway not ready within {timeout_s}s; see {self.dir}/gateway.log")

    def wait_idle(self, timeout_s: float = 120.0, below_percent: float = 5.0) -> None:
        """Wait until the gateway's CPU use falls below a threshold (background work done)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with CpuWindow([self.pid]) as cpu:
                time.sleep(0.5)
            if cpu.percent < below_percent:
                return

    def revision(self) -> str | None:
        """The revision of the plan snapshot the gateway serves (from ``/health/ready``)."""
        with urllib.request.urlopen(f"{self.url}/health/ready", timeout=5) as resp:
            revision: str | None = orjson.loads(resp.read())["snapshotRevision"]
            return revision

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.broker.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def load(
        self,
        path: str,
        bodies: list[bytes],
        *,
        auth: str,
        connections: int,
        duration_s: float,
        delay_ms: int = 0,
        meanwhile: Callable[[], None] | None = None,
        stamp: str | None = None,
    ) -> Load:
        """Send ``bodies`` round-robin for ``duration_s`` and measure.

        ``meanwhile`` runs while the load generator runs (e.g. to change the snapshot). With
        ``stamp``, every request gets a unique messageId (``STAMP_PLACEHOLDER`` in the bodies
        becomes ``{stamp}{connection}-{n}``) and the result says which ones were answered 200.
        wrk then runs one thread per connection: a thread's requests and responses alternate,
        so each response is known to belong to the last request sent.
        """
        bodies_file = self.dir / "bodies.txt"
        bodies_file.write_bytes(b"\n".join(bodies) + b"\n")
        seconds = max(1, round(duration_s))
        wrk = _wrk()
        env = dict(os.environ)
        if wrk:
            threads = connections if stamp else 1
            command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s"]
            command += ["--timeout", "10s", "-s", str(HERE / "wrk.lua"), self.url]
            env |= {
                "BENCH_BODIES": str(bodies_file),
                "BENCH_PATH": path,
                "BENCH_AUTH": auth,
                "BENCH_DELAY_MS": str(delay_ms),
                "BENCH_STAMP": stamp or "",
            }
        else:
            command = [sys.executable, "-m", "bench.loadgen", self.url + path]
            command += ["--bodies", str(bodies_file), "--auth", auth]
            command += [f"--connections={connections}", f"--duration={seconds}"]
            command += [f"--delay-ms={delay_ms}"] + ([f"--stamp={stamp}"] if stamp else [])
        with CpuWindow([self.pid]) as gateway_cpu:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
            assert proc.stdout is not None
            if meanwhile is not None:
                meanwhile()
            output = proc.stdout.read().decode()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        line = next((x for x in output.splitlines() if x.startswith("BENCH ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"load generator failed ({proc.returncode}): {output[-2000:]}")
        figures = orjson.loads(line[len("BENCH ") :])
        elapsed = figures["duration_us"] / 1e6
        return Load(
            requests=int(figures["requests"]),
            seconds=elapsed,
            non_2xx=int(figures["non_2xx"]),
            socket_errors=int(figures["socket_errors"]),
            latencies_ms=(
                figures["p50_us"] / 1000,
                figures["p95_us"] / 1000,
                figures["p99_us"] / 1000,
            ),
            gateway_cpu_percent=gateway_cpu.percent,
            loadgen_cpu_percent=100 * (usage.ru_utime + usage.ru_stime) / gateway_cpu.elapsed,
            statuses={str(k): int(v) for k, v in figures.get("statuses", {}).items()},
            acked=_acked(stamp, figures) if stamp else [],
        )


def _acked(stamp: str, figures: dict[str, Any]) -> list[str]:
    """The messageIds answered 200: per connection, ids 1..sent except the unacknowledged."""
    if "acked" in figures:  # python -m bench.loadgen lists them
        return [str(x) for x in figures["acked"]]
    out = []
    for conn in figures["connections"]:
        unacked = set(conn["unacked"])
        ident = conn["id"]
        out += [f"{stamp}{ident}-{n}" for n in range(1, conn["sent"] + 1) if n not in unacked]
    return out


STAMP_PLACEHOLDER = "@ID@"


def _wrk() -> str | None:
    return shutil.which("wrk") if os.environ.get("BENCH_LOADGEN") != "python" else None


def loadgen_name() -> str:
    return "wrk" if _wrk() else "python -m bench.loadgen"


def figures(stack: Stack, load: Load, events_per_request: int, **extra: Any) -> dict[str, Any]:
    """The report's figures for one run; failed requests are counted, not hidden."""
    if load.non_2xx or load.socket_errors:
        print(
            f"  warning: {load.non_2xx} non-2xx responses, {load.socket_errors} socket errors",
            file=sys.stderr,
        )
    p50, p95, p99 = load.latencies_ms
    out = result(
        events=load.ok_requests * events_per_request,
        requests=load.ok_requests,
        seconds=load.seconds,
        cpu_percent=load.gateway_cpu_percent,
        rss=rss_mb(stack.pid),
        loadgen_cpu_percent=load.loadgen_cpu_percent,
        **extra,
    )
    out |= {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "p99_ms": round(p99, 3)}
    return out


def _batch_bodies(corpus: Corpus, violating: float, count: int = 200) -> list[bytes]:
    events = corpus.make_events(count * BATCH, violating)
    return [
        orjson.dumps({"batch": events[i : i + BATCH], "sentAt": "2026-11-01T10:00:01.000Z"})
        for i in range(0, len(events), BATCH)
    ]


def track_bodies(corpus: Corpus, count: int = 5000, message_id: str = "") -> list[bytes]:
    """Single track events, 5 % violating; with ``message_id``, all carry that one."""
    events = [e for e in corpus.make_events(count * 2, 0.05) if e["type"] == "track"]
    if message_id:
        events = [{**e, "messageId": message_id} for e in events]
    return [orjson.dumps(e) for e in events[:count]]


class Session:
    """One broker + gateway shared by the scenarios on the standard corpus, started on first use.

    ``snapshot`` and ``ingest`` (extra ``[ingest]`` settings) change what that gateway serves.
    """

    def __init__(
        self,
        snapshot: dict[str, Any] | None = None,
        ingest: dict[str, float | int] | None = None,
    ) -> None:
        self.corpus = Corpus()
        self.snapshot = snapshot
        self.ingest = ingest
        self.stack: Stack | None = None
        self.single_rate: float | None = None
        self.single_p50_ms = 0.0
        self.pacing: tuple[int, int] | None = None  # latency: (connections, delay_ms)
        self.latency_p99_ms: float | None = None

    def get(self) -> Stack:
        if self.stack is None:
            snapshot = self.snapshot or self.corpus.snapshot()
            self.stack = Stack(snapshot, ingest=self.ingest).__enter__()
        return self.stack

    def close(self) -> None:
        if self.stack is not None:
            self.stack.__exit__(None, None, None)
            self.stack = None

    def _run(
        self, path: str, bodies: list[bytes], connections: int, duration_s: float, delay_ms: int = 0
    ) -> Load:
        stack = self.get()
        auth = basic_auth(WRITE_KEY)
        # Warm-up: connections, topic metadata, compiled rules.
        stack.load(path, bodies, auth=auth, connections=connections, duration_s=1)
        return stack.load(
            path, bodies, auth=auth, connections=connections, duration_s=duration_s,
            delay_ms=delay_ms,
        )  # fmt: skip

    def batch(self, duration_s: float, violating: float = 0.05) -> dict[str, Any]:
        bodies = _batch_bodies(self.corpus, violating)
        load = self._run("/v1/batch", bodies, BATCH_CONNECTIONS, duration_s)
        return figures(self.get(), load, BATCH)

    def batch_scenario(self, duration_s: float) -> dict[str, Any]:
        """``batch``; then its load and ``ceiling``'s in-process loop again, in alternating
        slices: the ratio of their rates there (``ceiling_ratio_interleaved``) is what the
        target is judged on, as both then see the same machine."""
        figures_ = self.batch(duration_s)
        ratio = alternate(
            duration_s, INTERLEAVED_SLICE_S, self._batch_slices(0.05), ceiling_slices(self.corpus)
        )
        return figures_ | {"ceiling_ratio_interleaved": round(ratio, 3)}

    def violations(self, duration_s: float) -> dict[str, Any]:
        """``batch`` with half the events violating; then both loads again, in alternating
        slices against the same gateway: the ratio of their rates in those slices
        (``batch_ratio_interleaved``) is what the target is judged on, as both then see the
        same machine (a shared one drifts in speed over minutes)."""
        figures_ = self.batch(duration_s, violating=0.5)
        ratio = alternate(
            duration_s, INTERLEAVED_SLICE_S, self._batch_slices(0.5), self._batch_slices(0.05)
        )
        return figures_ | {"batch_ratio_interleaved": round(ratio, 3)}

    def _batch_slices(self, violating: float) -> SliceRun:
        """``batch``'s load, one slice at a time (see :func:`alternate`)."""
        stack, auth = self.get(), basic_auth(WRITE_KEY)
        bodies = _batch_bodies(self.corpus, violating)

        def run(duration_s: float) -> tuple[int, float]:
            load = stack.load(
                "/v1/batch", bodies, auth=auth, connections=BATCH_CONNECTIONS,
                duration_s=duration_s,
            )  # fmt: skip
            return load.ok_requests * BATCH, load.seconds

        return run

    def single(self, duration_s: float) -> dict[str, Any]:
        load = self._run("/v1/track", track_bodies(self.corpus), SINGLE_CONNECTIONS, duration_s)
        self.single_rate = load.ok_requests / load.seconds
        self.single_p50_ms = load.latencies_ms[0]
        return figures(self.get(), load, 1)

    def calibrate_pacing(self, duration_s: float) -> tuple[int, int]:
        """Connections and mean pause for ``single`` at half its maximum rate.

        wrk pauses a whole number of milliseconds after each response, so the rate also
        depends on the requests' own time at that load. A short paced run measures it, and
        the pause of the measured run is set from it.
        """
        if self.pacing is not None:
            return self.pacing
        if self.single_rate is None:
            self.single(min(duration_s, 5.0))
        assert self.single_rate
        target = self.single_rate / 2
        # A cycle (request + pause) of about 50 ms per connection makes one millisecond of
        # pause about 2 % of the rate.
        connections = max(1, round(target * PACING_CYCLE_S))
        cycle_ms = 1000 * connections / target
        delay_ms = max(1, round(cycle_ms - self.single_p50_ms))
        probe = self._run(
            "/v1/track", track_bodies(self.corpus), connections, PACING_PROBE_S, delay_ms
        )
        request_ms = 1000 * connections * probe.seconds / max(probe.ok_requests, 1) - delay_ms
        self.pacing = connections, max(1, round(cycle_ms - request_ms))
        return self.pacing

    def latency(self, duration_s: float) -> dict[str, Any]:
        """``single`` at half its maximum rate: each connection pauses between requests
        (:meth:`calibrate_pacing`). The rate reached is what the report shows."""
        connections, delay_ms = self.calibrate_pacing(duration_s)
        load = self.get().load(
            "/v1/track", track_bodies(self.corpus), auth=basic_auth(WRITE_KEY),
            connections=connections, duration_s=duration_s, delay_ms=delay_ms,
        )  # fmt: skip
        self.latency_p99_ms = load.latencies_ms[2]
        return figures(self.get(), load, 1)


def plan_scale(duration_s: float) -> dict[str, Any]:
    """1,000 plans x 50 events: time to ready, RSS, and p99 while a refresh is compiled.

    Load: /v1/batch requests of 10 events to sources spread over all plans, at a fixed rate.
    The p99 of a window without a refresh is compared with a window in which the snapshot file
    is replaced by one where 10 % of the plans have a new version (the gateway refreshes every
    second, parses the snapshot off the event loop and compiles the changed rules).
    """
    corpus = Corpus()
    plans, per_plan, catalog = 1000, 50, 1000
    base = corpus.scaled_snapshot(plans, per_plan, catalog)
    changed = corpus.scaled_snapshot(plans, per_plan, catalog, changed_every=10)
    bodies = [
        orjson.dumps({"writeKey": scale_write_key(p), "batch": corpus.scaled_events(base, p, 10)})
        for p in range(plans)
    ]
    with Stack(base, refresh_interval_s=1.0) as stack:
        ready_s = stack.ready_s
        stack.wait_idle()  # the warm-up compile of every distinct rule
        rss = rss_mb(stack.pid)
        rate, connections = 200, 4  # requests/s (2,000 events/s) over 4 connections
        delay_ms = round(1000 * connections / rate)
        steady = stack.load(
            "/v1/batch", bodies, auth="", connections=connections, duration_s=duration_s,
            delay_ms=delay_ms,
        )  # fmt: skip
        refresh_s: list[float] = []

        def refresh() -> None:
            time.sleep(0.5)
            started = time.perf_counter()
            stack.write_snapshot(changed)
            while stack.revision() != changed["revision"]:
                time.sleep(0.1)
            refresh_s.append(time.perf_counter() - started)

        during = stack.load(
            "/v1/batch", bodies, auth="", connections=connections,
            duration_s=max(duration_s, REFRESH_WINDOW_S), delay_ms=delay_ms, meanwhile=refresh,
        )  # fmt: skip
        if not refresh_s or refresh_s[0] > REFRESH_WINDOW_S - 1:
            raise RuntimeError("the changed snapshot was not loaded within the measured window")
        out = figures(stack, steady, 10, ready_s=round(ready_s, 3))
        out["rss_mb"] = round(max(rss, out["rss_mb"]), 3)
        out["p99_during_refresh_ms"] = round(during.latencies_ms[2], 3)
        out["refresh_s"] = round(refresh_s[0], 3)
        return out
