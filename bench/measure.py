"""Measurements: percentiles, and CPU/RSS of a process read from /proc (Linux)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


# One slice of a load: run(seconds) → (events, seconds).
SliceRun = Callable[[float], tuple[int, float]]


def alternate(duration_s: float, slice_s: float, first: SliceRun, second: SliceRun) -> float:
    """``first``'s events/s over ``second``'s, measured in alternating slices of about
    ``slice_s``, ``duration_s`` for each in all (at least two slices each); each pair of slices
    starts with the other side than the last, so that a drift over the run weighs on both
    alike (a shared machine drifts in speed by more than the targets' margins)."""
    pairs = max(2, int(duration_s // slice_s))
    slice_s = duration_s / pairs
    counted = [[0, 0.0], [0, 0.0]]  # per side: events, seconds
    for pair in range(pairs):
        for side in (0, 1) if pair % 2 == 0 else (1, 0):
            events, seconds = (first, second)[side](slice_s)
            counted[side][0] += events
            counted[side][1] += seconds
    (first_events, first_s), (second_events, second_s) = counted
    return (first_events / first_s) / (second_events / second_s)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children, in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # fields[11:15] = utime stime cutime cstime (after the state field at index 0)
    return sum(int(x) for x in fields[11:15]) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as fh:
        resident = int(fh.read().split()[1])
    return resident * PAGE_KB / 1024


@dataclass
class CpuWindow:
    """CPU % of some processes over a window (100 % = one core busy)."""

    pids: list[int]
    started: float = 0.0
    cpu0: float = 0.0

    def __enter__(self) -> CpuWindow:
        self.started = time.perf_counter()
        self.cpu0 = sum(cpu_seconds(p) for p in self.pids)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.elapsed = time.perf_counter() - self.started
        self.cpu = sum(cpu_seconds(p) for p in self.pids) - self.cpu0

    @property
    def percent(self) -> float:
        return 100.0 * self.cpu / self.elapsed if self.elapsed else 0.0


def result(
    *,
    events: int,
    requests: int,
    seconds: float,
    latencies_ms: list[float] | None = None,
    cpu_percent: float | None = None,
    rss: float | None = None,
    loadgen_cpu_percent: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    ordered = sorted(latencies_ms or [])
    return {
        "events_per_s": round(events / seconds, 1) if seconds else None,
        "requests_per_s": round(requests / seconds, 1) if seconds else None,
        "p50_ms": _round(percentile(ordered, 50)),
        "p95_ms": _round(percentile(ordered, 95)),
        "p99_ms": _round(percentile(ordered, 99)),
        "cpu_percent": _round(cpu_percent),
        "rss_mb": _round(rss),
        "loadgen_cpu_percent": _round(loadgen_cpu_percent),
        "ratio_to_ceiling": None,
        **extra,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
