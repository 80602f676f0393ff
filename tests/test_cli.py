"""The real command line, run as subprocesses: --version, config errors, and `gateway dev`."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from gateway import __version__
from gateway.tail import format_record

GATEWAY = [sys.executable, "-m", "gateway"]
BANNER_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 20.0


def clean_env() -> dict[str, str]:
    """The test runner's environment without settings overrides that would change the result."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


def run_gateway(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GATEWAY, *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_version(tmp_path: Path) -> None:
    result = run_gateway(["--version"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gateway {__version__}"


def test_serve_rejects_an_unknown_config_key(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[ingest]\nhost = "127.0.0.1"\nprot = 8080\n')
    result = run_gateway(["serve", "--config", "bad.toml"], tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "ingest.prot" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_serve_rejects_an_unknown_config_section(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[injest]\nport = 8080\n")
    result = run_gateway(["serve", "--config", "bad.toml"], tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "injest" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_missing_config_file(tmp_path: Path) -> None:
    result = run_gateway(["serve", "--config", "missing.toml"], tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "missing.toml" in result.stderr
    assert "Traceback" not in result.stderr


def port_is_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_line_reader(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """Read the process's stdout lines in a thread; None marks end of output."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for line in proc.stdout:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="dev-stdout", daemon=True).start()
    return lines


def read_banner(lines: queue.Queue[str | None], proc: subprocess.Popen[str]) -> list[str]:
    """Lines printed until (and including) the one holding the curl command; bounded wait."""
    seen: list[str] = []
    deadline = time.monotonic() + BANNER_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            pytest.fail(f"gateway dev exited ({proc.poll()}) before its banner: {seen}")
        seen.append(line.rstrip("\n"))
        if "curl -sS" in line:
            return seen
    pytest.fail(f"no banner with a curl command within {BANNER_TIMEOUT_S}s: {seen}")


def drain_banner(lines: queue.Queue[str | None], seen: list[str]) -> None:
    """Collect the rest of the banner (it is printed in one go, ending with 'Ctrl-C')."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("Ctrl-C" in s for s in seen):
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line.rstrip("\n"))


def test_dev_mode_end_to_end(tmp_path: Path) -> None:
    dev_dir = tmp_path / "dev"
    stderr_path = tmp_path / "dev.stderr"
    broker_port: int | None = None
    broker_pids: list[int] = []
    with stderr_path.open("w") as stderr_file:
        proc = subprocess.Popen(
            [*GATEWAY, "dev", "--port", "0", "--dir", str(dev_dir)],
            cwd=tmp_path,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
            # Its own process group, so cleanup can reach the broker child even if dev leaks it.
            start_new_session=True,
        )
    try:
        lines = start_line_reader(proc)
        banner = read_banner(lines, proc)
        drain_banner(lines, banner)
        config = tomllib.loads((dev_dir / "gateway.toml").read_text())
        broker_port = int(config["kafka"]["bootstrap_servers"].rsplit(":", 1)[1])
        assert port_is_open(broker_port)
        broker_pids = [pid for pid in child_pids(proc.pid) if process_name(pid) == "tansu"]
        assert broker_pids, "gateway dev has no broker child process"

        # The printed curl command, exactly as a user would paste it.
        curl = next(s for s in banner if "curl -sS" in s).strip()
        assert curl.startswith("curl -sS http://127.0.0.1:")
        sent = subprocess.run(
            ["bash", "-c", curl],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.strip() == "OK", (sent.stdout, sent.stderr)

        # The printed test-API command says what arrived: the one good event.
        micro_all = next(s for s in banner if s.strip().endswith("/micro/all")).strip()
        asked = subprocess.run(
            ["bash", "-c", micro_all], capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
        assert orjson.loads(asked.stdout) == {"total": 1, "good": 1, "bad": 0}

        # The printed browser install: its cdnURL serves the settings of its write key.
        install = next(s for s in banner if "AnalyticsBrowser.load(" in s)
        found = re.search(r'writeKey: "([^"]+)", cdnURL: "([^"]+)"', install)
        assert found, install
        settings_url = f"{found[2]}/v1/projects/{found[1]}/settings"
        with urllib.request.urlopen(settings_url, timeout=COMMAND_TIMEOUT_S) as response:
            segment = orjson.loads(response.read())["integrations"]["Segment.io"]
        assert f"{segment['protocol']}://{segment['apiHost']}" == found[2] + "/v1"

        # The printed tail command, reading from the beginning and stopping after one record.
        tail_line = next(
            s.strip()
            for s in banner
            if s.strip().startswith("gateway tail --config") and "--quarantine" not in s
        )
        tail_argv = shlex.split(tail_line)
        assert tail_argv[0] == "gateway"
        tailed = subprocess.run(
            [*GATEWAY, *tail_argv[1:], "--from-beginning", "--max-records", "1"],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert tailed.returncode == 0, tailed.stderr
        assert "Product Viewed" in tailed.stdout, tailed.stdout
        assert "key=user-1" in tailed.stdout, tailed.stdout
        assert "forwarded" in tailed.stdout, tailed.stdout

        # Ctrl-C stops everything dev started.
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"gateway dev did not exit within {EXIT_TIMEOUT_S}s of SIGINT")
        assert code == 0, stderr_path.read_text()
        assert not port_is_open(broker_port), "the embedded broker still listens after exit"
        leftover = [pid for pid in broker_pids if pid_alive(pid)]
        assert not leftover, f"broker child processes left running: {leftover}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        # Whatever dev left behind in its own process group (e.g. the broker child).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in broker_pids:
            if pid_alive(pid) and process_name(pid) == "tansu":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()


APP_TEST = Path(__file__).parent / "app_ci" / "app_suite.py"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([sys.executable, str(APP_TEST), "good"], 0),  # only good events
        ([sys.executable, str(APP_TEST), "mixed"], 1),  # its checks pass; bad events arrived
        ([sys.executable, "-c", "raise SystemExit(3)"], 3),  # the suite itself failed
    ],
    ids=["good", "bad-events", "failing-suite"],
)
def test_dev_check_runs_an_app_suite(tmp_path: Path, command: list[str], expected: int) -> None:
    """`gateway dev --check -- COMMAND`, as an app's CI runs it: the command's own checks use
    the Micro-compatible routes; the exit code fails the build on bad events."""
    done = subprocess.run(
        [*GATEWAY, "dev", "--port", "0", "--dir", str(tmp_path / "dev"), "--check", "--", *command],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == expected, (done.stdout[-2000:], done.stderr[-4000:])
    if expected == 1:
        # Reset by the suite, but still reported: every bad event of the run counts.
        assert "gateway dev --check: 2 bad events; the last ones:" in done.stderr
        assert "track Product Viewed [test t-bad]: forwarded with violations" in done.stderr
        assert "- must have required property 'price'" in done.stderr
        assert "track Cart Emptied [test t-unplanned]" in done.stderr
    elif expected == 0:
        assert "gateway dev --check: no bad events" in done.stderr


@dataclass
class TailedRecord:
    topic: str
    value: bytes
    key: bytes | None = b"u1"
    headers: tuple[tuple[str, bytes], ...] = (("event-type", b"track"),)
    partition: int = 0
    offset: int = 7


def test_tail_labels_records_by_their_topic() -> None:
    # A forwarded event may carry any top-level field, "reason" included.
    forwarded = orjson.dumps({"type": "track", "event": "Refund", "reason": "damaged"})
    line = format_record(TailedRecord("events", forwarded), False, "events.quarantine")
    assert line.startswith("forwarded track key=u1")
    assert "events[0]@7" in line
    quarantined = orjson.dumps({"reason": "violation", "event": {"type": "track"}})
    line = format_record(TailedRecord("events.quarantine", quarantined), False, "events.quarantine")
    assert line.startswith("QUARANTINED (violation) track key=u1")
