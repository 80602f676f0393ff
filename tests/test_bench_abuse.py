"""Smoke test of the ``abuse`` benchmark scenario at its ``--quick`` scale.

Speed is not judged (no timing assertions); correctness is: no 5xx to anyone, every good event
answered 200 is in Kafka, and the slow connections are answered 408.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.__main__ import COLUMNS
from bench.abuse import scale
from tests.test_bench import run_quick

NUMBERS = (
    *(c for c in COLUMNS if c != "ratio_to_ceiling"),  # measured alone: no ceiling to compare
    "baseline_p99_ms",
    "p99_ratio_to_baseline",
    "peak_rss_mb",
    "server_errors",
    "good_acked",
    "good_missing_in_kafka",
)
ATTACKS = {"slow", "gzip_bomb", "regex", "long_user_id", "over_event_limit", "padded_context"}


def test_abuse_quick(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    done = run_quick("abuse", out, timeout_s=600)
    figures = orjson.loads(out.read_bytes())["abuse"]
    for field in NUMBERS:
        assert isinstance(figures[field], int | float), field
    assert figures["peak_rss_mb"] >= figures["rss_mb"] > 0
    assert figures["baseline_p99_ms"] > 0
    assert figures["p99_ratio_to_baseline"] == round(
        figures["p99_ms"] / figures["baseline_p99_ms"], 3
    )
    # latency did not run: nothing to compare with
    assert figures["latency_p99_ms"] is None
    assert figures["p99_ratio_to_latency"] is None
    assert figures["good_acked"] > 0
    assert figures["good_statuses"]["200"] == figures["good_acked"]
    statuses = figures["attack_statuses"]
    assert set(statuses) == ATTACKS
    for kind, counts in statuses.items():
        assert counts, kind
        assert all(isinstance(n, int) and n > 0 for n in counts.values()), kind
    assert figures["slow_connections"] == scale(4.0).slow_connections
    assert "408" in statuses["slow"]  # the read timeout answered them
    assert statuses["gzip_bomb"] == {"413": statuses["gzip_bomb"]["413"]}
    # Correctness, whatever the machine's speed.
    assert figures["server_errors"] == 0, statuses
    assert figures["good_missing_in_kafka"] == 0
    assert "abuse targets:" in done.stdout
    assert "x the same load's without the attack, just before and after" in done.stdout
