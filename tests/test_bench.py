"""Smoke test: the benchmark harness runs and produces figures (their size is not judged)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {
    "events_per_s",
    "requests_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "cpu_percent",
    "rss_mb",
    "loadgen_cpu_percent",
    "ratio_to_ceiling",
}


def run_quick(scenario: str, out: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """``python -m bench SCENARIO --quick --out OUT``; fails the test unless it exits 0."""
    return run_quick_many([scenario], out, timeout_s)


def test_ceiling_quick_produces_numbers(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    done = run_quick("ceiling", out, timeout_s=120)
    results = orjson.loads(out.read_bytes())
    assert list(results) == ["ceiling"]
    figures = results["ceiling"]
    assert set(figures) == FIELDS
    for field in ("events_per_s", "requests_per_s", "p50_ms", "p99_ms", "cpu_percent", "rss_mb"):
        assert isinstance(figures[field], float), field
        assert figures[field] > 0, field
    assert figures["ratio_to_ceiling"] == 1.0
    assert figures["loadgen_cpu_percent"] is None  # no load generator in-process
    meta = orjson.loads(out.with_suffix(".meta.json").read_bytes())
    assert meta["cores"] >= 1
    assert "ceiling" in done.stdout


def test_ratio_targets_are_measured_interleaved(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    done = run_quick_many(["naive", "batch", "violations"], out, timeout_s=300)
    results = orjson.loads(out.read_bytes())
    assert list(results) == ["ceiling", "naive", "batch", "violations"]
    assert set(results["naive"]) == FIELDS | {"ceiling_per_naive_interleaved"}
    assert set(results["batch"]) == FIELDS | {"ceiling_ratio_interleaved"}
    assert set(results["violations"]) == FIELDS | {"batch_ratio_interleaved"}
    # Ratios of rates: both sides did work (no zero, no missing side).
    assert results["naive"]["ceiling_per_naive_interleaved"] > 1  # jsonschema is far slower
    assert 0 < results["batch"]["ceiling_ratio_interleaved"] < 10
    assert 0 < results["violations"]["batch_ratio_interleaved"] < 10
    targets = done.stdout.split("throughput targets:", 1)[1]
    assert "x naive (interleaved;" in targets
    assert "of ceiling (interleaved;" in targets
    assert "of batch (interleaved;" in targets


def run_quick_many(
    scenarios: list[str], out: Path, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "bench", *scenarios, "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done
